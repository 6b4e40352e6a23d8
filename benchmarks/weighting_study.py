"""The influence-weighting study (issue #22; PROTOCOL.md amendment "the influence-weighting
study"), on the transfer-set study's data and runs.

    python benchmarks/weighting_study.py                 # resumable, cheapest runs first
    python benchmarks/weighting_study.py --cells lgtm,lgtm+w --workers 8   # a lent GPU
    python benchmarks/weighting_study.py --report-only

Cells: ``kd+w``, ``kd+transfer+w``, ``lgtm`` (no transfer set; its own rate grid at seed 0),
``lgtm+w``, ``lgtm+transfer+w`` (``+w``: ``--student-weighting influence``); the unweighted
``kd``, ``kd+transfer``, ``lgtm+transfer`` are the transfer study's runs
(``results/transfer_study.json``), never re-run. Each weighted cell takes its unweighted
counterpart's rate. A run waits until what it needs (a rate, a ``kd`` teacher) is known.
Results: ``results/weighting_study.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transfer_study as T  # noqa: E402
from study_pool import next_ready, run_pool  # noqa: E402

STUDY = T.RESULTS / "weighting_study.json"
RUNS = Path(os.environ.get("LGTM_STUDY_RUNS_W", T.ROOT / "runs/weighting_study"))
CELLS = ("kd+w", "kd+transfer+w", "lgtm", "lgtm+w", "lgtm+transfer+w")
UNWEIGHTED = {"kd+w": "kd", "kd+transfer+w": "kd+transfer", "lgtm+w": "lgtm"}
UNWEIGHTED["lgtm+transfer+w"] = "lgtm+transfer"
CLAIMS = (
    ("W1", "kd+transfer+w", "kd+transfer"),
    ("W2", "lgtm+transfer+w", "lgtm+transfer"),
    ("W3", "kd+w", "kd"),
    ("W4", "lgtm+w", "lgtm"),
)


def load() -> list[dict]:
    return json.loads(STUDY.read_text()) if STUDY.exists() else []


def save(rows: list[dict]) -> None:
    tmp = STUDY.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(STUDY)


def chosen_lr(t_rows: list[dict], w_rows: list[dict], size: int, cell: str) -> float | None:
    """A weighted cell's rate is its unweighted counterpart's; ``lgtm`` chooses its own."""
    if cell in ("lgtm", "lgtm+w"):
        return T.chosen_lr(w_rows, size, "lgtm")
    return T.chosen_lr(t_rows, size, UNWEIGHTED[cell])


def flags(run: dict, t_rows: list[dict]) -> dict | None:
    """The run's ``lgtm distill`` settings (None while its ``kd`` teacher is not known)."""
    size, cell = run["size"], run["cell"]
    if cell in ("lgtm", "lgtm+w"):
        out = {
            **T.COMMON,
            **T.WITH_TEACHER,
            "max_train_samples": size,
            "seed": run["seed"],
            "lr": run["lr"],
            "method": "lgtm",
            "epochs": T.LABELLED_EPOCHS[size],
            "max_steps": T.STEPS,
        }
    elif cell == "kd+transfer+w" and (own := _own_teacher(run, t_rows)) is not None:
        out = T.flags({**run, "cell": "kd+transfer"}, [own])  # kd+w's teacher, checked equal
    else:
        out = T.flags({**run, "cell": UNWEIGHTED[cell]}, t_rows)
        if out is None:
            return None
    out["output_dir"] = str(RUNS / T.run_name(run))
    if cell.endswith("+w"):
        out["student_weighting"] = "influence"
    return out


def _own_teacher(run: dict, t_rows: list[dict]) -> dict | None:
    """The ``kd+w`` run of ``run``'s size and seed whose fine-tuned teacher is still on disk and
    scores on dev exactly what its seed's ``kd`` teacher scored (the same stage one: the
    weighting acts only after it), as a ``kd`` row for ``T.flags``; None otherwise (the ``kd``
    run is then made again, PROTOCOL.md, Changes)."""
    kd = [
        r for r in t_rows if (r["size"], r["cell"], r["seed"]) == (run["size"], "kd", run["seed"])
    ]
    for r in load():
        if (r["size"], r["cell"], r["seed"]) != (run["size"], "kd+w", run["seed"]):
            continue
        if kd and r["teacher_dev"] == kd[0]["teacher_dev"] and Path(r["teacher_dir"]).is_dir():
            return {**r, "cell": "kd"}
    return None


