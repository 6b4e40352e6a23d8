"""The comparison of issue #13: which method gives the best 2-layer student, under one clean
protocol (``benchmarks/PROTOCOL.md``, which fixes every choice below before any run).

    python benchmarks/comparison.py --tasks sst2     # the study on this CPU (hours, resumable)
    python benchmarks/comparison.py --only core      # the core methods only
    python benchmarks/comparison.py --max-runs 4     # four more runs, then stop
    python benchmarks/comparison.py --pilot          # the protocol's pilots (selection set only)
    python benchmarks/comparison.py --auto mrpc      # pilots, their decisions, core, in one go
    python benchmarks/comparison.py --cpu-replicate 0,1   # GPU cells again on this CPU
    python benchmarks/comparison.py --report-only    # rebuild comparison.md and the figures
    bash benchmarks/comparison_gpu.sh                # on a lent GPU machine (see its header)

Each run is one ``lgtm distill`` process with one thread; finished runs are appended to
``results/comparison.json`` (``comparison_gpu.json`` from a GPU machine) and skipped when the
suite is started again (a run that was cut off is started again from scratch). A method's seeds
1.. wait for its learning-rate trials (seed 0) on the same task: the chosen rate is the trial
with the best selection-set score. The study of record ran on a GPU: ``comparison.md``.
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
# Where the runs happen: this machine by default; a lent GPU machine sets these (PROTOCOL.md).
ENV = os.environ.get
GLUE = Path(ENV("LGTM_COMPARISON_GLUE", ROOT.parent / "shared/data/glue"))
RESULTS = Path(ENV("LGTM_COMPARISON_RESULTS", ROOT / "benchmarks/results"))
DEVICE = ENV("LGTM_COMPARISON_DEVICE", "cpu: 2 cores, 1 thread per run, 2 runs at a time")
LGTM = ENV("LGTM_COMMAND", "lgtm").split()
THREADS = ENV("LGTM_COMPARISON_THREADS", "1")
RUNS = Path(ENV("LGTM_COMPARISON_RUNS", ROOT / "runs/comparison"))
STUDY = RESULTS / "comparison.json"
# Cells run on a lent GPU machine: kept apart (a cell never mixes devices), read with the rest.
STUDY_GPU = RESULTS / "comparison_gpu.json"
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
    "teacher": ENV("LGTM_COMPARISON_TEACHER", "bundled:all-MiniLM-L6-v2"),
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
PILOT_SEED = 100


def run_name(run: dict) -> str:
    tag = "pilot-" if run.get("pilot") else ""
    tlr = f"-tlr{run['teacher_lr']:g}-e{run['epochs']}" if run.get("pilot") else ""
    return f"{tag}{run['task']}-{run['method']}-lr{run['student_lr']:g}{tlr}-s{run['seed']}"


def command(run: dict) -> list[str]:
    """The ``lgtm distill`` command of one run."""
    spec = TASKS[run["task"]]
    method, objective = OBJECTIVE_OF.get(run["method"], (run["method"], "kl"))
    flags = {
        **COMMON,
        **{k: v for k, v in spec.items() if k != "data_dir"},
        **({"epochs": run["epochs"]} if run.get("epochs") else {}),
        "task": run["task"],
        "data_dir": str(GLUE / spec["data_dir"]),
        "method": method,
        "objective": objective,
        "lr": run["student_lr"],
        "teacher_lr": run["teacher_lr"],
        "seed": run["seed"],
        "output_dir": str(RUNS / run_name(run)),
    }
    from lgtm import config as cfg

    cmd = [*LGTM, "distill", "--overwrite", "--quiet"]
    for k, v in cfg.drop_ignored(flags).items():  # e.g. no --alpha for ce or dml
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def commit() -> str:
    if ENV("LGTM_COMPARISON_COMMIT"):  # a copy of the tree without its history
        return ENV("LGTM_COMPARISON_COMMIT")
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
        "epochs": run.get("epochs") or TASKS[run["task"]]["epochs"],
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
    keep = ("task", "method", "seed", "epochs", "student_lr", "teacher_lr", "student_selection")
    out = {k: row[k] for k in keep}
    out["teacher_selection"] = row["teacher_selection"]
    out["student_selection_curve"] = [
        h["student_selection"] for h in row["history"] if h.get("student_selection")
    ]
    out["wall_s"], out["device"], out["command"] = row["wall_s"], row["device"], row["command"]
    return out


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def load_study() -> list[dict]:
    """Every study row: this machine's and a lent GPU machine's."""
    return load(STUDY) + load(STUDY_GPU)


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


PILOT_TEACHER_LRS = (5e-5, 1e-4, 2e-4)
PILOT_STUDENT_LRS = (1e-4, 3e-4, 1e-3, 3e-3)


def pilot_runs(tasks: list[str], epochs: int | None = None, only_ce: bool = False) -> list[dict]:
    """PROTOCOL.md's pilots P1 (kd, teacher lr) and P2 (ce, student lr), seed 100."""
    runs = []
    for task in tasks:
        if not only_ce:
            for tlr in PILOT_TEACHER_LRS:
                runs.append(dict(task=task, method="kd", student_lr=1e-3, teacher_lr=tlr))
        for lr in PILOT_STUDENT_LRS:
            runs.append(dict(task=task, method="ce", student_lr=lr, teacher_lr=1e-4))
    for run in runs:
        run.update(seed=PILOT_SEED, pilot=True, epochs=epochs or TASKS[run["task"]]["epochs"])
    return runs


