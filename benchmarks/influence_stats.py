"""What the teacher was told: distillation-influence statistics of a suite's LGTM runs.

Reads the ``influence.jsonl`` every ``lgtm`` / ``lgtm-exact`` run of ``benchmarks/quality.py``
wrote (64 tracked training samples, their influence ``w_i`` every few steps, with whether teacher
and student classify them right) and summarises it per quarter of training, so that the quality
note can say *why* LGTM did or did not help without the run folders (they are not committed).

    python benchmarks/influence_stats.py                      # -> results/quality_influence.*
    python benchmarks/influence_stats.py --suite comparison   # -> results/comparison_influence.*

Per run and quarter: how many records, mean and std of ``w_i``, the share that is positive, the
mean ``w_i`` of samples the teacher (student) gets right vs wrong, and Spearman's rank correlation
of ``w_i`` with the probability the teacher (student) gives the gold label. The student's dev score
at the end of each quarter comes from ``quality.json``'s history.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from quality import run_name, split_scores
from scipy.stats import spearmanr

from lgtm.report import read_influence

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs/quality"
RESULTS = ROOT / "benchmarks/results"
QUARTERS = 4


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rho = spearmanr(xs, ys).statistic
    return None if math.isnan(rho) else float(rho)


def phase_stats(records: list[dict]) -> dict:
    """Summary of one phase's influence records (classification tasks)."""
    w = [r["influence"] for r in records]
    t_ok = [r["teacher_pred"] == r["label"] for r in records]
    s_ok = [r["student_pred"] == r["label"] for r in records]
    return {
        "records": len(w),
        "mean": _mean(w),
        "std": statistics.pstdev(w) if w else None,
        "positive_share": sum(x > 0 for x in w) / len(w) if w else None,
        "mean_teacher_right": _mean([x for x, ok in zip(w, t_ok) if ok]),
        "mean_teacher_wrong": _mean([x for x, ok in zip(w, t_ok) if not ok]),
        "mean_student_right": _mean([x for x, ok in zip(w, s_ok) if ok]),
        "mean_student_wrong": _mean([x for x, ok in zip(w, s_ok) if not ok]),
        "teacher_right_share": sum(t_ok) / len(w) if w else None,
        "student_right_share": sum(s_ok) / len(w) if w else None,
        "spearman_teacher_prob": _spearman(w, [r["teacher_prob"] for r in records]),
        "spearman_student_prob": _spearman(w, [r["student_prob"] for r in records]),
    }


def records_of(run_dir: Path) -> list[dict]:
    """The run's ``influence.jsonl`` records; empty when it has none."""
    log = run_dir / "influence.jsonl"
    return read_influence(log) if log.exists() else []


def run_stats(records: list[dict], history: list[dict] | None) -> dict:
    """Per-quarter statistics of one run's (non-empty) influence records."""
    steps = sorted({r["step"] for r in records})
    last = steps[-1]
    quarters = []
    for q in range(QUARTERS):
        lo, hi = q * last / QUARTERS, (q + 1) * last / QUARTERS
        part = [r for r in records if lo < r["step"] <= hi or (q == 0 and r["step"] == lo)]
        entry = {"steps": [lo, hi], **phase_stats(part)}
        if history:
            evals = [h for h in history if h.get("student_eval") and h["step"] <= hi]
            if evals:
                entry["student_eval"] = split_scores(evals[-1]["student_eval"])
                entry["teacher_eval"] = split_scores(evals[-1]["teacher_eval"])
        quarters.append(entry)
    return {
        "tracked_samples": len({r["id"] for r in records}),
        "steps": last,
        "quarters": quarters,
        "all": phase_stats(records),
    }


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}" if abs(x) < 1e-3 else f"{x:.{digits}f}"


