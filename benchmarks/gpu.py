"""One short GPU check: step time, peak memory and mixed-precision numerics of every method.

Run where a CUDA GPU is (our CI machines have none; results/gpu.md says where it ran):

    python benchmarks/gpu.py --model-dir DIR --data-dir ../shared/data/glue/SST-2

Two configurations, real SST-2 training batches of 32, AdamW for both models:

- ``minilm``: teacher all-MiniLM-L6-v2 (``--model-dir``; default: the bundled package), student
  its first 2 layers, max length 64 — the reference configuration of speed.md (CPU).
- ``bert-base``: a teacher of BERT-base's size (12 layers, hidden 768, 12 heads, MiniLM's
  vocabulary; random weights, which do not change the time) and its first 6 layers as the
  student, max length 128 — the paper's scale.

Every method's step is timed (CUDA-synchronised, median of ``--steps`` after ``--warmup``;
fresh models per method) in three precisions: ``fp32`` (full fp32 matmuls), ``tf32`` (TF32
matmuls) and ``bf16`` (``torch.autocast`` to bfloat16; weights, optimizer and the finite
difference stay fp32). Peak CUDA memory is read over the timed steps.

Numerics (``minilm``, dropout off, one step from the same state): the per-sample influence
``w`` that ``lgtm`` (finite difference) and ``lgtm-exact`` (double backward) compute in each
precision, against ``lgtm-exact`` in float64 as the reference: cosine, Pearson, relative
error and sign agreement.

Writes ``gpu.json`` and ``gpu.md`` to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from speed import sst2_batches

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("kd", "online", "meta", "lgtm", "lgtm-exact")
PRECISIONS = ("fp32", "tf32", "bf16")
DEVICE = torch.device("cuda")
CONFIGS = {
    "minilm": {"student_layers": 2, "max_length": 64},
    "bert-base": {"student_layers": 6, "max_length": 128},
}


def real_batches(data_dir: str, tokenizer, max_length: int, batch_size: int, n: int) -> list:
    """speed.py's ``n`` real SST-2 training batches, on the device."""
    batches = sst2_batches(data_dir, tokenizer, max_length, batch_size, n)
    return [{k: v.to(DEVICE) for k, v in b.items()} for b in batches]


