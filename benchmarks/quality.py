"""Does it teach better? KD, online, meta distillation and LGTM on real GLUE data, at CPU scale.

Teacher all-MiniLM-L6-v2 (pre-trained, not fine-tuned: ``kd`` fine-tunes it first, the others
train it jointly), student its first 2 layers, 3 seeds, the clean protocol (feedback carved from
train, dev only for the final report). The hyper-parameters below were fixed before any run and
are the same for every method; no model selection (the last step's models are reported).

    python benchmarks/quality.py                  # the whole suite (hours; resumable)
    python benchmarks/quality.py --max-runs 2     # two more runs, then stop
    python benchmarks/quality.py --report-only    # rebuild quality.md and the figures

Runs are done seed by seed, so a partial suite already covers every task and method. Each run
is one ``lgtm distill`` process; finished runs are appended to ``results/quality.json`` and
skipped when the suite is started again.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT.parent / "shared/data/glue"
RESULTS = ROOT / "benchmarks/results"
RUNS = ROOT / "runs/quality"

METHODS = ("kd", "online", "meta", "lgtm")
SEEDS = (0, 1, 2)
# Fixed before the runs (see the module docstring); identical for every method.
COMMON = {
    "teacher": "bundled:all-MiniLM-L6-v2",
    "student_layers": 2,
    "batch_size": 32,
    "lr": 1e-4,
    "teacher_lr": 5e-5,
    "alpha": 1.0,
    "teacher_alpha": 0.4,
    "temperature": 1.0,
    "feedback_fraction": 0.1,
    "weight_decay": 0.0,
}
TASKS = {
    "sst2": {"data_dir": "SST-2", "max_length": 64, "epochs": 1, "max_train_samples": 4000},
    "mrpc": {"data_dir": "MRPC", "max_length": 128, "epochs": 2},
    "rte": {"data_dir": "RTE", "max_length": 128, "epochs": 2},
}


def planned_runs() -> list[dict]:
    """Every run of the suite, seed-major so that a partial suite covers every cell."""
    runs = []
    for seed in SEEDS:
        for task in TASKS:
            for method in METHODS:
                runs.append({"task": task, "method": method, "seed": seed, "feedback": "train"})
        runs.append({"task": "mrpc", "method": "lgtm-exact", "seed": seed, "feedback": "train"})
        runs.append({"task": "mrpc", "method": "lgtm", "seed": seed, "feedback": "validation"})
    return runs


def key(run: dict) -> tuple:
    return run["task"], run["method"], run["seed"], run["feedback"]


def run_name(run: dict) -> str:
    """The folder name of a run under ``runs/quality`` (a result row works too)."""
    return f"{run['task']}-{run['method']}-{run['feedback']}-s{run['seed']}"


def run_one(run: dict, threads: int) -> dict:
    spec = TASKS[run["task"]]
    out = RUNS / run_name(run)
    flags = {
        **COMMON,
        **{k: v for k, v in spec.items() if k != "data_dir"},
        "task": run["task"],
        "data_dir": str(GLUE / spec["data_dir"]),
        "method": run["method"],
        "seed": run["seed"],
        "feedback_from": run["feedback"],
        "output_dir": str(out),
    }
    cmd = ["lgtm", "distill", "--overwrite", "--quiet"]
    for k, v in flags.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    started = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run {key(run)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        **run,
        "student": metrics["student"],
        "teacher": metrics["teacher"],
        "wall_s": time.time() - started,
        "train_samples": metrics["train_samples"],
        "commit": commit,
        "command": " ".join(cmd),
        "history": [
            {
                k: h.get(k)
                for k in (
                    "step",
                    "epoch",
                    "student_eval",
                    "teacher_eval",
                    "student_loss",
                    "teacher_loss",
                    "influence_mean",
                    "influence_std",
                )
            }
            for h in metrics["history"]
        ],
    }


def load_results(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def save_results(path: Path, results: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def main_metric(task: str) -> str:
    return {"mrpc": "f1"}.get(task, "accuracy")


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f} (n=1)"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" + (
        f" (n={len(values)})" if len(values) != len(SEEDS) else ""
    )


@functools.cache
def majority_baseline(task: str) -> dict[str, float]:
    """Dev scores of always predicting the training set's most frequent label: the floor a
    student that has learnt nothing reaches, so that the table shows who left it."""
    import numpy as np

    from lgtm.data import get_task, load_glue_dir
    from lgtm.metrics import compute_metrics

    t = get_task(task)
    data = load_glue_dir(t, GLUE / TASKS[task]["data_dir"])
    train_labels = [e.label for e in data.train]
    majority = max(set(train_labels), key=train_labels.count)
    dev = np.array([e.label for e in next(iter(data.evals.values()))])
    logits = np.zeros((len(dev), t.num_labels))
    logits[:, majority] = 1.0
    return compute_metrics(t, logits, dev)


def report(results: list[dict], out: Path) -> None:
    lines = [
        "# Does it teach better? KD, online, meta distillation and LGTM at CPU scale",
        "",
        "Teacher all-MiniLM-L6-v2 (pre-trained; `kd` fine-tunes it first), student its first 2 "
        "layers. Clean protocol: feedback carved from train (10%, stratified), dev used only "
        "for the final report, no model selection (last step). Same budget, optimizer (AdamW, "
        "linear decay, no warm-up), learning rates (student 1e-4, teacher 5e-5), α = 1, "
        "αt = 0.4, τ = 1 and batch 32 for every method. Scores are dev-set percentages, mean ± "
        "std over seeds 0, 1, 2 (n says how many seeds are in where fewer).",
        "",
        "Budgets: "
        + "; ".join(
            f"{t.upper()} {s.get('max_train_samples', 'all')} training rows, {s['epochs']} "
            f"epoch(s), max length {s['max_length']}"
            for t, s in TASKS.items()
        )
        + ".",
        "",
        "Command: `python benchmarks/quality.py` (each run is one `lgtm distill`, recorded in "
        "`quality.json`).",
        "",
        "| task | metric | method | student | teacher (final) | wall (s) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for task in TASKS:
        metric = main_metric(task)
        floor = 100 * majority_baseline(task)[metric]
        lines.append(f"| {task.upper()} | {metric} | majority class | {floor:.1f} | – | – |")
        for method in METHODS:
            rows = [
                r
                for r in results
                if r["task"] == task and r["method"] == method and r["feedback"] == "train"
            ]
            if not rows:
                continue
            lines.append(
                f"| {task.upper()} | {metric} | {method} | "
                f"{fmt([r['student'][metric] for r in rows])} | "
                f"{fmt([r['teacher'][metric] for r in rows])} | "
                f"{statistics.median(r['wall_s'] for r in rows):.0f} |"
            )
    extras = [
        ("lgtm (train feedback)", "lgtm", "train"),
        ("lgtm-exact (no approximation)", "lgtm-exact", "train"),
        ("lgtm, feedback = dev (paper's protocol, leaks)", "lgtm", "validation"),
    ]
    lines += [
        "",
        "## MRPC extras",
        "",
        "| run | student F1 | student acc | teacher F1 | wall (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    floor = majority_baseline("mrpc")
    lines.append(
        f"| majority class | {100 * floor['f1']:.1f} | {100 * floor['accuracy']:.1f} | – | – |"
    )
    for label, method, feedback in extras:
        rows = [
            r
            for r in results
            if r["task"] == "mrpc" and r["method"] == method and r["feedback"] == feedback
        ]
        if rows:
            lines.append(
                f"| {label} | {fmt([r['student']['f1'] for r in rows])} | "
                f"{fmt([r['student']['accuracy'] for r in rows])} | "
                f"{fmt([r['teacher']['f1'] for r in rows])} | "
                f"{statistics.median(r['wall_s'] for r in rows):.0f} |"
            )
    lines += per_seed_table(results, extras)
    lines += [
        "",
        "What the teacher was told: per-quarter influence statistics of the LGTM runs are in "
        "[quality_influence.md](quality_influence.md) (`python benchmarks/influence_stats.py`).",
        "",
        "## Dev curves",
        "",
        "Dev accuracy of student and teacher over distillation, every seed (MRPC too: its F1 "
        "of 81.2 for always answering 'paraphrase' hides who left that floor); dashed: the "
        "majority class. kd's teacher was fine-tuned before distillation, so its line is flat.",
        "",
    ]
    for task in TASKS:
        if plot_task(results, task, out / f"quality_{task}.png"):
            lines.append(f"![{task}](quality_{task}.png)")
    done = {key(r) for r in results}
    missing = [k for k in map(key, planned_runs()) if k not in done]
    lines += [
        "",
        f"Runs done: {len(done)} of {len(planned_runs())}."
        + (f" Missing: {', '.join('/'.join(map(str, k)) for k in missing)}." if missing else ""),
    ]
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    if out.resolve() == RESULTS.resolve():
        headers = ("## MRPC", "## Student")
        table = [line for line in lines if line.startswith(("|", *headers))]
        sync_readme(ROOT / "README.md", table, f"{len(done)} of {len(planned_runs())}")


def per_seed_table(results: list[dict], extras: list[tuple[str, str, str]]) -> list[str]:
    """The student's main score of every run, by seed: with three seeds a mean ± std hides
    whether one seed or all of them make a difference (the same seed = the same data split)."""
    cells = [(t, m, "train", m) for t in TASKS for m in METHODS]
    main_cells = {(t, m, fb) for t, m, fb, _ in cells}
    cells += [("mrpc", m, fb, lab) for lab, m, fb in extras if ("mrpc", m, fb) not in main_cells]
    lines = [
        "",
        "## Student, seed by seed (dev accuracy; MRPC: F1)",
        "",
        "| task | method | " + " | ".join(f"seed {s}" for s in SEEDS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in SEEDS) + " |",
    ]
    for task, method, feedback, label in cells:
        by_seed = {
            r["seed"]: r["student"][main_metric(task)]
            for r in results
            if (r["task"], r["method"], r["feedback"]) == (task, method, feedback)
        }
        if by_seed:
            values = [f"{100 * by_seed[s]:.1f}" if s in by_seed else "–" for s in SEEDS]
            lines.append(f"| {task.upper()} | {label} | " + " | ".join(values) + " |")
    return lines


def sync_readme(readme: Path, table: list[str], done: str) -> None:
    """Put the result tables between the README's quality markers, so the two never disagree."""
    start, end = "<!-- quality:start -->", "<!-- quality:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return
    body = [f"Runs done: {done} (copied from `benchmarks/results/quality.md`).", ""]
    for line in table:
        if line.startswith("## "):
            body += ["", f"**{line[3:]}**", ""]
        else:
            body.append(line)
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + "\n" + "\n".join(body) + "\n" + end + tail)