def report(stats: list[dict], path: Path, suite: str = "quality") -> None:
    lines = [
        f"# Distillation influence in the {suite} suite's LGTM runs",
        "",
        "64 training samples tracked per run (`influence.jsonl`); `w` is their distillation "
        "influence (positive: distilling on the sample lowers the student's feedback loss). "
        "Quarters are quarters of the run's steps; 'dev' is the student's dev score at the "
        "quarter's end. Right/wrong: whether the teacher (T) or student (S) predicts the "
        "sample's gold label at that step. ρ: Spearman correlation of `w` with the probability "
        "T (S) gives the gold label.",
        "",
        f"Command: `python benchmarks/influence_stats.py --suite {suite}` "
        f"(reads `runs/{suite}/*/influence.jsonl`).",
        "",
        "| run | quarter | mean w | std w | w > 0 | w: T right / wrong | w: S right / wrong "
        "| T right | S right | ρ(w, T prob) | ρ(w, S prob) | student dev |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in stats:
        for i, q in enumerate(s["quarters"], 1):
            dev = q.get("student_eval") or {}
            dev_s = ", ".join(f"{k} {100 * v:.1f}" for k, v in dev.items())
            lines.append(
                f"| {s['run']} | {i} | {_f(q['mean'])} | {_f(q['std'])} | "
                f"{_f(q['positive_share'], 2)} | {_f(q['mean_teacher_right'])} / "
                f"{_f(q['mean_teacher_wrong'])} | {_f(q['mean_student_right'])} / "
                f"{_f(q['mean_student_wrong'])} | {_f(q['teacher_right_share'], 2)} | "
                f"{_f(q['student_right_share'], 2)} | {_f(q['spearman_teacher_prob'], 2)} | "
                f"{_f(q['spearman_student_prob'], 2)} | {dev_s} |"
            )
    pictures = [(s["run"], s.get("early_picture")) for s in stats if s.get("early_picture")]
    if pictures:
        lines += [
            "",
            "The paper's per-sample picture: mean `w` of the tracked samples that teacher and "
            "student both get wrong (right) at their first record, in the first and second half "
            "of training (the paper: the hard ones drift negative, the easy ones positive).",
            "",
            "| run | both wrong early: n | first half | second half "
            "| both right early: n | first half | second half |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run, p in pictures:
            w, r = p["both_wrong_early"], p["both_right_early"]
            lines.append(
                f"| {run} | {w['samples']} | {_f(w['mean_w_first_half'])} | "
                f"{_f(w['mean_w_second_half'])} | {r['samples']} | {_f(r['mean_w_first_half'])} "
                f"| {_f(r['mean_w_second_half'])} |"
            )
    path.write_text("\n".join(lines) + "\n")


def early_picture(records: list[dict]) -> dict:
    """The paper's per-sample picture on one run's (non-empty) influence records: tracked samples
    that teacher and student both get wrong at their first record vs those both get right; the
    mean influence of each group in the first and the second half of training (the paper: the
    hard ones drift negative, the easy ones positive)."""
    last = max(r["step"] for r in records)
    first: dict[int, dict] = {}
    for r in sorted(records, key=lambda r: r["step"]):
        first.setdefault(r["id"], r)

    def group(ok: bool) -> set[int]:
        return {
            i
            for i, r in first.items()
            if (r["teacher_pred"] == r["label"]) == ok and (r["student_pred"] == r["label"]) == ok
        }

    out = {}
    for name, ids in (("both_wrong_early", group(False)), ("both_right_early", group(True))):
        halves = [
            _mean([r["influence"] for r in records if r["id"] in ids and cond(r["step"])])
            for cond in (lambda s: s <= last / 2, lambda s: s > last / 2)
        ]
        out[name] = {
            "samples": len(ids),
            "mean_w_first_half": halves[0],
            "mean_w_second_half": halves[1],
        }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", choices=("quality", "comparison"), default="quality")
    p.add_argument("--runs", default=None, help="default: runs/<suite>")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    results_dir = Path(args.results)
    histories = {}
    if args.suite == "quality":
        quality = results_dir / "quality.json"
        for r in json.loads(quality.read_text()) if quality.exists() else []:
            histories[run_name(r)] = r.get("history")
    else:  # the study's lgtm runs at their chosen learning rate
        from comparison import load_study
        from comparison import run_name as comparison_run
        from comparison_report import final_runs

        rows = load_study()
        for task in sorted({r["task"] for r in rows}):
            for r in final_runs(rows, task, "lgtm").values():
                histories[comparison_run(r)] = r.get("history")
    stats = []
    for run_dir in sorted(Path(args.runs or ROOT / "runs" / args.suite).glob("*")):
        if run_dir.name not in histories:  # unfinished or not part of the suite
            continue
        records = records_of(run_dir)
        if records:
            s = run_stats(records, histories[run_dir.name])
            stats.append({"run": run_dir.name, **s, "early_picture": early_picture(records)})
    if not stats:  # never replace a committed summary with an empty one
        raise SystemExit(f"no finished {args.suite} run with an influence log found")
    name = f"{args.suite}_influence"
    (results_dir / f"{name}.json").write_text(json.dumps(stats, indent=1) + "\n")
    report(stats, results_dir / f"{name}.md", args.suite)
    print((results_dir / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