def models(config: str, model_dir: str | None):
    """(teacher, student, tokenizer) on the GPU in fp32, from one fixed seed."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    from lgtm.models import load_model, student_from_teacher

    torch.manual_seed(0)
    teacher, tokenizer = load_model(model_dir, 2, dtype=torch.float32)
    if config == "bert-base":
        base = BertConfig(
            vocab_size=teacher.config.vocab_size,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            num_labels=2,
            attn_implementation="eager",
        )
        teacher = AutoModelForSequenceClassification.from_config(base, attn_implementation="eager")
    teacher = teacher.to(DEVICE).train()
    student = student_from_teacher(teacher, CONFIGS[config]["student_layers"])
    return teacher, student, tokenizer


def make(method: str, teacher, student):
    import lgtm

    t, s = copy.deepcopy(teacher), copy.deepcopy(student)
    opt_t = torch.optim.AdamW(t.parameters(), lr=5e-5)
    opt_s = torch.optim.AdamW(s.parameters(), lr=1e-4)
    return lgtm.make_method(
        method, teacher=t, student=s, teacher_optimizer=opt_t, student_optimizer=opt_s
    )


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def precision(name: str):
    """Set the matmul precision; return the autocast context of ``name``."""
    torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
    torch.backends.cudnn.allow_tf32 = name == "tf32"
    if name == "bf16":
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16)
    return nullcontext()


def time_steps(method, train: list, feedback: list, prec: str, warmup: int) -> dict:
    ctx = precision(prec)
    times = []
    for k in range(len(train)):
        if k == warmup:
            sync()
            if DEVICE.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with ctx:
            method.step(train[k], feedback[k])
        sync()
        times.append(time.perf_counter() - start)
    return {
        "step_s": statistics.median(times[warmup:]),
        "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if DEVICE.type == "cuda" else 0.0,
    }


def speed(config: str, args: argparse.Namespace) -> list[dict]:
    teacher, student, tokenizer = models(config, args.model_dir)
    n = args.warmup + args.steps
    batches = real_batches(
        args.data_dir, tokenizer, CONFIGS[config]["max_length"], args.batch_size, 2 * n
    )
    train, feedback = batches[:n], batches[n:]
    rows = []
    for prec in PRECISIONS:
        for method in METHODS:
            m = make(method, teacher, student)
            r = time_steps(m, train, feedback, prec, args.warmup)
            rows.append({"config": config, "precision": prec, "method": method, **r})
            print(config, prec, method, f"{r['step_s'] * 1e3:.1f} ms", f"{r['peak_mb']:.0f} MB")
            del m
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
    for r in rows:
        base = next(x for x in rows if x["precision"] == r["precision"] and x["method"] == "online")
        r["x_online"] = r["step_s"] / base["step_s"]
        r["mem_x_online"] = r["peak_mb"] / base["peak_mb"] if base["peak_mb"] else 0.0
    return rows


def influence(method: str, teacher, student, batch, fb, prec: str, dtype) -> torch.Tensor:
    m = make(method, teacher.to(dtype), student.to(dtype))  # fp32 -> fp64 -> fp32 is exact
    with precision(prec):
        out = m.step(batch, fb)
    return out["influence"].double().flatten()


def numerics(args: argparse.Namespace) -> list[dict]:
    teacher, student, tokenizer = models("minilm", args.model_dir)
    teacher.eval(), student.eval()  # dropout off: both sides of every comparison see one model
    batch, fb = real_batches(args.data_dir, tokenizer, 64, args.batch_size, 2)
    ref = influence("lgtm-exact", teacher, student, batch, fb, "fp32", torch.float64)
    rows = []
    for method in ("lgtm", "lgtm-exact"):
        for prec in PRECISIONS:
            w = influence(method, teacher, student, batch, fb, prec, torch.float32)
            rows.append(
                {
                    "method": method,
                    "precision": prec,
                    "cosine": torch.nn.functional.cosine_similarity(w, ref, dim=0).item(),
                    "pearson": torch.corrcoef(torch.stack([w, ref]))[0, 1].item(),
                    "rel_error": ((w - ref).norm() / ref.norm()).item(),
                    "sign_agreement": (w.sign() == ref.sign()).double().mean().item(),
                }
            )
            print("numerics", rows[-1])
    rows.append(
        {
            "reference_norm": ref.norm().item(),
            "reference_mean": ref.mean().item(),
            "reference_std": ref.std().item(),
        }
    )
    return rows


def write_markdown(result: dict, path: Path) -> None:
    env = result["env"]
    lines = [
        "# GPU check: step time, memory and mixed precision",
        "",
        f"Command: `{result['command']}`  ",
        f"Commit: `{result['commit']}`; {env['gpu']}; torch {env['torch']}, "
        f"transformers {env['transformers']}.",
        "",
        f"Real SST-2 training batches of {result['batch_size']}, AdamW for both models; "
        f"medians of {result['steps']} CUDA-synchronised steps after {result['warmup']} "
        "warm-up, fresh models per method. `minilm`: all-MiniLM-L6-v2 → its first 2 layers, "
        "max length 64 (speed.md's configuration). `bert-base`: a BERT-base-sized teacher "
        "(12 × 768, random weights) → its first 6 layers, max length 128 (the paper's scale). "
        "`bf16` = `torch.autocast` to bfloat16 with fp32 weights and optimizer.",
        "",
        "| config | precision | method | step (ms) | × online | peak (MB) | memory × online |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["speed"]:
        lines.append(
            f"| {r['config']} | {r['precision']} | {r['method']} | {r['step_s'] * 1e3:.1f} "
            f"| {r['x_online']:.2f} | {r['peak_mb']:.0f} | {r['mem_x_online']:.2f} |"
        )
    ref = result["numerics"][-1]
    lines += [
        "",
        "## Influence numerics",
        "",
        "One LGTM step of `minilm` from the same state, dropout off: each sample's influence "
        "`w` against `lgtm-exact` in float64 "
        f"(reference ‖w‖ = {ref['reference_norm']:.3g}, mean {ref['reference_mean']:.3g}, "
        f"std {ref['reference_std']:.3g}). Cosine is dominated by the common mean; Pearson "
        "(the centred cosine) measures the per-sample differences.",
        "",
        "| method | precision | cosine | Pearson | relative error | same sign |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["numerics"][:-1]:
        lines.append(
            f"| {r['method']} | {r['precision']} | {r['cosine']:.4f} | {r['pearson']:.4f} "
            f"| {r['rel_error']:.2e} "
            f"| {r['sign_agreement']:.2f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", default=None, help="MiniLM folder (default: bundled)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/glue/SST-2"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--commit", default=os.environ.get("LGTM_COMMIT", "unknown"))
    p.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    p.add_argument("--cpu", action="store_true", help="smoke-test the script on the CPU")
    args = p.parse_args(argv)
    global DEVICE
    if args.cpu:
        DEVICE = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("gpu.py: no CUDA GPU here (--cpu to smoke-test the script)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    result = {
        "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:]),
        "commit": args.commit,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "env": {
            "gpu": torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "numerics": numerics(args),
        "speed": [r for c in args.configs for r in speed(c, args)],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out / "gpu.md")
    print((out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