def selection_majority(task: str) -> float:
    """Accuracy of always answering the most frequent class on the pilots' selection set."""
    from lgtm import config as cfg
    from lgtm.train import load_data

    spec = TASKS[task]
    values = {k: v for k, v in COMMON.items() if k in ("selection_fraction", "feedback_fraction")}
    values.update(task=task, data_dir=str(GLUE / spec["data_dir"]), seed=PILOT_SEED)
    values["max_train_samples"] = spec.get("max_train_samples")
    labels = [e.label for e in load_data(cfg.resolve(values)).selection]
    return max(labels.count(c) for c in set(labels)) / len(labels)


def decide(task: str, pilots: list[dict], epochs: int) -> dict:
    """PROTOCOL.md's pilot rules for ``task``: P1's teacher lr (best teacher selection score,
    ties to the smaller); P2's verdict at ``epochs`` (the best selection accuracy must beat the
    majority class by 5 points) and grid (one step up if ce's best rate is the largest)."""
    kd = {r["teacher_lr"]: r["teacher_selection"] for r in pilots if r["method"] == "kd"}
    ce = [r for r in pilots if r["method"] == "ce" and r["epochs"] == epochs]
    ce = [r for r in ce if r["task"] == task]
    teacher_lr = max(sorted(kd), key=lambda lr: kd[lr])
    best = max(sorted(ce, key=lambda r: r["student_lr"]), key=lambda r: r["student_selection"])
    accuracy = max(c["accuracy"] for r in ce for c in r["student_selection_curve"])
    floor = selection_majority(task)
    grid = GRID[task] if best["student_lr"] < max(PILOT_STUDENT_LRS) else (3e-4, 1e-3, 3e-3)
    return {
        "teacher_lr": teacher_lr,
        "epochs": epochs,
        "passes": accuracy - floor >= 0.05,
        "best_accuracy": accuracy,
        "majority": floor,
        "grid": grid,
    }


def auto(task: str, workers: int, epochs: int | None = None) -> None:
    """Pilots, the protocol's decisions, then the core study of one task, in one go (for a
    lent machine that must run both within one call). ``epochs``: P1 and P2 at this budget,
    with no fallback (PROTOCOL.md, "Changes")."""
    if epochs:
        TASKS[task]["epochs"] = epochs
    execute(pilot_runs([task]), PILOTS, workers, None, pilot=True)
    rows = [r for r in load(PILOTS) if r["task"] == task and r["epochs"] == TASKS[task]["epochs"]]
    choice = decide(task, rows, TASKS[task]["epochs"])
    if not choice["passes"] and epochs:
        raise SystemExit(f"{task}: the student stays at the majority class: {choice}")
    if not choice["passes"]:  # P2 failed: 2 epochs, P2 again
        execute(pilot_runs([task], epochs=2, only_ce=True), PILOTS, workers, None, pilot=True)
        rows = [r for r in load(PILOTS) if r["task"] == task]
        choice = decide(task, rows, 2)
        if not choice["passes"]:
            raise SystemExit(f"{task}: the student stays at the majority class: {choice}")
    print(f"{task}: pilots decide {choice}", flush=True)
    (RESULTS / f"comparison_decision_{task}.json").write_text(json.dumps(choice, indent=1))
    TEACHER_LR[task], GRID[task] = choice["teacher_lr"], tuple(choice["grid"])
    TASKS[task]["epochs"] = choice["epochs"]
    execute(planned("core", [task]), STUDY, workers, None, pilot=False)


