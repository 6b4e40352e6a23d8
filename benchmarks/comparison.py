"""The comparison of issue #13: which method gives the best 2-layer student, under one clean
protocol (``benchmarks/PROTOCOL.md``, which fixes every choice below before any run).

    python benchmarks/comparison.py                  # the study (hours, resumable)
    python benchmarks/comparison.py --only core      # the core methods only
    python benchmarks/comparison.py --max-runs 4     # four more runs, then stop
    python benchmarks/comparison.py --pilot          # the protocol's pilots (selection set only)
    python benchmarks/comparison.py --report-only    # rebuild comparison.md and the figures

Each run is one ``lgtm distill`` process with one thread; finished runs are appended to
``results/comparison.json`` and skipped when the suite is started again (a run that was cut off
is started again from scratch). A method's seeds 1.. wait for its learning-rate trials (seed 0)
on the same task: the chosen rate is the trial with the best selection-set score.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT.parent / "shared/data/glue"
RESULTS = ROOT / "benchmarks/results"
RUNS = ROOT / "runs/comparison"
STUDY = RESULTS / "comparison.json"
PILOTS = RESULTS / "comparison_pilots.json"

CORE = ("ce", "kd", "online", "meta", "lgtm")
BASELINES = ("pkd", "skd", "dist", "takd", "rco", "dml", "prokt", "pesf")
CORE_SEEDS = (0, 1, 2, 3, 4)
BASELINE_SEEDS = (0, 1, 2)
GRID_SEED = 0
# Student learning rates per task (PROTOCOL.md, "Selection"; pilot P2 may move one up a step).
GRID = {"sst2": (1e-4, 3e-4, 1e-3), "mrpc": (1e-4, 3e-4, 1e-3)}
TEACHER_LR = {"sst2": 1e-4, "mrpc": None}  # pilot P1's choice (PROTOCOL.md, "Pilots")
# The protocol's fixed settings, identical for every method.
COMMON = {
    "teacher": "bundled:all-MiniLM-L6-v2",
    "student_layers": 2,
    "batch_size": 32,
    "alpha": 0.5,
    "teacher_alpha": 0.4,
    "temperature": 1.0,
    "fd_radius": 0.01,
    "warmup_ratio": 0.1,
    "weight_decay": 0.0,
    "feedback_fraction": 0.1,
    "selection_fraction": 0.15,
    "select_on": "selection",
    "feedback_from": "train",
    # not results: no checkpoints (a cut-off run starts again from scratch), bigger eval batches
    "save_steps": 10**6,
    "eval_batch_size": 128,
}
TASKS = {
    "sst2": {"data_dir": "SST-2", "max_length": 64, "epochs": 1, "max_train_samples": 4000},
    "mrpc": {"data_dir": "MRPC", "max_length": 128, "epochs": 1},
}
# Methods that are kd with another objective (the paper's skd and dist baselines).
OBJECTIVE_OF = {"skd": ("kd", "skd"), "dist": ("kd", "dist")}
DEVICE = "cpu: 2 cores, 1 thread per run, 2 runs at a time"


def run_name(run: dict) -> str:
    tag = "pilot-" if run.get("pilot") else ""
    tlr = f"-tlr{run['teacher_lr']:g}" if run.get("pilot") else ""
    return f"{tag}{run['task']}-{run['method']}-lr{run['student_lr']:g}{tlr}-s{run['seed']}"


def command(run: dict) -> list[str]:
    """The ``lgtm distill`` command of one run."""
    spec = TASKS[run["task"]]
    method, objective = OBJECTIVE_OF.get(run["method"], (run["method"], "kl"))
    flags = {
        **COMMON,
        **{k: v for k, v in spec.items() if k != "data_dir"},
        "task": run["task"],
        "data_dir": str(GLUE / spec["data_dir"]),
        "method": method,
        "objective": objective,
        "lr": run["student_lr"],
        "teacher_lr": run["teacher_lr"],
        "seed": run["seed"],
        "output_dir": str(RUNS / run_name(run)),
    }
    cmd = ["lgtm", "distill", "--overwrite", "--quiet"]
    for k, v in flags.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def main_score(scores: dict | None, task: str) -> float | None:
    """The task's main metric (accuracy; F1 for MRPC) from a score dictionary."""
    if not scores:
        return None
    return scores["f1"] if task == "mrpc" else scores["accuracy"]


def record(run: dict, out: Path, wall_s: float) -> dict:
    """The result row of a finished run (PROTOCOL.md, "Execution")."""
    m = json.loads((out / "metrics.json").read_text())
    history = [
        {
            k: h.get(k)
            for k in (
                "step",
                "student_eval",
                "student_selection",
                "teacher_eval",
                "teacher_selection",
                "student_loss",
                "teacher_loss",
                "influence_mean",
            )
            if k in h
        }
        for h in m["history"]
    ]
    teacher_stage = [h for h in m.get("teacher_finetune_history", []) if "teacher_selection" in h]
    return {
        "task": run["task"],
        "method": run["method"],
        "seed": run["seed"],
        "student_lr": run["student_lr"],
        "teacher_lr": run["teacher_lr"],
        "grid": run["seed"] == GRID_SEED,
        "student_dev": main_score(m["student"], run["task"]),
        "student_dev_last": main_score(m.get("student_last", m["student"]), run["task"]),
        "student_selection": m["selection"]["score"],
        "teacher_dev": main_score(m.get("teacher"), run["task"]),
        "teacher_selection": main_score(
            (teacher_stage or [h for h in history if h.get("teacher_selection")] or [{}])[-1].get(
                "teacher_selection"
            ),
            run["task"],
        ),
        "selected_step": m["selection"]["step"],
        "student_dev_scores": m["student"],
        "wall_s": round(wall_s, 1),
        "device": DEVICE,
        "commit": commit(),
        "command": " ".join(command(run)),
        "history": history,
    }


