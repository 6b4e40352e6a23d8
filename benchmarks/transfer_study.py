"""The transfer-set study of issue #21 (``benchmarks/PROTOCOL.md``, its amendment fixes every
choice below before any run): does distilling on teacher-labelled extra text give a better
2-layer student, at 1,000 and at 4,000 labelled SST-2 sentences?

    python benchmarks/transfer_study.py                  # the study, cheapest runs first
    python benchmarks/transfer_study.py --max-runs 3     # three more runs, then stop
    python benchmarks/transfer_study.py --sizes 1000     # one labelled size only
    python benchmarks/transfer_study.py --cells lgtm+transfer --workers 8   # a lent GPU
    python benchmarks/transfer_study.py --report-only    # rebuild transfer_study.md

Resumable: each finished run is appended to ``results/transfer_study.json`` and never run
again; a run cut off is started again from scratch. Runs wait for what they need: a seed > 0
for its cell's learning rate (chosen on the selection set at seed 0), ``kd+transfer`` for the
``kd`` run of its seed (whose fine-tuned teacher it distils from), ``lgtm+transfer`` for the
rate ``kd+transfer`` chose.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from study_pool import key, next_ready, run_pool  # noqa: E402

ENV = os.environ.get
GLUE = Path(ENV("LGTM_STUDY_GLUE", ROOT.parent / "shared/data/glue"))
RESULTS = Path(ENV("LGTM_STUDY_RESULTS", ROOT / "benchmarks/results"))
RUNS = Path(ENV("LGTM_STUDY_RUNS", ROOT / "runs/transfer_study"))
DEVICE = ENV("LGTM_STUDY_DEVICE", "cpu: 2 cores, one run at a time, 2 threads")
THREADS = ENV("LGTM_STUDY_THREADS", "2")
LGTM = ENV("LGTM_COMMAND", "lgtm").split()
STUDY = RESULTS / "transfer_study.json"

SIZES = (1000, 4000)
CELLS = ("ce", "kd", "kd+transfer", "lgtm+transfer")
SEEDS = (0, 1, 2, 3, 4)
GRID = (1e-4, 3e-4, 1e-3)
GRID_SEED = 0
STEPS = 375  # one pass over 12,000 transfer sentences at 32 a step: every cell's updates
TRANSFER_ROWS = 12000
TEACHER_EPOCHS = {1000: 4, 4000: 1}  # 96 steps of stage one at both sizes
LABELLED_EPOCHS = {1000: 16, 4000: 4}  # enough passes over the labelled rest for 375 steps
COMMON = {
    "task": "sst2",
    "data_dir": str(GLUE / "SST-2"),
    "teacher": ENV("LGTM_STUDY_TEACHER", "bundled:all-MiniLM-L6-v2"),
    "student_layers": 2,
    "batch_size": 32,
    "warmup_ratio": 0.1,
    "weight_decay": 0.0,
    "max_length": 64,
    "feedback_fraction": 0.1,
    "selection_fraction": 0.15,
    "select_on": "selection",
    "save_steps": 10**6,  # no checkpoints: a cut-off run starts again
    "eval_batch_size": 128,
}
# Given only to the methods that read them (τ = 1, αt = 0.4, r = 0.01 are the defaults).
WITH_TEACHER = {"alpha": 0.5, "teacher_lr": 1e-4}


def run_name(run: dict) -> str:
    return f"sst2-{run['size']}-{run['cell']}-lr{run['lr']:g}-s{run['seed']}"


def flags(run: dict, rows: list[dict]) -> dict | None:
    """The run's ``lgtm distill`` settings, or None while what it needs has not finished."""
    size, cell = run["size"], run["cell"]
    out = {
        **COMMON,
        "max_train_samples": size,
        "seed": run["seed"],
        "lr": run["lr"],
        "output_dir": str(RUNS / run_name(run)),
    }
    transfer = {
        "transfer_from_train": "true",
        "max_transfer_samples": TRANSFER_ROWS,
        "transfer_batch_size": 32,
        "epochs": 1,
    }
    if cell == "ce":
        out.update(method="ce", epochs=LABELLED_EPOCHS[size], max_steps=STEPS)
    elif cell == "kd":
        out.update(method="kd", epochs=LABELLED_EPOCHS[size], max_steps=STEPS, **WITH_TEACHER)
        out["teacher_epochs"] = TEACHER_EPOCHS[size]
    elif cell == "kd+transfer":
        kd = teacher_run(rows, size, run["seed"])
        if kd is None:
            return None
        out.update(method="kd", teacher=kd["teacher_dir"], teacher_finetuned="true", **transfer)
        out["alpha"] = WITH_TEACHER["alpha"]  # its teacher is fine-tuned already
    else:
        out.update(method="lgtm", **transfer, **WITH_TEACHER)
    return out


