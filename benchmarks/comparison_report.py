"""comparison.md and one figure per task from ``results/comparison.json`` (PROTOCOL.md's
statistics and decision rule).

    python benchmarks/comparison_report.py     # also: python benchmarks/comparison.py --report-only
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
from comparison import CORE, GLUE, GRID, RESULTS, TASKS, chosen_lr, load_study
from scipy import stats

ORDER = (*CORE, "pkd", "skd", "dist", "takd", "rco", "dml", "prokt", "pesf")
NAMES = {"sst2": "SST-2", "mrpc": "MRPC"}
METRIC = {"sst2": "accuracy", "mrpc": "F1"}
# (claim, other method, score): PROTOCOL.md, "Questions and the claims they decide".
CLAIMS = (
    ("C1 distillation vs the student alone", "kd", "ce", "student_dev"),
    ("C1 distillation vs the student alone", "lgtm", "ce", "student_dev"),
    ("C2 LGTM vs KD", "lgtm", "kd", "student_dev"),
    (
        "C3 LGTM vs ProKT (the influence term; ProKT's heads start at zero here)",
        "lgtm",
        "prokt",
        "student_dev",
    ),
    (
        "C3, descriptive: LGTM vs online (the same step without it, same heads)",
        "lgtm",
        "online",
        "student_dev",
    ),
    ("C4 the teacher: LGTM vs meta", "lgtm", "meta", "teacher_dev"),
)


def majority(task: str) -> dict[str, float]:
    """Dev scores of always predicting the training set's most frequent class."""
    from lgtm.data import get_task, load_glue_dir
    from lgtm.metrics import compute_metrics

    spec = get_task(task)
    loaded = load_glue_dir(spec, str(GLUE / TASKS[task]["data_dir"]))
    train = [e.label for e in loaded.train]
    top = max(set(train), key=train.count)
    dev = np.asarray([e.label for e in next(iter(loaded.evals.values()))])
    logits = np.zeros((len(dev), len(spec.label_names)))
    logits[:, top] = 1.0
    return compute_metrics(spec, logits, dev)


def final_runs(rows: list[dict], task: str, method: str) -> dict[int, dict]:
    """Seed -> the run at the method's chosen learning rate (seed 0: its winning trial)."""
    lr = chosen_lr(rows, task, method)
    return {
        r["seed"]: r
        for r in rows
        if lr is not None and (r["task"], r["method"], r["student_lr"]) == (task, method, lr)
    }


def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.1f}"
    return f"{statistics.mean(pct):.1f} ± {statistics.stdev(pct):.1f}"


def paired(a: dict[int, dict], b: dict[int, dict], score: str) -> dict | None:
    """The paired difference a − b (points) over shared seeds, with its 95% t interval."""
    seeds = sorted(
        s for s in set(a) & set(b) if a[s].get(score) is not None and b[s].get(score) is not None
    )
    if len(seeds) < 2:
        return None
    d = [100 * (a[s][score] - b[s][score]) for s in seeds]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    half = stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
    verdict = (
        "better" if mean - half > 0 else "worse" if mean + half < 0 else "no difference detected"
    )
    return {"n": len(d), "mean": mean, "low": mean - half, "high": mean + half, "verdict": verdict}


def _ci(p: dict | None) -> str:
    if p is None:
        return "–"
    return f"{p['mean']:+.1f} [{p['low']:+.1f}, {p['high']:+.1f}] (n={p['n']})"


