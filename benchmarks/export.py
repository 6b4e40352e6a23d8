"""ONNX export of trained runs, measured (issue #20): ``lgtm export`` of each run's student and
teacher, float32 and int8, with the full and with a pruned vocabulary (the run's training and
transfer text), every model scored on the run's evaluation set and timed at batch 1 and 64 on
the same texts.

    python -m lgtm.cli distill --output-dir runs/default                 # the offline default run
    python benchmarks/export.py --run runs/default --threads 2           # + --run runs/sst2-2l ...

The goal checked (issue #20): the int8 student with a pruned vocabulary at least 8x smaller
on disk than the float32 PyTorch student, at least 2x faster at batch 1 on 2 CPU cores, and
within 1 point of its main metric. Writes ``OUT/<run>-<model>-<variant>/`` (the exported
folders), ``benchmarks/results/export.json`` and ``export.md`` (the table, with the command).
Run it with nothing else on the machine: latencies are medians, not immune to a busy CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOAL = {"smaller": 8.0, "faster_batch_1": 2.0, "max_drop_points": 1.0}


def export(run: Path, model: str, prune: bool, out: Path, args: argparse.Namespace) -> dict:
    """``lgtm export RUN/MODEL`` (int8, optionally pruned) into ``out``; its report."""
    from lgtm import cli

    argv = [
        "export",
        str(run / model),
        "--output-dir",
        str(out),
        "--quantize",
        "int8",
        "--repeats",
        str(args.repeats),
        "--overwrite",
    ]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if prune:
        argv += ["--prune-vocab"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    if status not in (0, 1):  # 1: a file lost more than --max-metric-drop (in the report)
        sys.exit(f"lgtm {' '.join(argv)} failed: {err.getvalue().strip()}")
    return json.loads((out / "export.json").read_text())


def goal(report: dict, hidden_size: int) -> dict:
    """The issue's goal on a pruned student export: size and batch-1 speed against the
    float32 PyTorch student, and the metric drop of the int8 file. Also where the int8 file's
    bytes are: the kept word-embedding rows (one byte per weight) and the rest (encoder,
    position embeddings, head), and how many rows the 8x budget leaves."""
    rows = {r["name"]: r for r in report["rows"]}
    student, int8 = rows["student"], rows["model_int8.onnx"]
    smaller = student["size_bytes"] / int8["size_bytes"]
    faster = student["latency_seconds"]["1"] / int8["latency_seconds"]["1"]
    drop = 100 * (student["main"] - int8["main"])
    kept = report["pruning"]["kept_tokens"]
    rest = int8["size_bytes"] - kept * hidden_size
    budget = student["size_bytes"] / GOAL["smaller"]
    return {
        "smaller": smaller,
        "faster_batch_1": faster,
        "drop_points": drop,
        "met": smaller >= GOAL["smaller"]
        and faster >= GOAL["faster_batch_1"]
        and drop <= GOAL["max_drop_points"],
        "kept_tokens": kept,
        "word_embedding_bytes": kept * hidden_size,
        "rest_bytes": rest,
        "budget_bytes": budget,
        "rows_within_budget": int((budget - rest) // hidden_size),
    }


def table(results: list[dict]) -> list[str]:
    """One Markdown table of every row of every report."""
    lines = [
        "| run | model | vocabulary | file | runtime | metric | size MB | x smaller | "
        "parameters | batch 1 ms | batch 64 ms | batch-1 speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results:
        rows = res["report"]["rows"]
        base = next(r for r in rows if r["name"] == "student")
        for r in rows:
            lat = r["latency_seconds"]
            name = r["name"] if r["runtime"] != "PyTorch" else f"{r['name']} (PyTorch)"
            if r["name"] == "student" and res["model"] == "teacher":
                name = "teacher (PyTorch)"  # the exported model's own row
            lines.append(
                f"| {res['run']} | {res['model']} | {res['vocabulary']} | {name} "
                f"| {r['runtime']} | {100 * r['main']:.2f} | {r['size_bytes'] / 1e6:.1f} "
                f"| {base['size_bytes'] / max(r['size_bytes'], 1):.2f} | {r['parameters']:,} "
                f"| {1000 * lat['1']:.2f} | {1000 * lat['64']:.1f} "
                f"| {base['latency_seconds']['1'] / lat['1']:.2f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", help="a run folder (required)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "export-benchmark")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where export.md goes")
    parser.add_argument("--no-teacher", action="store_true", help="export the students only")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite export.md from export.json"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        return write(json.loads((args.results / "export.json").read_text()), args.results)
    if not args.run:
        parser.error("--run is required")
    command = "python benchmarks/export.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    how = {"command": command, "threads": args.threads, "repeats": args.repeats}
    how["machine"] = platform.processor() or platform.machine()

    results = []
    for run in args.run:
        models = ["student"] + ([] if args.no_teacher else ["teacher"])
        for model in models:
            if not (run / model / "config.json").is_file():
                continue
            for prune in (False, True):
                vocabulary = "pruned" if prune else "full"
                out = args.out / f"{run.name}-{model}-{vocabulary}"
                print(f"lgtm export {run}/{model} ({vocabulary} vocabulary) ...", flush=True)
                report = export(run, model, prune, out, args)
                entry = {"run": run.name, "model": model, "vocabulary": vocabulary, **how}
                entry["report"] = report
                if model == "student" and prune:
                    config = json.loads((run / model / "config.json").read_text())
                    entry["goal"] = goal(report, config["hidden_size"])
                results.append(entry)
    if not results:
        parser.error("no --run folder holds a student (RUN/student/config.json)")
    return write(results, args.results)


def write(results: list[dict], folder: Path) -> int:
    """``export.json`` and ``export.md`` (the table and the goal lines) in ``folder``."""
    from lgtm.export.report import change_words

    how = results[0]
    lines = [
        "# ONNX export of trained runs (issue #20)",
        "",
        f"`{how['command']}` on {how['machine']}, "
        f"threads {how['threads']}, median of {how['repeats']} passes. Sizes and speed-ups "
        "against the float32 PyTorch student of the same run (for a teacher export: the "
        "teacher).",
        "",
        *table(results),
        "",
    ]
    for res in results:
        if "goal" in res:
            g = res["goal"]
            verdict = "met" if g["met"] else "NOT met"
            lines.append(
                f"- {res['run']}: int8 student, pruned vocabulary: {g['smaller']:.1f}x smaller "
                f"(goal {GOAL['smaller']:g}x), {g['faster_batch_1']:.2f}x faster at batch 1 "
                f"(goal {GOAL['faster_batch_1']:g}x), "
                f"{change_words(g['drop_points'], res['report']['main_metric'])} "
                f"(goal: at most {GOAL['max_drop_points']:g} lost): goal {verdict}. "
                f"Of its {(g['word_embedding_bytes'] + g['rest_bytes']) / 1e6:.1f} MB, "
                f"{g['word_embedding_bytes'] / 1e6:.1f} MB are the {g['kept_tokens']:,} "
                f"word-embedding rows kept and {g['rest_bytes'] / 1e6:.1f} MB the rest "
                f"(encoder, position embeddings, head); the {GOAL['smaller']:g}x budget of "
                f"{g['budget_bytes'] / 1e6:.2f} MB leaves room for "
                f"{g['rows_within_budget']:,} rows"
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.json").write_text(json.dumps(results, indent=2) + "\n")
    (folder / "export.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