def planned(sizes: list[int]) -> list[dict]:
    """Cheapest first (the amendment's "Execution"): per size the kd cells, the lgtm grid and
    seeds, then the weighted lgtm cells."""
    out = []
    for size in sizes:
        for seed in T.SEEDS:  # seed by seed: kd+transfer+w finds kd+w's teacher on disk
            out += [dict(size=size, cell=c, seed=seed, lr=None) for c in ("kd+w", "kd+transfer+w")]
        out += [dict(size=size, cell="lgtm", seed=T.GRID_SEED, lr=lr) for lr in T.GRID]
        out += [dict(size=size, cell="lgtm", seed=s, lr=None) for s in T.SEEDS[1:]]
        out += [dict(size=size, cell="lgtm+w", seed=s, lr=None) for s in T.SEEDS]
    for size in sizes:
        out += [dict(size=size, cell="lgtm+transfer+w", seed=s, lr=None) for s in T.SEEDS]
    return out


def record(run: dict, cmd: list[str], wall: float) -> dict:
    out = RUNS / T.run_name(run)
    m = json.loads((out / "metrics.json").read_text())
    stages = {s["name"]: s for s in m["stages"]}
    return {
        **run,
        "student_dev": m["student"]["accuracy"],
        "student_dev_last": m.get("student_last", m["student"])["accuracy"],
        "student_selection": m["selection"]["score"],
        "selected_step": m["selection"]["step"],
        "teacher_dev": (m.get("teacher") or {}).get("accuracy"),
        "distill_seconds": stages["distill"]["seconds"],
        "steps": stages["distill"]["steps"],
        "weighting": m.get("student_weighting"),
        "labelling_seconds": stages["distill"].get("teacher_outputs_seconds"),
        "transfer": m.get("transfer"),
        "teacher_dir": str(out / "teacher"),
        "weights_by_teacher": weights_by_teacher(out) if "+transfer" in run["cell"] else None,
        "remade_kd": T.REMADE.copy() or None,  # its teacher's kd run made again, if it was
        "wall_s": round(wall, 1),
        "device": T.DEVICE,
        "commit": T.commit(),
        "command": " ".join(cmd),
    }


