"""What the frozen teacher's cache buys (issue #21), on real SST-2 text.

1. **Step cost.** A ``kd`` step whose teacher outputs come from the cache against a ``ce``
   step (the student alone) on the same batches; the uncached ``kd`` step beside them. Teacher
   all-MiniLM-L6-v2 (bundled), student its first 2 layers, AdamW, batches of 32 labelled + 32
   transfer sentences (the study's step), max length 64. The three kinds of step are
   interleaved, batch by batch, for ``--rounds`` rounds; each ratio is the median over rounds
   of the ratio of that round's median step times.
2. **Labelling throughput.** ``lgtm.teacher_cache.label_rows`` (rows sorted by length, 256 a
   batch on a CPU) against ``transformers.pipeline("text-classification")`` on the same
   sentences, at the pipeline batch sizes in ``--pipeline-batches`` (the best one is the
   comparison), samples per second, medians of ``--repeats``.

    python benchmarks/transfer_speed.py                 # about 5 minutes on 2 cores
    python benchmarks/transfer_speed.py --rounds 2 --repeats 1 --rows 512   # a quick look

Writes ``benchmarks/results/transfer_speed.json`` and ``transfer_speed.md``. Run it with
nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def sst2_rows(data_dir: Path, n: int, seed: int) -> list:
    """``n`` SST-2 training rows (seeded sample)."""
    from lgtm.data import get_task, load_glue_dir, subsample

    return subsample(load_glue_dir(get_task("sst2"), data_dir).train, n, seed=seed)


def step_costs(args, teacher, student_of, tokenizer) -> dict:
    """Median seconds of ce, cached kd and uncached kd steps, interleaved, per round."""
    import lgtm
    from lgtm.data.encode import encode, make_collator
    from lgtm.methods.base import CACHED_TEACHER
    from lgtm.objectives import IGNORE_INDEX
    from lgtm.teacher_cache import label_rows

    per_step = 2 * args.batch_size
    rows = sst2_rows(args.data_dir, args.steps * per_step, seed=0)
    features = encode(rows, tokenizer, args.max_length)
    for i, f in enumerate(features):  # the second half of each step: transfer samples
        if i % per_step >= args.batch_size:
            f["labels"] = IGNORE_INDEX
    collate = make_collator(tokenizer)
    logits = label_rows(teacher, features, collate, torch.device("cpu"), progress=False)["logits"]
    batches = []
    for k in range(args.steps):
        chunk = features[k * per_step : (k + 1) * per_step]
        b = collate(chunk)
        b.pop("example_id")
        batches.append((b, logits[k * per_step : (k + 1) * per_step]))
    methods = {}
    for name in ("ce", "kd-cached", "kd"):
        student = student_of()
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
        methods[name] = lgtm.make_method(
            "ce" if name == "ce" else "kd",
            teacher=None if name == "ce" else teacher,
            student=student,
            teacher_optimizer=None,
            student_optimizer=optimizer,
            alpha=0.5,
        )
        methods[name].safe_step = False
    teacher.eval()
    rounds = []
    for _ in range(args.rounds):
        times: dict[str, list[float]] = {n: [] for n in methods}
        for batch, cached in batches:
            for name, method in methods.items():
                b = dict(batch)
                if name == "kd-cached":
                    b[CACHED_TEACHER] = cached
                t0 = time.perf_counter()
                method.step(b)
                times[name].append(time.perf_counter() - t0)
        rounds.append({n: statistics.median(v[1:]) for n, v in times.items()})  # first: warm-up
    return {
        "rounds": rounds,
        "kd_cached_over_ce": statistics.median(r["kd-cached"] / r["ce"] for r in rounds),
        "kd_uncached_over_ce": statistics.median(r["kd"] / r["ce"] for r in rounds),
        "seconds": {n: statistics.median(r[n] for r in rounds) for n in methods},
    }


def labelling(args, teacher, tokenizer) -> dict:
    """Samples per second of label_rows and of the transformers pipeline on the same text."""
    from transformers import pipeline

    from lgtm.data.encode import encode, make_collator
    from lgtm.teacher_cache import label_rows

    rows = sst2_rows(args.data_dir, args.rows, seed=1)
    texts = [r.texts[0] for r in rows]
    collate = make_collator(tokenizer)
    teacher.eval()
    out: dict[str, list[float]] = {"lgtm": []}
    pipe = pipeline("text-classification", model=teacher, tokenizer=tokenizer, device=-1)
    for size in args.pipeline_batches:
        out[f"pipeline (batch {size})"] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()  # tokenising included, as the pipeline does it
        features = encode(rows, tokenizer, args.max_length)
        label_rows(teacher, features, collate, torch.device("cpu"), progress=False)
        out["lgtm"].append(len(texts) / (time.perf_counter() - t0))
        for size in args.pipeline_batches:
            t0 = time.perf_counter()
            pipe(texts, batch_size=size, truncation=True, max_length=args.max_length, top_k=None)
            out[f"pipeline (batch {size})"].append(len(texts) / (time.perf_counter() - t0))
    medians = {k: statistics.median(v) for k, v in out.items()}
    best = max((k for k in medians if k != "lgtm"), key=medians.get)
    return {
        "samples_per_second": medians,
        "repeats": out,
        "best_pipeline": best,
        "lgtm_over_best_pipeline": medians["lgtm"] / medians[best],
    }


def markdown(result: dict) -> str:
    s, lab = result["steps"], result["labelling"]
    lines = [
        "# The frozen teacher's cache (issue #21)",
        "",
        f"Command: `{result['command']}` (commit {result['commit']}, {result['machine']}, "
        f"{result['threads']} threads, nothing else running). Teacher all-MiniLM-L6-v2, "
        f"student its first 2 layers, real SST-2 sentences, max length {result['max_length']}.",
        "",
        f"## Step cost ({result['batch_size']} labelled + {result['batch_size']} transfer "
        f"sentences a step, {result['steps_per_round']} steps × {result['rounds']} rounds)",
        "",
        "| step | median seconds | × ce |",
        "| --- | ---: | ---: |",
        f"| ce (the student alone) | {s['seconds']['ce']:.3f} | 1.00 |",
        f"| kd, teacher outputs cached | {s['seconds']['kd-cached']:.3f} | "
        f"{s['kd_cached_over_ce']:.2f} |",
        f"| kd, teacher forward each step | {s['seconds']['kd']:.3f} | "
        f"{s['kd_uncached_over_ce']:.2f} |",
        "",
        f"## Teacher labelling ({result['rows']} sentences, median of {result['repeats']})",
        "",
        "| labeller | samples/s |",
        "| --- | ---: |",
    ]
    for name, value in lab["samples_per_second"].items():
        lines.append(f"| {name} | {value:.0f} |")
    lines += [
        "",
        f"lgtm's labelling / the best pipeline ({lab['best_pipeline']}): "
        f"**{lab['lgtm_over_best_pipeline']:.2f}×**.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    import os
    import subprocess
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/glue/SST-2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline-batches", type=int, nargs="+", default=[32, 256])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from lgtm.data import get_task
    from lgtm.models import load_model, student_from_teacher

    torch.manual_seed(0)
    teacher, tokenizer = load_model(None, get_task("sst2").num_labels)

    def student_of():
        torch.manual_seed(1)
        return student_from_teacher(teacher, 2)

    result = {
        "command": "python " + " ".join(["benchmarks/transfer_speed.py", *sys.argv[1:]]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "rows": args.rows,
        "repeats": args.repeats,
        "steps": step_costs(args, teacher, student_of, tokenizer),
        "labelling": labelling(args, teacher, tokenizer),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "transfer_speed.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