def pilot_record(row: dict) -> dict:
    """A pilot's row without anything measured on dev (PROTOCOL.md, "Pilots")."""
    keep = ("task", "method", "seed", "student_lr", "teacher_lr", "student_selection")
    out = {k: row[k] for k in keep}
    out["teacher_selection"] = row["teacher_selection"]
    out["student_selection_curve"] = [
        h["student_selection"] for h in row["history"] if h.get("student_selection")
    ]
    out["wall_s"], out["command"] = row["wall_s"], row["command"]
    return out


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def save(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)


def chosen_lr(rows: list[dict], task: str, method: str) -> float | None:
    """The grid value whose seed-0 trial has the best selection score (ties: the smaller);
    None until every trial of the grid is in."""
    trials = {
        r["student_lr"]: r["student_selection"]
        for r in rows
        if r["task"] == task and r["method"] == method and r["grid"]
    }
    if set(trials) != set(GRID[task]):
        return None
    return max(sorted(trials), key=lambda lr: trials[lr])


def planned(only: str, tasks: list[str]) -> list[dict]:
    """Every study run, in the protocol's order; ``student_lr`` None = the chosen one."""
    groups = {"core": (CORE, CORE_SEEDS), "baselines": (BASELINES, BASELINE_SEEDS)}
    runs = []
    for group in ("core", "baselines"):
        if only not in ("all", group):
            continue
        methods, seeds = groups[group]
        for task in tasks:
            for lr in GRID[task]:
                runs += [dict(task=task, method=m, seed=GRID_SEED, student_lr=lr) for m in methods]
            for seed in seeds[1:]:
                runs += [dict(task=task, method=m, seed=seed, student_lr=None) for m in methods]
    for run in runs:
        run["teacher_lr"] = TEACHER_LR[run["task"]]
    return runs


def pilot_runs() -> list[dict]:
    runs = []
    for task in TASKS:
        for tlr in (5e-5, 1e-4, 2e-4):
            runs.append(dict(task=task, method="kd", student_lr=1e-3, teacher_lr=tlr))
        for lr in (1e-4, 3e-4, 1e-3, 3e-3):
            runs.append(dict(task=task, method="ce", student_lr=lr, teacher_lr=1e-4))
    for run in runs:
        run.update(seed=100, pilot=True)
    return runs


def start(run: dict) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    out = RUNS / run_name(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(RUNS / f"{run_name(run)}.log", "w")  # noqa: SIM115 - closed when the run ends
    proc = subprocess.Popen(command(run), env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log, proc.run, proc.started = log, run, time.time()  # type: ignore[attr-defined]
    return proc


def key(row: dict) -> tuple:
    return row["task"], row["method"], row["seed"], row["student_lr"], row["teacher_lr"]


def next_run(pending: list[dict], rows: list[dict], busy: set) -> dict | None:
    """The first pending run that can start (its learning rate known), removed from
    ``pending``; runs already in ``rows`` are dropped on the way."""
    for run in list(pending):
        lr = run["student_lr"]
        if lr is None:
            lr = chosen_lr(rows, run["task"], run["method"])
            if lr is None:
                continue
        ready = {**run, "student_lr": lr}
        if key(ready) in {key(r) for r in rows} or key(ready) in busy:
            pending.remove(run)
            continue
        pending.remove(run)
        return ready
    return None


def execute(runs: list[dict], path: Path, workers: int, max_runs: int | None, pilot: bool) -> None:
    """Run ``runs`` ``workers`` at a time, appending each finished one to ``path``."""
    rows, pending, active, started = load(path), list(runs), [], 0
    while True:
        for proc in [p for p in active if p.poll() is not None]:
            active.remove(proc)
            proc.log.close()
            run = proc.run
            if proc.returncode != 0:
                log = (RUNS / f"{run_name(run)}.log").read_text()[-3000:]
                raise SystemExit(f"run {run_name(run)} failed:\n{log}")
            row = record(run, RUNS / run_name(run), time.time() - proc.started)
            rows.append(pilot_record(row) if pilot else row)
            save(path, rows)
            print(f"done {run_name(run)}: selection {row['student_selection']:.4f}", flush=True)
        while len(active) < workers and (max_runs is None or started < max_runs):
            ready = next_run(pending, rows, {key(p.run) for p in active})
            if ready is None:
                break
            active.append(start(ready))
            started += 1
            print(f"started {run_name(ready)}", flush=True)
        if not active:
            return
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("all", "core", "baselines"), default="all")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, e.g. sst2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--pilot", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.pilot:
        execute(pilot_runs(), PILOTS, args.workers, args.max_runs, pilot=True)
        return
    if not args.report_only:
        tasks = args.tasks.split(",")
        if any(TEACHER_LR.get(t) is None for t in tasks):
            raise SystemExit("run the pilots first and fill in TEACHER_LR (PROTOCOL.md)")
        execute(planned(args.only, tasks), STUDY, args.workers, args.max_runs, pilot=False)
    sys.path.insert(0, str(Path(__file__).parent))
    from comparison_report import report

    report(load(STUDY))


if __name__ == "__main__":
    main()