def train_labels() -> list[int]:
    """SST-2's training labels by row (0-based, as the runs number them): the transfer rows'
    dropped labels, read only here, after training."""
    lines = (T.GLUE / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [int(line.rsplit("\t", 1)[1]) for line in lines if line.strip()]


def weights_by_teacher(out: Path) -> dict:
    """The mean λ (the tracked samples taken as one batch, at each logging step) of the tracked
    transfer rows the teacher gets wrong against those it gets right at that step, judged by
    the rows' dropped SST-2 labels (the amendment's descriptive measure)."""
    sys.path.insert(0, str(T.ROOT / "src"))
    from lgtm.report import read_influence

    gold = train_labels()
    records = read_influence(out / "influence.jsonl")
    for r in records:  # the numbering is checked on the labelled samples, whose labels we know
        if r["label"] is not None and r["label"] != gold[r["id"]]:
            raise SystemExit(
                f"{out}: sample {r['id']} is labelled {r['label']}, not {gold[r['id']]}"
            )
    rows = [r for r in records if r["label"] is None and r.get("weight") is not None]
    wrong = [r["weight"] for r in rows if r["teacher_pred"] != gold[r["id"]]]
    right = [r["weight"] for r in rows if r["teacher_pred"] == gold[r["id"]]]

    def mean(v: list[float]) -> float | None:
        return sum(v) / len(v) if v else None

    return {
        "samples": len({r["id"] for r in rows}),
        "records_wrong": len(wrong),
        "records_right": len(right),
        "mean_weight_wrong": mean(wrong),
        "mean_weight_right": mean(right),
        "kept_wrong": mean([float(w > 0) for w in wrong]),
        "kept_right": mean([float(w > 0) for w in right]),
    }


def next_run(
    pending: list[dict], rows: list[dict], t_rows: list[dict], waits: set | frozenset = frozenset()
) -> tuple | None:
    """The first pending run whose rate and teacher are known, with its settings; a
    ``kd+transfer+w`` run of a ``(size, seed)`` in ``waits`` waits for that seed's ``kd+w``
    run (its teacher) instead of re-making ``kd``'s."""

    def settings(run: dict) -> dict | None:
        if run["cell"] == "kd+transfer+w" and (run["size"], run["seed"]) in waits:
            return None
        return flags(run, t_rows)

    return next_ready(pending, rows, lambda run: chosen_lr(t_rows, rows, **_sc(run)), settings)


def execute(sizes: list[int], max_runs: int | None, workers: int = 1, cells: tuple = CELLS) -> None:
    """Run the study ``workers`` runs at a time (one on this CPU); ``cells``: only these."""
    rows = load()
    pending = [r for r in planned(sizes) if r["cell"] in cells]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(OMP_NUM_THREADS=T.THREADS, MKL_NUM_THREADS=T.THREADS)

    running: set[tuple[int, int]] = set()  # (size, seed) of this driver's kd+w runs under way

    def pick():
        waits = running | {(r["size"], r["seed"]) for r in pending if r["cell"] == "kd+w"}
        found = next_run(pending, rows, T.load(), waits)
        if found is None:
            return None
        run, settings = found
        if run["cell"] == "kd+w":
            running.add((run["size"], run["seed"]))
        return run, T.command(run, settings), RUNS / f"{T.run_name(run)}.log"

    def finish(run: dict, cmd: list[str], wall: float) -> None:
        if run["cell"] == "kd+w":
            running.discard((run["size"], run["seed"]))
        rows.append(record(run, cmd, wall))
        T.REMADE.clear()
        save(rows)

    run_pool(pick, finish, env, workers, max_runs)
    print("pending:", len(pending), flush=True)


def _sc(run: dict) -> dict:
    return {"size": run["size"], "cell": run["cell"]}


def report(t_rows: list[dict], rows: list[dict]) -> Path:
    """``results/weighting_study.md``: each cell beside its unweighted counterpart, W1–W4."""
    from comparison_report import _ci, mean_sd, paired

    def runs(size: int, cell: str) -> dict[int, dict]:
        source = t_rows if cell in ("kd", "kd+transfer", "lgtm+transfer") else rows
        if cell in ("kd", "kd+transfer", "lgtm+transfer"):
            return T.final_runs(t_rows, size, cell)
        lr = chosen_lr(t_rows, rows, size, cell)
        return {
            r["seed"]: r
            for r in source
            if lr is not None and (r["size"], r["cell"], r["lr"]) == (size, cell, lr)
        }

    lines = [
        "# The influence-weighting study (issue #22)",
        "",
        "Protocol: the influence-weighting amendment of [PROTOCOL.md](../PROTOCOL.md), "
        "committed before any of these runs. Command: `python benchmarks/weighting_study.py`. "
        "SST-2 dev accuracy (%) of the student kept on the selection set, mean ± sd over "
        "seeds; `+w`: `--student-weighting influence`; the unweighted cells are the transfer "
        "study's runs. The `lgtm` cells ran on a lent GPU, the `kd` cells on this machine's "
        "CPU (PROTOCOL.md, weighting Changes 2026-12-04); every contrast compares cells of one "
        "device. Seconds are indicative only: development shared the 2 cores with the CPU "
        "runs, and 16 runs shared the GPU; the clean cost ratios are "
        "`results/weighting_speed.md`'s.",
    ]
    figures: dict[int, dict] = {}
    for size in T.SIZES:
        table = {c: runs(size, c) for c in (*CELLS, "kd", "kd+transfer", "lgtm+transfer")}
        if not any(table[c] for c in CELLS):
            continue
        lines += ["", f"## {size:,} labelled sentences", ""]
        lines += ["| cell | device | lr | seeds | student | teacher | distill s |"]
        lines += ["| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for cell in ("kd", "kd+w", "kd+transfer", "kd+transfer+w", "lgtm", "lgtm+w"):
            lines.append(_row(cell, table[cell], mean_sd))
        for cell in ("lgtm+transfer", "lgtm+transfer+w"):
            lines.append(_row(cell, table[cell], mean_sd))
        lines += ["", "| claim | compared | difference (points, 95% CI) | verdict | devices |"]
        lines += ["| --- | --- | ---: | --- | --- |"]
        for name, a, b in CLAIMS:
            p = paired(table[a], table[b], "student_dev")
            verdict = p["verdict"] if p else "–"
            kinds = f"{T.device_kind(table[a])} − {T.device_kind(table[b])}"
            lines.append(f"| {name} | {a} − {b} | {_ci(p)} | {verdict} | {kinds} |")
        lines += _weights_table(table)
        figures[size] = {name: (a, b, table[a], table[b]) for name, a, b in CLAIMS}
    if figures:
        figure(figures, T.RESULTS / "weighting_study.png")
        lines += ["", "![paired seeds](weighting_study.png)"]
    remade = [m for r in rows for m in r.get("remade_kd") or []]
    if remade:
        same = sum(m["student_dev"] == m["recorded"] for m in remade)
        lines += [
            "",
            f"`kd` runs made again for their teachers (their folders were lost): {len(remade)}; "
            f"teachers' dev scores equal to the recorded ones (checked), students' equal in "
            f"{same} of {len(remade)}.",
        ]
    path = T.RESULTS / "weighting_study.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def figure(figures: dict[int, dict], path: Path) -> None:
    """One panel per labelled size and claim: each seed's student dev accuracy without and
    with the weighting, joined by a line (paired seeds), and the mean difference in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from comparison_report import _ci, paired

    sizes = sorted(figures)
    fig, axes = plt.subplots(
        len(sizes), len(CLAIMS), figsize=(3.2 * len(CLAIMS), 3.0 * len(sizes)), squeeze=False
    )
    for row, size in zip(axes, sizes, strict=True):
        for ax, (name, (a, b, runs_a, runs_b)) in zip(row, figures[size].items(), strict=True):
            seeds = sorted(set(runs_a) & set(runs_b))
            for seed in seeds:
                y = [100 * runs_b[seed]["student_dev"], 100 * runs_a[seed]["student_dev"]]
                ax.plot([0, 1], y, marker="o", color="tab:blue", alpha=0.7)
                ax.annotate(str(seed), (1.03, y[1]), fontsize=7, va="center")
            if not seeds:
                ax.text(0.5, 0.5, "no runs yet", ha="center", transform=ax.transAxes)
                ax.set_yticks([])
            p = paired(runs_a, runs_b, "student_dev")
            ax.set_title(
                f"{name} ({size:,}): {_ci(p)}" if p else f"{name} ({size:,}): –", fontsize=8
            )
            ax.set_xticks([0, 1], [b, a], fontsize=7)
            ax.set_xlim(-0.3, 1.3)
            if ax is row[0]:
                ax.set_ylabel("student dev accuracy (%)")
    fig.suptitle("Influence weighting of the student, paired seeds (issue #22)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _weights_table(table: dict[str, dict[int, dict]]) -> list[str]:
    """Descriptive: the mean λ of tracked transfer rows the teacher gets wrong vs right."""
    lines = [
        "",
        "Where the weights fall (descriptive; tracked transfer rows, judged by their dropped "
        "SST-2 labels after training; λ over the tracked samples taken as one batch, mean over "
        "logging steps and seeds):",
        "",
        "| cell | seeds | rows | λ teacher wrong | λ teacher right | kept wrong | kept right |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in ("kd+transfer+w", "lgtm+transfer+w"):
        found = [r["weights_by_teacher"] for r in table[cell].values() if r["weights_by_teacher"]]
        if not found:
            continue

        def mean(k: str, found: list = found) -> str:
            v = [f[k] for f in found if f[k] is not None]
            return f"{sum(v) / len(v):.4f}" if v else "–"

        rows = sum(f["samples"] for f in found)
        lines.append(
            f"| {cell} | {len(found)} | {rows} | {mean('mean_weight_wrong')} | "
            f"{mean('mean_weight_right')} | {mean('kept_wrong')} | {mean('kept_right')} |"
        )
    return lines if len(lines) > 5 else []


def _row(cell: str, runs: dict[int, dict], mean_sd) -> str:
    if not runs:
        return f"| {cell} | – | – | 0 | – | – | – |"
    v = list(runs.values())
    teach = [x["teacher_dev"] for x in v if x.get("teacher_dev")]
    secs = [x["distill_seconds"] for x in v if x.get("distill_seconds") is not None]
    median = f"{statistics.median(secs):.0f}" if secs else "–"
    return (
        f"| {cell} | {T.device_kind(runs)} | {v[0]['lr']:g} | {len(v)} | "
        f"{mean_sd([x['student_dev'] for x in v])} | {mean_sd(teach)} | {median} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--sizes", default="1000,4000")
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (a lent GPU)")
    parser.add_argument("--cells", default=",".join(CELLS), help="only these cells' runs")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    cells = tuple(args.cells.split(","))
    if unknown := set(cells) - set(CELLS):
        parser.error(f"--cells: unknown {sorted(unknown)}; the cells are {', '.join(CELLS)}")
    if not args.report_only:
        execute([int(s) for s in args.sizes.split(",")], args.max_runs, args.workers, cells)
    print(report(T.load(), load()))


if __name__ == "__main__":
    main()
