"""How much of LGTM's teacher update comes from the distillation influence?

The teacher's objective is ``Lt = L_aux − ηs · α · mean_i w_i``. This splits its gradient into
the two parts, on real batches of a quality-suite run's configuration, at two states: the run's
start (the pre-trained teacher with a fresh head and its 2-layer student, as the run built them)
and its end (the teacher and student the run saved). Nothing is updated; each batch is measured at
the same state. ``ηs`` is the run's peak student learning rate (the schedule decays it, and with
it the influence term, towards the end), so the share reported is the largest the run had.

    python benchmarks/influence_share.py runs/quality/sst2-lgtm-train-s0 [--batches 8]

Prints and writes ``results/influence_share_<run>.json``: per state, the median over batches of
``‖∇θt(ηs α mean w)‖ / ‖∇θt L_aux‖``, the cosine of the two gradients, and ``|mean w|``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import lgtm
from lgtm import config as cfg
from lgtm import models as M
from lgtm.data.encode import encode, make_collator
from lgtm.train import Batches, build_models, load_data, set_label_names

RESULTS = Path(__file__).resolve().parent / "results"


def _norm(grads: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def _dense(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(param) if grad is None else grad


def measure(run: Path, state: str, batches: int) -> dict:
    """Gradient split of the teacher objective at ``state`` ("start" or "end") of ``run``."""
    config = cfg.resolve({**cfg.load_yaml(run / "config.yaml"), "output_dir": None})
    data = load_data(config)
    torch.manual_seed(config.seed)
    if state == "start":
        teacher, student, tokenizer = build_models(config, data.task)
    else:
        teacher, tokenizer = M.load_model(str(run / "teacher"), data.task.num_labels)
        student, _ = M.load_model(str(run / "student"), data.task.num_labels)
        for model in (teacher, student):
            set_label_names(model, data.task)
    teacher.train()
    student.train()
    opt_t = torch.optim.AdamW(teacher.parameters(), lr=config.teacher_lr, weight_decay=0.0)
    opt_s = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    method = lgtm.make_method(
        config.method,
        teacher=teacher,
        student=student,
        student_optimizer=opt_s,
        teacher_optimizer=opt_t,
        **lgtm.methods.method_class(config.method).option_values(config.to_dict()),
    )
    collate = make_collator(tokenizer)
    train, feedback = (
        Batches(
            encode(examples, tokenizer, config.max_length),
            collate,
            config.batch_size,
            config.seed,
            stream,
        )
        for stream, examples in enumerate((data.train, data.feedback))
    )
    params = [p for p in teacher.parameters() if p.requires_grad]
    rows = []
    for i in range(batches):
        batch, fb = train.get(i), feedback.get(i)
        for b in (batch, fb):
            b.pop("example_id", None)
        t, s, g_e = method.look_ahead_feedback(batch, fb)
        w = method.influence(batch, t, g_e)
        aux = method.teacher_aux_loss(t, s, batch["labels"])
        g_aux = torch.autograd.grad(aux, params, retain_graph=True, allow_unused=True)
        g_inf = torch.autograd.grad(method.scale() * w.mean(), params, allow_unused=True)
        pairs = [
            (
                a if a is not None else torch.zeros_like(p),
                b if b is not None else torch.zeros_like(p),
            )
            for p, a, b in zip(params, g_aux, g_inf, strict=True)
        ]
        na, ni = _norm([a for a, _ in pairs]), _norm([b for _, b in pairs])
        dot = sum(float((a * b).sum()) for a, b in pairs)
        rows.append(
            {
                "ratio": ni / na,
                "cosine": dot / (na * ni) if na and ni else 0.0,
                "abs_mean_w": abs(float(w.detach().mean())),
                "std_w": float(w.detach().std()),
            }
        )
    return {
        "state": state,
        "batches": batches,
        "scale": method.scale(),
        **{
            f"median_{k}": statistics.median(r[k] for r in rows)
            for k in ("ratio", "cosine", "abs_mean_w", "std_w")
        },
        "per_batch": rows,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a finished lgtm run folder of the quality suite")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--states", default="start,end")
    args = p.parse_args(argv)
    run = Path(args.run)
    out = {
        "run": run.name,
        "states": [measure(run, s, args.batches) for s in args.states.split(",")],
    }
    path = RESULTS / f"influence_share_{run.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for s in out["states"]:
        print(
            f"{run.name} {s['state']}: |grad influence term| / |grad L_aux| = "
            f"{s['median_ratio']:.3g} (cosine {s['median_cosine']:+.2f}), |mean w| "
            f"{s['median_abs_mean_w']:.3g}, std w {s['median_std_w']:.3g}, scale {s['scale']:.3g}"
        )


if __name__ == "__main__":
    main()