def task_section(rows: list[dict], task: str, figures: list[str]) -> list[str]:
    name, metric = NAMES[task], METRIC[task]
    methods = [m for m in ORDER if any(r["task"] == task and r["method"] == m for r in rows)]
    runs = {m: final_runs(rows, task, m) for m in methods}
    base = majority(task)
    main = base["f1"] if task == "mrpc" else base["accuracy"]
    out = [f"## {name} (dev {metric}, %)", ""]
    out += [
        "| method | lr | seeds | student (selected) | student (last step) | teacher | wall (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| majority class | – | – | {100 * main:.1f} | – | – | – |",
    ]
    for m in methods:
        r = runs[m]

        def vals(k: str, r: dict = r) -> list:
            return [x[k] for x in r.values() if x.get(k) is not None]

        lr = chosen_lr(rows, task, m)
        wall = statistics.median(vals("wall_s")) if r else None
        out.append(
            f"| {m} | {lr:.0e} | {len(r)} | {mean_sd(vals('student_dev'))} | "
            f"{mean_sd(vals('student_dev_last'))} | {mean_sd(vals('teacher_dev'))} | "
            f"{wall:.0f} |"
            if lr is not None
            else f"| {m} | (trials running) | 0 | – | – | – | – |"
        )
    out += ["", f"Learning-rate trials (seed 0), selection-set {metric} of the kept student:", ""]
    out += ["| method | " + " | ".join(f"{g:.0e}" for g in GRID[task]) + " | chosen |"]
    out += ["| --- |" + " ---: |" * (len(GRID[task]) + 1)]
    for m in methods:
        trial = {
            r["student_lr"]: r["student_selection"]
            for r in rows
            if r["task"] == task and r["method"] == m and r["grid"]
        }
        cells = [f"{100 * trial[g]:.1f}" if g in trial else "–" for g in GRID[task]]
        lr = chosen_lr(rows, task, m)
        out.append(f"| {m} | " + " | ".join(cells) + (f" | {lr:.0e} |" if lr else " | – |"))
    out += ["", f"Paired differences, LGTM − other (points of dev {metric}, 95% CI):", ""]
    out += ["| other | student | teacher |", "| --- | ---: | ---: |"]
    for m in methods:
        if m != "lgtm" and runs.get("lgtm"):
            student = paired(runs["lgtm"], runs[m], "student_dev")
            teacher = paired(runs["lgtm"], runs[m], "teacher_dev")
            out.append(f"| {m} | {_ci(student)} | {_ci(teacher)} |")
    out += ["", "Verdicts (PROTOCOL.md's rule: the whole interval on one side of 0):", ""]
    for claim, a, b, score in CLAIMS:
        p = paired(runs.get(a, {}), runs.get(b, {}), score)
        what = "teacher" if score == "teacher_dev" else "student"
        line = f"- **{claim}**: {a} − {b} ({what}) "
        line += "not yet measured" if p is None else f"{_ci(p)}: **{p['verdict']}**"
        out.append(line)
    out += ["", "Seed by seed (student, selected; dev %):", ""]
    seeds = sorted({s for r in runs.values() for s in r})
    out += ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |"]
    out += ["| --- |" + " ---: |" * len(seeds)]
    for m in methods:
        cells = [f"{100 * runs[m][s]['student_dev']:.1f}" if s in runs[m] else "–" for s in seeds]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out += ["", f"![{name}]({figures[0]})", ""]
    figure(task, methods, runs, main, RESULTS / figures[0])
    return out


def figure(task: str, methods: list[str], runs: dict, majority_score: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.5 + 0.75 * len(methods), 3.6))
    for i, m in enumerate(methods):
        vals = [100 * r["student_dev"] for r in runs[m].values()]
        color = "C0" if m in CORE else "C2"  # core: 5 seeds; baselines: 3
        ax.scatter([i] * len(vals), vals, s=22, alpha=0.75, color=color, zorder=3)
        if vals:
            ax.hlines(statistics.mean(vals), i - 0.25, i + 0.25, color="k", lw=1.5, zorder=4)
    ax.axhline(100 * majority_score, ls="--", color="grey", lw=1, label="majority class")
    ce = [100 * r["student_dev"] for r in runs.get("ce", {}).values()]
    if ce:
        ax.axhline(statistics.mean(ce), ls=":", color="C3", lw=1, label="ce (student alone), mean")
    ax.set_xticks(range(len(methods)), methods, rotation=30)
    ax.set_ylabel(f"student dev {METRIC[task]} (%)")
    ax.set_title(f"{NAMES[task]}: every seed's student (chosen on the selection set)", fontsize=10)
    ax.scatter([], [], s=22, color="C0", label="core method, one dot per seed")
    ax.scatter([], [], s=22, color="C2", label="baseline, one dot per seed")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def readme_table(rows: list[dict]) -> list[str]:
    """The README's compact table: per task and method, the student's dev score (mean ± std,
    seeds), the teacher's, and LGTM − method with its 95% interval."""
    out = [
        "| task | method | seeds | student | teacher | LGTM − method (student) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for task in TASKS:
        if not any(r["task"] == task for r in rows):
            continue
        base = majority(task)
        main = base["f1"] if task == "mrpc" else base["accuracy"]
        out.append(
            f"| {NAMES[task]} ({METRIC[task]}) | majority class | – | {100 * main:.1f} | – | – |"
        )
        runs = {m: final_runs(rows, task, m) for m in ORDER}
        for m in ORDER:
            r = runs[m]
            if not r:
                continue
            diff = "–" if m == "lgtm" else _ci(paired(runs["lgtm"], r, "student_dev"))
            student = mean_sd([x["student_dev"] for x in r.values()])
            teacher = mean_sd([x["teacher_dev"] for x in r.values() if x.get("teacher_dev")])
            out.append(f"| {NAMES[task]} | {m} | {len(r)} | {student} | {teacher} | {diff} |")
    return out


def sync_readme(rows: list[dict], readme: Path = RESULTS.parents[1] / "README.md") -> None:
    """Put :func:`readme_table` between the README's comparison markers (if it has them)."""
    start, end = "<!-- comparison:start -->", "<!-- comparison:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    body = "\n".join(readme_table(rows))
    readme.write_text(head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1])