def start(run: dict) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": THREADS,
        "MKL_NUM_THREADS": THREADS,
        "TOKENIZERS_PARALLELISM": "false",
    }
    out = RUNS / run_name(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(RUNS / f"{run_name(run)}.log", "w")  # noqa: SIM115 - closed when the run ends
    proc = subprocess.Popen(command(run), env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log, proc.run, proc.started = log, run, time.time()  # type: ignore[attr-defined]
    return proc


def key(row: dict) -> tuple:
    return (
        row["task"],
        row["method"],
        row["seed"],
        row["student_lr"],
        row["teacher_lr"],
        (row.get("epochs") if row.get("pilot") or "student_selection_curve" in row else None),
    )


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


def execute(
    runs: list[dict],
    path: Path,
    workers: int,
    max_runs: int | None,
    pilot: bool,
    replicate: bool = False,
) -> None:
    """Run ``runs`` ``workers`` at a time, appending each finished one to ``path``; runs in the
    study's other files count as done unless ``replicate`` (a cross-check on another device)."""
    rows, pending, active, started = load(path), list(runs), [], 0
    study = (STUDY, STUDY_GPU)
    others = [r for f in study if f != path for r in load(f)] if not (pilot or replicate) else []
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
            ready = next_run(pending, rows + others, {key(p.run) for p in active})
            if ready is None:
                break
            active.append(start(ready))
            started += 1
            print(f"started {run_name(ready)}", flush=True)
        if not active:
            return
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", choices=("all", "core", "baselines"), default="all")
    parser.add_argument(
        "--tasks",
        default="sst2",
        help="comma-separated among " + ", ".join(TASKS) + " (default sst2: MRPC failed the "
        "protocol's pilot P2, so it has no study settings)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--pilot", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--cpu-replicate",
        metavar="SEEDS",
        help="run sst2 lgtm at its chosen rate for these seeds (e.g. 0,1,2) on this CPU, into "
        "comparison_cpu_sst2.json: a cross-check of the GPU cells, and saved models for "
        "influence_share.py",
    )
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument(
        "--auto", choices=tuple(TASKS), help="pilots, decisions and core of one task"
    )
    parser.add_argument("--auto-epochs", type=int, default=None, help="--auto's budget")
    args = parser.parse_args()
    unknown = [t for t in args.tasks.split(",") if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)}; choose among {', '.join(TASKS)}")
    if args.cpu_replicate and not all(x.isdigit() for x in args.cpu_replicate.split(",")):
        parser.error(f"--cpu-replicate: expected seeds such as 0,1,2, got {args.cpu_replicate!r}")
    if args.pilot:
        tasks = args.tasks.split(",")
        execute(pilot_runs(tasks), PILOTS, args.workers, args.max_runs, pilot=True)
        return
    if args.cpu_replicate:
        lr = chosen_lr(load_study(), "sst2", "lgtm")
        seeds = [int(x) for x in args.cpu_replicate.split(",")]
        runs = [
            dict(task="sst2", method="lgtm", seed=s, student_lr=lr, teacher_lr=TEACHER_LR["sst2"])
            for s in seeds
        ]
        path = RESULTS / "comparison_cpu_sst2.json"
        execute(runs, path, args.workers, None, pilot=False, replicate=True)
        return
    if args.auto:
        auto(args.auto, args.workers, args.auto_epochs)
        return
    if not args.report_only:
        tasks = args.tasks.split(",")
        for task in tasks:  # decided on a lent machine by --auto
            decision = RESULTS / f"comparison_decision_{task}.json"
            if TEACHER_LR.get(task) is None and decision.exists():
                choice = json.loads(decision.read_text())
                TEACHER_LR[task], GRID[task] = choice["teacher_lr"], tuple(choice["grid"])
                TASKS[task]["epochs"] = choice["epochs"]
        undecided = [t for t in tasks if TEACHER_LR.get(t) is None]
        if undecided:
            raise SystemExit(
                f"{', '.join(undecided)}: no study settings (the pilots decide them; see "
                "PROTOCOL.md): run --pilot or --auto for it first"
            )
        execute(planned(args.only, tasks), STUDY, args.workers, args.max_runs, pilot=False)
    sys.path.insert(0, str(Path(__file__).parent))
    from comparison_report import report

    if not args.no_report:
        report(load_study())


if __name__ == "__main__":
    main()
