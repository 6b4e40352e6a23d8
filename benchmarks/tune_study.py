"""``lgtm tune`` against the comparison's hand-chosen rate (issue #18; PROTOCOL.md amendment
"lgtm tune against the hand-chosen rate").

    python benchmarks/tune_study.py                  # the studies, then the final runs
    python benchmarks/tune_study.py --part pruned &  # or in two processes: the pruned studies
    python benchmarks/tune_study.py --part unpruned  #   and final runs, the unpruned studies
    python benchmarks/tune_study.py --report-only

Per method (kd, lgtm): ``lgtm tune --trials 12 --seed 0`` with and without the median pruner
on the comparison's SST-2 setting; then seeds 0-2 of the pruned study's ``best.yaml`` and of
the comparison's settings with its hand-chosen rate (1e-3). Resumable: a study continues, a
finished run (recorded in ``results/tune_study.json``) is never redone; a study's database is
copied to ``results/tune_state/`` as its trials finish and continued from there in a later
session. Writes ``results/tune_study.md``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from comparison import COMMON, GLUE, TASKS  # noqa: E402

from lgtm.tune import DEFAULT_SPACE  # noqa: E402

RESULTS = Path(os.environ.get("LGTM_STUDY_RESULTS", ROOT / "benchmarks/results"))
RUNS = Path(os.environ.get("LGTM_STUDY_RUNS", ROOT / "runs/tune_study"))
LGTM = os.environ.get("LGTM_COMMAND", "lgtm").split()
DEVICE = os.environ.get("LGTM_STUDY_DEVICE", "cpu: 2 cores, one run at a time")
THREADS = os.environ.get("LGTM_STUDY_THREADS")  # OMP/MKL threads of each run (None: torch's)
OUT = RESULTS / "tune_study.json"
STATE = RESULTS / "tune_state"  # the studies' databases, kept across sessions
METHODS = ("kd", "lgtm")
SEEDS = (0, 1, 2)
TRIALS = 12
HAND_LR = 1e-3  # the rate the comparison chose for kd and for lgtm on SST-2


def base_flags(method: str) -> dict:
    """The comparison's SST-2 setting for ``method`` (its student rate left out)."""
    spec = TASKS["sst2"]
    return {
        **COMMON,
        **{k: v for k, v in spec.items() if k != "data_dir"},
        "task": "sst2",
        "data_dir": str(GLUE / spec["data_dir"]),
        "method": method,
        "teacher_lr": 1e-4,
    }


def as_args(flags: dict) -> list[str]:
    out: list[str] = []
    for k, v in flags.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def call(cmd: list[str], poll=None) -> float:
    """Run ``cmd``; ``poll(seconds so far)`` is called every 30 s while it runs."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if THREADS:
        env.update(OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)
    print("started", " ".join(cmd), flush=True)
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        while proc.poll() is None:
            time.sleep(1 if poll is None else 30)
            if poll is not None and proc.poll() is None:
                poll(time.time() - t0)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read()[-3000:]}")
    return time.time() - t0


def load() -> list[dict]:
    return json.loads(OUT.read_text()) if OUT.exists() else []


def save(rows: list[dict], row: dict) -> None:
    """Append ``row`` to ``rows`` and to the results file, re-read under a lock so that two
    drivers (``--part pruned`` and ``--part unpruned``) keep each other's rows."""
    rows.append(row)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        on_disk = load()
        tmp = OUT.with_suffix(".tmp")
        tmp.write_text(json.dumps([*on_disk, row], indent=1) + "\n")
        tmp.replace(OUT)


def find(rows: list[dict], **key) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in key.items())), None)


def study(rows: list[dict], method: str, pruning: bool) -> dict:
    """One ``lgtm tune`` study (continued if cut off), recorded once finished."""
    key = {"kind": "study", "method": method, "pruning": pruning}
    if (row := find(rows, **key)) is not None:
        return row
    name = f"{method}-{'pruned' if pruning else 'unpruned'}"
    folder = RUNS / name
    # the default space's settings are the study's to choose (lgtm tune refuses them given)
    fixed = {"select_on", *DEFAULT_SPACE}
    flags = {k: v for k, v in base_flags(method).items() if k not in fixed}
    cmd = [*LGTM, "tune", "--quiet", *as_args(flags), "--seed", "0", "--trials", str(TRIALS)]
    cmd += ["--output-dir", str(folder), "--pruning", str(pruning).lower()]
    wall = grow(cmd, folder, name)
    result = json.loads((folder / "tune.json").read_text())
    row = {
        **key,
        "best": result["best"],
        "counts": result["counts"],
        "trial_steps": result["trial_steps"],
        "table": result["table"],
        "best_yaml": str(folder / "best.yaml"),
        "wall_s": round(wall, 1),
        "device": DEVICE,
        "command": " ".join(cmd),
    }
    save(rows, row)
    return row


def grow(cmd: list[str], folder: Path, name: str) -> float:
    """Run the study ``cmd``, copying its database to ``results/tune_state/`` each time a trial
    finishes, so that a study cut off with its session's machine continues in the next (a
    trial running in the copy is failed as stale and run again with its settings, as for any
    killed ``lgtm tune``). Returns the study's wall seconds over all sessions."""
    import sqlite3

    state, wall_file = STATE / f"{name}.db", STATE / f"{name}.json"
    db = folder / "study.db"
    if not db.exists() and state.exists():  # the folder went with an earlier machine
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(state, db)
    before = json.loads(wall_file.read_text())["wall_s"] if wall_file.exists() else 0.0

    def finished() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as con:
            return con.execute(
                "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL')"
            ).fetchone()[0]

    def keep(wall: float) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db, timeout=60) as src, sqlite3.connect(state) as dst:
            src.backup(dst)  # a consistent copy while the study writes
        wall_file.write_text(json.dumps({"wall_s": round(before + wall, 1)}) + "\n")

    seen = [finished()]

    def poll(wall: float) -> None:
        if (now := finished()) != seen[0]:
            seen[0] = now
            keep(wall)

    wall = call(cmd, poll)
    keep(wall)
    return before + wall


