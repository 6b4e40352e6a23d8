"""The offline default run against the student alone (issue #21; PROTOCOL.md, amendment "the
default run with its unlabelled text").

    python benchmarks/default_gain.py --fit     # wall time of the default run at each size of
                                               # its transfer set (seed 42), nothing else running
    python benchmarks/default_gain.py          # seeds 42-44: default run and ce, the report
    python benchmarks/default_gain.py --report-only

The default run is ``lgtm distill`` with no data (its settings: ``lgtm.config.DEFAULT_RUN``);
``ce`` is the student alone on the same labelled rows, for the same number of student steps, at
lr 3e-4, batch 32, no transfer set. Each finished run is kept in
``results/default_gain.json`` and never redone. Writes ``results/default_gain.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("LGTM_STUDY_RESULTS", ROOT / "benchmarks/results"))
RUNS = Path(os.environ.get("LGTM_STUDY_RUNS", ROOT / "runs/default_gain"))
LGTM = os.environ.get("LGTM_COMMAND", "lgtm").split()
OUT = RESULTS / "default_gain.json"
SEEDS = (42, 43, 44)
FIT_SIZES = (2000, 3000, 4000)  # with --teacher-epochs 1 (PROTOCOL.md, Changes)
FIT_LIMIT_S = 270.0  # 4 min 30 s from start to exit
CE_LR = 3e-4  # the rate ce chose at 1,000 labels in the transfer-set study


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def load() -> list[dict]:
    return json.loads(OUT.read_text()) if OUT.exists() else []


def save(rows: list[dict]) -> None:
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(OUT)


def execute(kind: str, seed: int, extra: list[str], rows: list[dict], **key) -> dict:
    """Run one ``lgtm distill`` (unless a row with the same key is recorded) and record it."""
    key = {"kind": kind, "seed": seed, **key}
    for r in rows:
        if all(r.get(k) == v for k, v in key.items()):
            return r
    out = RUNS / "-".join(f"{v}" for v in key.values())
    cmd = [*LGTM, "distill", "--overwrite", "--quiet", "--seed", str(seed)]
    cmd += [*extra, "--output-dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print("started", " ".join(cmd), flush=True)
    t0 = time.time()
    status = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if status.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{status.stdout[-2000:]}{status.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    stages = {s["name"]: s for s in m["stages"]}
    row = {
        **key,
        "student_dev": m["student"]["accuracy"],
        "teacher_dev": (m.get("teacher") or {}).get("accuracy"),
        "steps": stages["distill"]["steps"],
        "transfer_rows": (m.get("transfer") or {}).get("rows"),
        "train_samples": m["train_samples"],
        "wall_s": round(wall, 1),
        "commit": commit(),
        "command": " ".join(cmd),
    }
    rows.append(row)
    save(rows)
    print(f"done in {wall:.0f} s", flush=True)
    return row


def fit(rows: list[dict]) -> None:
    """Wall time of the default run at each candidate transfer size (seed 42; scores unread)."""
    for n in FIT_SIZES:
        r = execute("fit", 42, ["--max-transfer-samples", str(n)], rows, transfer=n)
        print(f"{n} transfer rows: {r['wall_s']:.0f} s", flush=True)


def measure(rows: list[dict]) -> None:
    """The default run and the student alone, seeds 42-44, paired."""
    for seed in SEEDS:
        default = execute("default", seed, [], rows)
        steps = default["steps"]
        epochs = math.ceil(steps / math.ceil(default["train_samples"] / 32))
        ce = [
            *("--method", "ce", "--lr", str(CE_LR), "--batch-size", "32"),
            *("--max-steps", str(steps), "--epochs", str(epochs)),
        ]
        execute("ce", seed, ce, rows)


def report(rows: list[dict]) -> Path:
    """``results/default_gain.md``: the two cells, and default − ce with its 95% interval."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from comparison_report import _ci, mean_sd, paired

    by = {k: {r["seed"]: r for r in rows if r["kind"] == k} for k in ("default", "ce")}
    gain = paired(by["default"], by["ce"], "student_dev")
    lines = [
        "# The default run against the student alone (issue #21)",
        "",
        'Protocol: PROTOCOL.md, amendment "the default run with its unlabelled text", '
        "committed before these runs. Command: `python benchmarks/default_gain.py`. Rotten "
        "Tomatoes (the offline default data), dev accuracy (%) on the 500 scored snippets, "
        "mean ± sd over seeds 42-44; 2-layer student.",
        "",
        "| cell | seeds | student | teacher | student steps | transfer rows | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, words in (("default", "`lgtm distill` (kd + transfer set)"), ("ce", "ce alone")):
        r = list(by[kind].values())
        if not r:
            continue
        teach = [x["teacher_dev"] for x in r if x["teacher_dev"] is not None]
        walls = ", ".join(f"{x['wall_s']:.0f}" for x in r)
        lines.append(
            f"| {words} | {len(r)} | {mean_sd([x['student_dev'] for x in r])} | "
            f"{mean_sd(teach)} | {r[0]['steps']} | {r[0]['transfer_rows'] or '–'} | "
            f"{walls} |"
        )
    lines += ["", f"Default − ce (points, paired, 95% t-interval): {_ci(gain)}"]
    if gain is not None:
        lines[-1] += f"; verdict: {gain['verdict']}."
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += [""] + [f"Note, {r['kind']} seed {r['seed']}: {r['note']}." for r in notes]
    fits = [r for r in rows if r["kind"] == "fit"]
    if fits:
        lines += ["", "Fitting the budget (seed 42, wall time only):", ""]
        lines += [f"- {r['transfer']:,} transfer rows: {r['wall_s']:.0f} s" for r in fits]
    path = RESULTS / "default_gain.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fit", action="store_true", help="time the candidate transfer sizes")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    rows = load()
    if args.fit:
        fit(rows)
    elif not args.report_only:
        measure(rows)
    print(report(rows))


if __name__ == "__main__":
    main()
