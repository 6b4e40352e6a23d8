"""What weighting the student by influence costs (issue #22): a step of ``kd`` and of ``lgtm``
with and without ``student_weighting="influence"``, on the speed benchmark's batches.

The reference configuration of ``benchmarks/speed.py``: teacher all-MiniLM-L6-v2 (bundled),
student its first 2 layers, real SST-2 training batches of 32 (dynamic padding, max length 64)
and as many feedback batches, AdamW for both models (its look-ahead replayed), 2 threads. The
four kinds of step are interleaved, batch by batch, for ``--rounds`` rounds, each on its own
copies of the models; each ratio (weighted / plain, of the same method) is the median over
rounds of the ratio of that round's median step times. kd's teacher runs each step, as in
``speed.py``.

    python benchmarks/weighting_speed.py                        # a few minutes on 2 cores
    python benchmarks/weighting_speed.py --rounds 1 --steps 2 --batch-size 4 --max-length 16

Writes ``benchmarks/results/weighting_speed.json`` and ``weighting_speed.md`` (``--out`` to
write elsewhere). Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: (name, method, student_weighting) of each kind of step.
KINDS = (
    ("kd", "kd", "none"),
    ("kd + weighting", "kd", "influence"),
    ("lgtm", "lgtm", "none"),
    ("lgtm + weighting", "lgtm", "influence"),
)


def step_costs(args: argparse.Namespace) -> dict:
    """Median seconds of each kind of step per round, and the weighted / plain ratios."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from speed import sst2_batches  # the speed benchmark's batches

    import lgtm
    from lgtm.data import get_task
    from lgtm.models import load_model, student_from_teacher

    torch.manual_seed(0)
    teacher, tokenizer = load_model(None, get_task("sst2").num_labels)
    student = student_from_teacher(teacher, args.student_layers)
    batches = sst2_batches(
        args.data_dir, tokenizer, args.max_length, args.batch_size, 2 * args.steps
    )
    train, feedback = batches[: args.steps], batches[args.steps :]
    methods = {}
    for name, method, weighting in KINDS:
        t, s = copy.deepcopy(teacher), copy.deepcopy(student)
        trains_teacher = method == "lgtm"
        methods[name] = lgtm.make_method(
            method,
            teacher=t,
            student=s,
            teacher_optimizer=(
                torch.optim.AdamW(t.parameters(), lr=3e-5, weight_decay=0.01)
                if trains_teacher
                else None
            ),
            student_optimizer=torch.optim.AdamW(s.parameters(), lr=5e-5, weight_decay=0.01),
            student_weighting=weighting,
        )
        methods[name].safe_step = False  # as in the training loop
        t.train(trains_teacher)  # a frozen teacher gives its targets in eval mode
    rounds = []
    for _ in range(args.rounds):
        times: dict[str, list[float]] = {n: [] for n in methods}
        for batch, fb in zip(train, feedback, strict=True):
            for name, method in methods.items():
                t0 = time.perf_counter()
                method.step(dict(batch), dict(fb))
                times[name].append(time.perf_counter() - t0)
        skip = 1 if args.steps > 1 else 0  # the first step: warm-up
        rounds.append({n: statistics.median(v[skip:]) for n, v in times.items()})
    return {
        "rounds": rounds,
        "seconds": {n: statistics.median(r[n] for r in rounds) for n in methods},
        "kd_weighted_over_kd": statistics.median(r["kd + weighting"] / r["kd"] for r in rounds),
        "lgtm_weighted_over_lgtm": statistics.median(
            r["lgtm + weighting"] / r["lgtm"] for r in rounds
        ),
    }


def markdown(result: dict) -> str:
    s = result["steps"]
    ratio = {
        "kd": 1.0,
        "kd + weighting": s["kd_weighted_over_kd"],
        "lgtm": 1.0,
        "lgtm + weighting": s["lgtm_weighted_over_lgtm"],
    }
    lines = [
        "# The student weighted by influence: its cost (issue #22)",
        "",
        f"Command: `{result['command']}` (commit {result['commit']}, {result['machine']}, "
        f"{result['threads']} threads). Teacher all-MiniLM-L6-v2, student its first "
        f"{result['student_layers']} layers, real SST-2 batches of {result['batch_size']} and "
        f"feedback batches of as many, max length {result['max_length']}, AdamW; "
        f"{result['steps_per_round']} steps × {result['rounds']} rounds, interleaved.",
        "",
        "| step | median seconds | × the same method unweighted |",
        "| --- | ---: | ---: |",
    ]
    for name, _, _ in KINDS:
        lines.append(f"| {name} | {s['seconds'][name]:.3f} | {ratio[name]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/glue/SST-2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    result = {
        "command": "python " + " ".join(["benchmarks/weighting_speed.py", *sys.argv[1:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "student_layers": args.student_layers,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "steps": step_costs(args),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "weighting_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "weighting_speed.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