def teacher_run(rows: list[dict], size: int, seed: int) -> dict | None:
    """The finished ``kd`` run of ``(size, seed)`` whose fine-tuned teacher ``kd+transfer``
    distils from (its teacher does not depend on the student's rate: any of them will do)."""
    runs = [r for r in rows if (r["size"], r["cell"], r["seed"]) == (size, "kd", seed)]
    kept = [r for r in runs if Path(r["teacher_dir"]).is_dir()]
    if kept:
        return max(kept, key=lambda r: r["lr"])
    if runs:  # its folder went with an earlier session's machine: the teacher is made again
        return remake_teacher(max(runs, key=lambda r: r["lr"]))
    return None


#: The ``kd`` runs made again this process, with their students' dev scores beside the recorded
#: ones (a different score would mean the code changed what ``kd`` does between commits).
REMADE: list[dict] = []


def remake_teacher(run: dict) -> dict:
    """Run a recorded ``kd`` run's command again for its fine-tuned teacher (the run is
    seeded and deterministic on one device: its teacher's dev score must equal the recorded
    one, else the study stops)."""
    print(f"re-making the teacher of {run['command'].split('--output-dir ')[-1]}", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)
    done = subprocess.run(run["command"].split(), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"re-making a teacher failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    metrics = Path(run["teacher_dir"]).parent / "metrics.json"
    dev = (json.loads(metrics.read_text()).get("teacher") or {}).get("accuracy")
    if dev != run["teacher_dev"]:
        raise SystemExit(f"the re-made teacher scores {dev} on dev, not {run['teacher_dev']}")
    student = json.loads(metrics.read_text())["student"]["accuracy"]
    REMADE.append({"run": run_name(run), "student_dev": student, "recorded": run["student_dev"]})
    print(f"its student: {student} on dev (recorded {run['student_dev']})", flush=True)
    return run


def command(run: dict, settings: dict) -> list[str]:
    cmd = [*LGTM, "distill", "--overwrite", "--quiet"]
    for k, v in settings.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def commit() -> str:
    """The commit the runs ran (``LGTM_STUDY_COMMIT`` where the copy has no git history)."""
    if ENV("LGTM_STUDY_COMMIT"):
        return ENV("LGTM_STUDY_COMMIT")
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def record(run: dict, cmd: list[str], wall: float, rows: list[dict]) -> dict:
    """The result row of a finished run."""
    out = RUNS / run_name(run)
    m = json.loads((out / "metrics.json").read_text())
    stages = {s["name"]: s for s in m["stages"]}
    teacher_seconds = (stages.get("teacher") or {}).get("seconds")
    if run["cell"] == "kd+transfer":  # its teacher was fine-tuned in its kd run
        teacher_seconds = teacher_run(rows, run["size"], run["seed"])["teacher_seconds"]
    return {
        **run,
        "student_dev": m["student"]["accuracy"],
        "student_dev_last": m.get("student_last", m["student"])["accuracy"],
        "student_selection": m["selection"]["score"],
        "selected_step": m["selection"]["step"],
        "teacher_dev": (m.get("teacher") or {}).get("accuracy"),
        "distill_seconds": stages["distill"]["seconds"],
        "labelling_seconds": stages["distill"].get("teacher_outputs_seconds"),
        "teacher_seconds": teacher_seconds,
        "steps": stages["distill"]["steps"],
        "train_samples": m["train_samples"],
        "transfer": m.get("transfer"),
        "teacher_dir": str(out / "teacher"),
        "wall_s": round(wall, 1),
        "device": DEVICE,
        "commit": commit(),
        "command": " ".join(cmd),
    }


def load() -> list[dict]:
    return json.loads(STUDY.read_text()) if STUDY.exists() else []


def save(rows: list[dict]) -> None:
    tmp = STUDY.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(STUDY)


def chosen_lr(rows: list[dict], size: int, cell: str) -> float | None:
    """The grid's winner at seed 0 (best selection score; ties: the smaller rate); None until
    the whole grid has run. ``lgtm+transfer`` takes ``kd+transfer``'s."""
    if cell == "lgtm+transfer":
        cell = "kd+transfer"
    trials = {
        r["lr"]: r["student_selection"]
        for r in rows
        if (r["size"], r["cell"], r["seed"]) == (size, cell, GRID_SEED)
    }
    if set(trials) != set(GRID):
        return None
    return min(GRID, key=lambda lr: (-trials[lr], lr))


def planned(sizes: list[int]) -> list[dict]:
    """Every run, cheapest first (PROTOCOL.md amendment, "Execution and cost"); ``lr`` None
    means the cell's chosen rate, known once its grid has run."""
    out = []
    for size in sizes:
        cheap = ("ce", "kd", "kd+transfer")
        out += [dict(size=size, cell=c, seed=GRID_SEED, lr=lr) for c in cheap for lr in GRID]
        out += [dict(size=size, cell=c, seed=s, lr=None) for s in SEEDS[1:] for c in cheap]
    for size in sizes:
        out += [dict(size=size, cell="lgtm+transfer", seed=s, lr=None) for s in SEEDS]
    return out


def next_run(pending: list[dict], rows: list[dict]) -> tuple[dict, dict] | None:
    """The first pending run whose rate and teacher are known, with its settings."""
    return next_ready(
        pending,
        rows,
        lambda run: chosen_lr(rows, run["size"], run["cell"]),
        lambda run: flags(run, rows),
    )


def execute(sizes: list[int], max_runs: int | None, workers: int = 1, cells: tuple = CELLS) -> None:
    """Run the study ``workers`` runs at a time (one on this CPU), appending each finished run
    to the results; ``cells``: only these cells' runs."""
    rows = load()
    pending = [r for r in planned(sizes) if r["cell"] in cells]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": THREADS,
        "MKL_NUM_THREADS": THREADS,
        "TOKENIZERS_PARALLELISM": "false",
    }

    def pick():
        found = next_run(pending, rows)
        if found is None:
            return None
        run, settings = found
        return run, command(run, settings), RUNS / f"{run_name(run)}.log"

    def finish(run: dict, cmd: list[str], wall: float) -> None:
        rows.append(record(run, cmd, wall, rows))
        save(rows)
        print(f"{run_name(run)}: selection {rows[-1]['student_selection']:.4f}", flush=True)

    run_pool(pick, finish, env, workers, max_runs)
    print("pending:", len(pending), flush=True)