def plot_task(results: list[dict], task: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r["task"] == task and r["feedback"] == "train"]
    if not rows:
        return False
    # accuracy for every task: MRPC's F1 of 81.2 for "all paraphrase" hides who left the floor
    metric = "accuracy"
    floor = 100 * majority_baseline(task)[metric]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors = dict(zip((*METHODS, "lgtm-exact"), ("C0", "C1", "C2", "C3", "C4")))
    for ax, who in zip(axes, ("student", "teacher")):
        for method in (*METHODS, "lgtm-exact"):
            for i, r in enumerate(r for r in rows if r["method"] == method):
                pts = [(h["epoch"], h[f"{who}_eval"]) for h in r["history"] if h.get(f"{who}_eval")]
                if not pts:
                    continue
                x = [p[0] for p in pts]
                y = [100 * _metric(p[1], metric) for p in pts]
                ax.plot(
                    x,
                    y,
                    "-o",
                    ms=3,
                    color=colors[method],
                    alpha=0.8,
                    label=method if i == 0 else None,
                )
        ax.axhline(floor, color="grey", ls="--", lw=1, label="majority class")
        ax.set_ylim(floor - 10, 100)
        ax.set_title(f"{who} on dev ({task.upper()}, {metric})")
        ax.set_xlabel("epoch of distillation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"{metric} (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _metric(values: dict, metric: str) -> float:
    return split_scores(values)[metric]


def split_scores(values: dict) -> dict:
    """``{metric: v}`` from a history entry's scores, which may be ``{split: {metric: v}}``."""
    first = next(iter(values.values()))
    return first if isinstance(first, dict) else values


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-runs", type=int, default=None, help="stop after N new runs")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default=str(RESULTS / "quality.json"))
    args = p.parse_args(argv)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = load_results(path)
    if not args.report_only:
        done = {key(r) for r in results}
        todo = [r for r in planned_runs() if key(r) not in done]
        for run in todo[: args.max_runs]:
            print(f"run {'/'.join(map(str, key(run)))} ...", flush=True)
            results.append(run_one(run, args.threads))
            save_results(path, results)
            report(results, path.parent)
            r = results[-1]
            print(
                f"  student {r['student']}  teacher {r['teacher']}  {r['wall_s']:.0f} s", flush=True
            )
    report(results, path.parent)
    print((path.parent / "quality.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