def tuned_config(rows: list[dict], method: str) -> str:
    """The pruned study's ``best.yaml``, which must keep the student as the trials did (on the
    selection set). One written before ``lgtm tune`` did so (49712a5) is written again by the
    study's own command (a finished study only rewrites its outputs). The file is kept in
    ``results/tune_state/`` and read from there when the study's folder is gone."""
    import yaml

    row = find(rows, kind="study", method=method, pruning=True)
    path = Path(row["best_yaml"])
    kept = STATE / f"{method}-pruned.best.yaml"  # the run folder goes with a session's machine
    if path.exists():
        STATE.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, kept)
    elif kept.exists():
        path = kept
    if yaml.safe_load(path.read_text()).get("select_on") != "selection":
        call(row["command"].split())
    if yaml.safe_load(path.read_text()).get("select_on") != "selection":
        raise SystemExit(f"{path} does not keep the student on the selection set")
    return str(path)


def final(rows: list[dict], method: str, cell: str, seed: int) -> dict:
    """A final run: the tuned settings (``best.yaml``) or the hand-chosen rate."""
    key = {"kind": "final", "method": method, "cell": cell, "seed": seed}
    if (row := find(rows, **key)) is not None:
        return row
    out = RUNS / f"final-{method}-{cell}-s{seed}"
    if cell == "tuned":
        flags = ["--config", tuned_config(rows, method)]
    else:
        flags = as_args({**base_flags(method), "lr": HAND_LR})
    cmd = [*LGTM, "distill", "--overwrite", "--quiet", *flags, "--seed", str(seed)]
    cmd += ["--output-dir", str(out)]
    wall = call(cmd)
    m = json.loads((out / "metrics.json").read_text())
    row = {
        **key,
        "student_dev": m["student"]["accuracy"],
        "teacher_dev": (m.get("teacher") or {}).get("accuracy"),
        "lr": m["config"]["lr"],
        "steps": sum(s["steps"] for s in m["stages"]),
        "wall_s": round(wall, 1),
        "device": DEVICE,
        "command": " ".join(cmd),
    }
    save(rows, row)
    return row


def execute(rows: list[dict], part: str) -> None:
    """``part``: ``pruned`` (the pruned studies and the final runs), ``unpruned`` (the studies
    without pruning, only counted), or ``all`` (both, in that order)."""
    if part in ("all", "pruned"):
        for method in METHODS:
            study(rows, method, True)
            for seed in SEEDS:
                final(rows, method, "hand", seed)
                final(rows, method, "tuned", seed)
    if part in ("all", "unpruned"):
        for method in METHODS:
            study(rows, method, False)


def report(rows: list[dict]) -> Path:
    from comparison_report import _ci, mean_sd, paired

    lines = [
        "# `lgtm tune` against the hand-chosen rate (issue #18)",
        "",
        'Protocol: PROTOCOL.md, amendment "lgtm tune against the hand-chosen rate", committed '
        "before these runs. Command: `python benchmarks/tune_study.py`. SST-2, the comparison's "
        "setting (4,000 sentences, one epoch, 2-layer student); dev accuracy (%) of the student "
        "kept on the selection set, mean ± sd over seeds 0-2; studies of 12 trials at seed 0, "
        "scored on the selection set only.",
        "",
        f"Devices: {', '.join(sorted({r['device'] for r in rows})) or '–'}.",
        "",
        "| method | study | best selection score | best settings | complete / pruned / diverged "
        "| trial-steps |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for r in (r for r in rows if r["kind"] == "study"):
        best = r["best"] or {}
        params = ", ".join(f"{k} {v:.3g}" for k, v in (best.get("params") or {}).items())
        c = r["counts"]
        lines.append(
            f"| {r['method']} | {'pruned' if r['pruning'] else 'no pruning'} | "
            f"{100 * best.get('selection_score', float('nan')):.1f} | {params} | "
            f"{c['complete']} / {c['pruned']} / {c['diverged']} | {r['trial_steps']} |"
        )
    lines += [
        "",
        "| method | cell | seeds | student | teacher | steps a run "
        "| tuned − hand (points, 95% CI) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method in METHODS:
        cells = {
            c: {
                r["seed"]: r
                for r in rows
                if r["kind"] == "final" and r["method"] == method and r["cell"] == c
            }
            for c in ("hand", "tuned")
        }
        diff = paired(cells["tuned"], cells["hand"], "student_dev")
        for c in ("hand", "tuned"):
            v = list(cells[c].values())
            if not v:
                continue
            teach = [x["teacher_dev"] for x in v if x["teacher_dev"] is not None]
            extra = _ci(diff) + (f" {diff['verdict']}" if diff else "") if c == "tuned" else ""
            lines.append(
                f"| {method} | {c} (lr {v[0]['lr']:.3g}) | {len(v)} | "
                f"{mean_sd([x['student_dev'] for x in v])} | {mean_sd(teach)} | "
                f"{statistics.median(x['steps'] for x in v):g} | {extra} |"
            )
    path = RESULTS / "tune_study.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("all", "pruned", "unpruned"), default="all")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if not args.report_only:
        execute(load(), args.part)
    print(report(load()))


if __name__ == "__main__":
    main()
