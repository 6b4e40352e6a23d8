"""Data-parallel scaling: samples/s of ``online`` and ``lgtm`` on 1 and 2 processes.

Reference configuration of ``speed.py`` (teacher all-MiniLM-L6-v2, student its first 2 layers,
real SST-2 batches of 32 — the *global* batch, split between the processes as the training
loop splits it —, max length 64, AdamW), one thread per process, launched with ``torchrun``
(gloo). Each process times every step between two barriers, and the time spent in the
gradient all-reduces of ``lgtm.distributed`` within it (the added communication). Launches are
interleaved in rounds; medians over steps, then over rounds.

    python benchmarks/scaling.py                        # about 10 minutes on 2 cores
    python benchmarks/scaling.py --rounds 1 --steps 2   # a quick look

Writes ``benchmarks/results/scaling.json`` and ``scaling.md``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
METHODS = ("online", "lgtm")
PROCESSES = (1, 2)


def worker(args: argparse.Namespace) -> None:
    """One process of a torchrun launch: time ``args.steps`` steps after ``args.warmup``."""
    import torch
    import torch.distributed as dist
    from speed import sst2_batches

    import lgtm
    from lgtm import distributed
    from lgtm.data import get_task
    from lgtm.models import load_model, student_from_teacher

    torch.set_num_threads(1)
    state = distributed.process_state()
    rank, world = state.process_index, state.num_processes
    torch.manual_seed(0)
    teacher, tokenizer = load_model(None, get_task("sst2").num_labels)
    student = student_from_teacher(teacher, 2)
    total = args.warmup + args.steps
    batches = sst2_batches(args.data_dir, tokenizer, 64, 32, 2 * total)
    shard = [{k: v[rank::world] for k, v in b.items()} for b in batches]
    train, feedback = shard[:total], shard[total:]
    method = lgtm.make_method(
        args.worker,
        teacher=teacher,
        student=student,
        teacher_optimizer=torch.optim.AdamW(teacher.parameters(), lr=3e-5),
        student_optimizer=torch.optim.AdamW(student.parameters(), lr=5e-5),
    )
    method.safe_step = False  # as in the training loop
    comm = [0.0]
    if world > 1:
        all_reduce = dist.all_reduce

        def timed(*a, **k):
            start = time.perf_counter()
            out = all_reduce(*a, **k)
            comm[0] += time.perf_counter() - start
            return out

        distributed.dist.all_reduce = timed
    steps, comms = [], []
    for k in range(total):
        if world > 1:
            dist.barrier()
        comm[0] = 0.0
        start = time.perf_counter()
        method.step(train[k], feedback[k])
        if world > 1:
            dist.barrier()
        steps.append(time.perf_counter() - start)
        comms.append(comm[0])
    if rank == 0:
        out = {"step_s": steps[args.warmup :], "allreduce_s": comms[args.warmup :]}
        Path(args.out).write_text(json.dumps(out))


def launch(method: str, processes: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node"]
        command += [str(processes), str(Path(__file__).resolve()), "--worker", method]
        command += ["--out", str(out), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        command += ["--data-dir", args.data_dir]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
        )
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def write_markdown(result: dict, path: Path) -> None:
    rows = result["summary"]
    lines = [
        "# Data-parallel scaling on this machine",
        "",
        f"Made by `{result['command']}` on {result['machine']}, {result['date']}. Global batch "
        "32 of real SST-2 rows (max length 64) split between the processes, teacher "
        "all-MiniLM-L6-v2, student its first 2 layers, AdamW, one thread per process, gloo; "
        f"{result['rounds']} rounds × {result['steps']} timed steps (after {result['warmup']} "
        "warm-up), medians over steps then rounds.",
        "",
        "| method | processes | step (s) | samples/s | × 1 process | all-reduce per step (s) |"
        " all-reduce share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['processes']} | {r['step_s']:.3f} | {r['samples_per_s']:.1f} | "
            f"{r['speedup']:.2f} | {r['allreduce_s']:.3f} | {r['allreduce_share']:.1%} |"
        )
    lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/glue/SST-2"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for method in METHODS:
            for processes in PROCESSES:
                result = launch(method, processes, args)
                runs.setdefault((method, processes), []).append(result)
                step = statistics.median(result["step_s"])
                print(f"round {r + 1}: {method} × {processes}: {step:.3f} s/step", flush=True)
    summary = []
    for method in METHODS:
        base = statistics.median(statistics.median(x["step_s"]) for x in runs[(method, 1)])
        for processes in PROCESSES:
            got = runs[(method, processes)]
            step = statistics.median(statistics.median(x["step_s"]) for x in got)
            comm = statistics.median(statistics.median(x["allreduce_s"]) for x in got)
            summary.append(
                {
                    "method": method,
                    "processes": processes,
                    "step_s": step,
                    "samples_per_s": 32 / step,
                    "speedup": base / step,
                    "allreduce_s": comm,
                    "allreduce_share": comm / step,
                }
            )
    result = {
        "command": "python benchmarks/scaling.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "summary": summary,
        "runs": {f"{m} x{p}": v for (m, p), v in runs.items()},
    }
    results = ROOT / "benchmarks" / "results"
    (results / "scaling.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, results / "scaling.md")
    print((results / "scaling.md").read_text())


if __name__ == "__main__":
    main()
