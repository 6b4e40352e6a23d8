"""What the API's all-or-nothing step (``Method.safe_step``) costs per training step.

Reference configuration of ``speed.py`` (MiniLM teacher, 2-layer student, real SST-2 batches of
32, max length 64, AdamW, 2 threads). For each method, rounds of two fresh copies of the same
models on the same batches, one with the undo journal and one without; the ratio is taken
within each round, then the median over rounds.

    python benchmarks/safe_step.py            # about 5 minutes on 2 cores

Writes ``benchmarks/results/safe_step.json`` and ``safe_step.md``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    import torch
    from speed import setup

    import lgtm

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="kd,online,lgtm")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/glue/SST-2"))
    args = p.parse_args()
    config = argparse.Namespace(
        threads=2, data_dir=args.data_dir, student_layers=2, max_length=64, batch_size=32
    )
    total = args.steps + 2
    teacher0, student0, _, _, train, feedback = setup(config, total)
    rows = []
    for name in args.methods.split(","):
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for safe in (False, True):
                teacher, student = copy.deepcopy(teacher0), copy.deepcopy(student0)
                method = lgtm.make_method(
                    name,
                    teacher=teacher,
                    student=student,
                    teacher_optimizer=torch.optim.AdamW(teacher.parameters(), lr=3e-5),
                    student_optimizer=torch.optim.AdamW(student.parameters(), lr=5e-5),
                )
                method.safe_step = safe
                steps = []
                for k in range(total):
                    start = time.perf_counter()
                    method.step(train[k], feedback[k])
                    steps.append(time.perf_counter() - start)
                times[safe].append(statistics.median(steps[2:]))
        ratio = statistics.median(a / b for a, b in zip(times[True], times[False]))
        rows.append(
            {
                "method": name,
                "step_s": statistics.median(times[False]),
                "safe_step_s": statistics.median(times[True]),
                "ratio": ratio,
            }
        )
        print(rows[-1], flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / "safe_step.json").write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=1))
    lines = [
        "# Cost of the all-or-nothing step (`Method.safe_step`)",
        "",
        f"Made by `python benchmarks/safe_step.py` ({args.rounds} paired rounds × {args.steps} "
        "steps, medians; MiniLM teacher, 2-layer student, SST-2 batches of 32, 2 threads).",
        "",
        "| method | step (s), off | step (s), on | on / off |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {r['method']} | {r['step_s']:.3f} | {r['safe_step_s']:.3f} | {r['ratio']:.2f} |"
            for r in rows
        ],
        "",
    ]
    (out / "safe_step.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