# --------------------------------------------------------------------------- the report


def final_runs(rows: list[dict], size: int, cell: str) -> dict[int, dict]:
    lr = chosen_lr(rows, size, cell)
    return {
        r["seed"]: r
        for r in rows
        if lr is not None and (r["size"], r["cell"], r["lr"]) == (size, cell, lr)
    }


def device_kind(runs: dict[int, dict]) -> str:
    """``cpu``, ``cuda`` (or both, joined by ``+``) for a cell's runs; ``–`` for none."""
    return "+".join(sorted({r["device"].split(":")[0] for r in runs.values()})) or "–"


def replicate_lines(rows: list[dict]) -> list[str]:
    """The CPU-vs-GPU replicate: a run made on the CPU and kept apart (PROTOCOL.md, weighting
    Changes 2026-12-04) beside the same run of a GPU cell."""
    path = RESULTS / "transfer_study_cpu_replicate.json"
    if not path.exists():
        return []
    out = [
        "",
        "## One run on two devices",
        "",
        "A run made on the CPU before its cell moved whole to the GPU, kept apart (not one of "
        "the cell's seeds), beside the same command's run on the GPU (dev accuracy, %):",
        "",
        "| run | CPU student | GPU student | CPU teacher | GPU teacher |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]

    def pct(r: dict | None, k: str) -> str:
        return f"{100 * r[k]:.1f}" if r and r.get(k) is not None else "–"

    for cpu in json.loads(path.read_text()):
        g = next((r for r in rows if key(r) == key(cpu)), None)
        out.append(
            f"| {run_name(cpu)} | {pct(cpu, 'student_dev')} | {pct(g, 'student_dev')} | "
            f"{pct(cpu, 'teacher_dev')} | {pct(g, 'teacher_dev')} |"
        )
    return out


def report(rows: list[dict]) -> Path:
    """``results/transfer_study.md``: per size, each cell's dev accuracy, its distance to its
    teacher, its cost, and the claims T1–T4 with their 95% intervals."""
    from comparison_report import _ci, mean_sd, paired

    lines = [
        "# The transfer-set study (issue #21)",
        "",
        "Protocol: the transfer-set amendment of [PROTOCOL.md](../PROTOCOL.md), committed "
        "before any of these runs. Command: `python benchmarks/transfer_study.py`; this "
        "report: `python benchmarks/transfer_study.py --report-only`. SST-2 dev accuracy (%) "
        "of the student kept on the selection set, mean ± sd over seeds; every cell takes "
        f"{STEPS} student steps of 32 labelled sentences (the transfer cells also 32 transfer "
        "sentences a step). Seconds: medians over seeds of the distillation stage (steps and "
        "the frozen teacher's labelling) and, apart, of the teacher's fine-tuning; a `cuda` "
        "cell's seconds come from 16 runs sharing one GPU and compare with no CPU cell's.",
        "",
        f"Devices: {', '.join(sorted({r['device'] for r in rows})) or '–'}.",
    ]
    for size in SIZES:
        runs = {c: final_runs(rows, size, c) for c in CELLS}
        if not any(runs.values()):
            continue
        lines += [
            "",
            f"## {size:,} labelled sentences",
            "",
            "| cell | device | lr | seeds | student | student (last step) | teacher "
            "| student − teacher | distill s | teacher s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for cell in CELLS:
            r = runs[cell]
            if not r:
                lines.append(f"| {cell} | – | – | 0 | – | – | – | – | – | – |")
                continue
            v = list(r.values())
            gap = paired(
                {s: {"x": x["student_dev"]} for s, x in r.items()},
                {s: {"x": x["teacher_dev"]} for s, x in r.items() if x["teacher_dev"]},
                "x",
            )

            def median(k: str, v: list = v) -> str:
                xs = [x[k] for x in v if x.get(k) is not None]
                return f"{statistics.median(xs):.0f}" if xs else "–"

            lines.append(
                f"| {cell} | {device_kind(r)} | {v[0]['lr']:g} | {len(v)} | "
                f"{mean_sd([x['student_dev'] for x in v])} | "
                f"{mean_sd([x['student_dev_last'] for x in v])} | "
                f"{mean_sd([x['teacher_dev'] for x in v if x['teacher_dev'] is not None])} | "
                f"{_ci(gap)} | {median('distill_seconds')} | {median('teacher_seconds')} |"
            )
        lines += [
            "",
            "| claim | compared | difference (points, 95% CI) | verdict | devices |",
            "| --- | --- | ---: | --- | --- |",
        ]
        for claim, a, b in (
            ("T1", "kd+transfer", "kd"),
            ("T2", "kd+transfer", "ce"),
            ("T2'", "lgtm+transfer", "ce"),
            ("T3", "lgtm+transfer", "kd+transfer"),
            ("–", "kd", "ce"),
        ):
            p = paired(runs[a], runs[b], "student_dev")
            verdict = p["verdict"] if p else "–"
            kinds = f"{device_kind(runs[a])} − {device_kind(runs[b])}"
            if device_kind(runs[a]) != device_kind(runs[b]):
                kinds += " (mixed: PROTOCOL.md, weighting Changes 2026-12-04)"
            lines.append(f"| {claim} | {a} − {b} | {_ci(p)} | {verdict} | {kinds} |")
        grid = [
            r
            for r in rows
            if r["size"] == size and r["seed"] == GRID_SEED and r["cell"] != "lgtm+transfer"
        ]
        if grid:
            lines += [
                "",
                "Learning-rate trials (seed 0), selection-set accuracy of the kept student:",
                "",
            ]
            lines += ["| cell | " + " | ".join(f"{lr:g}" for lr in GRID) + " | chosen |"]
            lines += ["| --- |" + " ---: |" * (len(GRID) + 1)]
            for cell in CELLS[:3]:
                trials = {r["lr"]: r["student_selection"] for r in grid if r["cell"] == cell}
                cells = " | ".join(
                    f"{100 * trials[lr]:.1f}" if lr in trials else "–" for lr in GRID
                )
                chosen = chosen_lr(rows, size, cell)
                lines.append(
                    f"| {cell} | {cells} | {chosen:g} |" if chosen else f"| {cell} | {cells} | – |"
                )
    lines += replicate_lines(rows)
    path = RESULTS / "transfer_study.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--sizes", default="1000,4000")
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (a lent GPU)")
    parser.add_argument("--cells", default=",".join(CELLS), help="only these cells' runs")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cells = tuple(args.cells.split(","))
    if unknown := set(cells) - set(CELLS):
        parser.error(f"--cells: unknown {sorted(unknown)}; the cells are {', '.join(CELLS)}")
    if not args.report_only:
        execute(sizes, args.max_runs, args.workers, cells)
    print(report(load()))


if __name__ == "__main__":
    main()