def devices(rows: list[dict]) -> list[str]:
    """One line per task: the device(s) its cells ran on, and the commits."""
    out = []
    for task in TASKS:
        mine = [r for r in rows if r["task"] == task]
        if mine:
            where = "; ".join(sorted({r["device"] for r in mine}))
            commits = ", ".join(sorted({r["commit"] for r in mine}))
            out.append(f"- {NAMES[task]}: {len(mine)} runs on {where} (commit {commits}).")
    return out


def cross_check(rows: list[dict], path: Path) -> list[str]:
    """The same runs on this machine's CPU beside the study's (other device): student scores."""
    if not path.exists():
        return []
    cpu = json.loads(path.read_text())
    study = {(r["task"], r["method"], r["seed"], r["student_lr"]): r for r in rows}
    pairs = [(c, study.get((c["task"], c["method"], c["seed"], c["student_lr"]))) for c in cpu]
    pairs = [(c, g) for c, g in pairs if g is not None]
    if not pairs:
        return []
    out = [
        "## The same runs on the CPU (a cross-check; in no cell)",
        "",
        "Same settings and seed, run again on this machine's CPU with the bundled fp32 teacher "
        f"(`{path.name}`): the GPU's numerics and its fp16-rounded teacher weights against "
        "these. Selection-set and dev scores of the kept student, %.",
        "",
        "| task | method | lr | seed | selection GPU | selection CPU | dev GPU | dev CPU | "
        "teacher dev GPU | teacher dev CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c, g in pairs:

        def pct(x: float | None) -> str:
            return "–" if x is None else f"{100 * x:.1f}"

        out.append(
            f"| {NAMES[c['task']]} | {c['method']} | {c['student_lr']:.0e} | {c['seed']} | "
            f"{pct(g['student_selection'])} | {pct(c['student_selection'])} | "
            f"{pct(g['student_dev'])} | {pct(c['student_dev'])} | {pct(g['teacher_dev'])} | "
            f"{pct(c['teacher_dev'])} |"
        )
    return [*out, ""]


def pilots_section(task: str, path: Path) -> list[str]:
    """A task that failed pilot P2: its pilots (selection set only), as the protocol says."""
    if not path.exists():
        return []
    rows = [r for r in json.loads(path.read_text()) if r["task"] == task]
    if not rows:
        return []
    out = [
        f"## {NAMES[task]}: not run (pilot P2 failed at 1, 2 and 6 epochs)",
        "",
        "The student alone never beat the selection set's majority class (67.5% accuracy, F1 "
        "80.6 for always 'paraphrase') by the protocol's 5 points, so no method was run on dev "
        "(PROTOCOL.md, *Changes*). Pilots, seed 100, selection set only (`comparison_pilots.json`"
        "), best accuracy / F1 over the run's evaluations, %:",
        "",
        "| pilot | epochs | student lr | teacher lr | student: best accuracy | student: kept F1 "
        "| teacher after stage one: F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(
        rows, key=lambda r: (r["epochs"], r["method"], r["student_lr"], r["teacher_lr"])
    ):
        best = max(c["accuracy"] for c in r["student_selection_curve"])
        t = r["teacher_selection"]
        out.append(
            f"| {'P1 kd' if r['method'] == 'kd' else 'P2 ce'} | {r['epochs']} | "
            f"{r['student_lr']:.0e} | {r['teacher_lr']:.0e} | {100 * best:.1f} | "
            f"{100 * r['student_selection']:.1f} | {'–' if t is None else f'{100 * t:.1f}'} |"
        )
    return [*out, ""]


def why(results: Path) -> list[str]:
    """The influence term's share of the teacher's gradient (influence_share.py) and the paper's
    per-sample picture (influence_stats.py --suite comparison), where they have been measured."""
    shares = sorted(results.glob("influence_share_sst2-lgtm-lr*.json"))
    stats = results / "comparison_influence.json"
    if not shares and not stats.exists():
        return []
    out = ["## Why: what LGTM's teacher was told", ""]
    if shares:
        out += [
            "`python benchmarks/influence_share.py runs/comparison/<run>` on the CPU re-runs "
            "(their models are on this machine): median over 8 training batches of "
            "‖∇θt(ηs·α·mean w)‖ / ‖∇θt L_aux‖ at the peak student lr, and the cosine of the two.",
            "",
            "| run | start: share | start: cosine | end: share | end: cosine |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for path in shares:
            data = json.loads(path.read_text())
            by = {st["state"]: st for st in data["states"]}
            cells = [
                f"{100 * by[k]['median_ratio']:.2f}% | {by[k]['median_cosine']:+.2f}"
                for k in ("start", "end")
            ]
            out.append(f"| {data['run']} | " + " | ".join(cells) + " |")
        out.append("")
    if stats.exists():
        out += [
            "The paper's per-sample picture, on the GPU runs' `influence.jsonl` (64 tracked "
            "samples): mean influence `w` in the second half of training of the samples both "
            "models got wrong (right) at their first record; the paper expects negative "
            "(positive). Full table: [comparison_influence.md](comparison_influence.md).",
            "",
            "| run | both wrong early: n, mean w | both right early: n, mean w |",
            "| --- | ---: | ---: |",
        ]
        for run in json.loads(stats.read_text()):
            p = run.get("early_picture") or {}
            w, r = p.get("both_wrong_early"), p.get("both_right_early")
            if w and r:
                out.append(
                    f"| {run['run']} | {w['samples']}, {w['mean_w_second_half']:+.3g} | "
                    f"{r['samples']}, {r['mean_w_second_half']:+.3g} |"
                )
        out.append("")
    return out


def report(rows: list[dict]) -> Path:
    """Write ``results/comparison.md`` (and the figures) from the study's rows."""
    lines = [
        "# The comparison (issue #13)",
        "",
        "Protocol: [PROTOCOL.md](../PROTOCOL.md), committed before any of these runs (its "
        "*Changes* say what was decided later, and when). Commands: `bash "
        "benchmarks/comparison_gpu.sh` on a lent GPU (the calls are in its header; rows in "
        "`comparison_gpu.json`), or `python benchmarks/comparison.py --tasks sst2` on a CPU "
        "(rows in `comparison.json`); report: `python benchmarks/comparison_report.py`. "
        "Scores are dev percentages of the student chosen on the selection set; "
        "mean ± std over seeds. Wall: median seconds per run, with other "
        "runs sharing the device (not a speed measurement: see speed.md).",
        "",
        *devices(rows),
        "",
    ]
    for task in TASKS:
        if any(r["task"] == task for r in rows):
            lines += task_section(rows, task, [f"comparison_{task}.png"])
        else:
            lines += pilots_section(task, RESULTS / "comparison_pilots.json")
    lines += why(RESULTS)
    lines += cross_check(rows, RESULTS / "comparison_cpu_sst2.json")
    path = RESULTS / "comparison.md"
    path.write_text("\n".join(lines) + "\n")
    sync_readme(rows)
    return path


if __name__ == "__main__":
    print(report(load_study()))
