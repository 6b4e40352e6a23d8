"""LGTM (Ren et al., ACL 2023): the teacher learns from each sample's distillation influence.

One step, as in ALGORITHMS.md:

1. ``t = T(x; θt)``, keeping the graph.
2. ``g_s = ∇θs Ls(θs; t.detach())``; look-ahead ``θs' = θs − ηs · step(g_s)``.
3. ``g_e = ∇θs' ce(y^e, S(x^e; θs'))``.
4. ``ε = r / ‖g_e‖``, ``θs± = θs ± ε g_e``; student forwards at ``θs±`` without a graph.
5. ``w_i = [kd(t_i, s+_i) − kd(t_i, s−_i)] / (2ε)``, differentiable in θt through ``t``.
6. ``Lt = L_aux − ηs · α · mean_i w_i``; one teacher backward, one optimizer step.
7. Teacher forward with the new θt (no graph); the real student step on ``Ls``.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import distributed
from ..lookahead import current_lr, look_ahead
from ..objectives import task_loss
from .base import AUX_WORDS, Batch, Method, register

Tensor = torch.Tensor


@register("lgtm")
class LGTM(Method):
    """LGTM with the finite-difference approximation of the meta-gradient."""

    needs_feedback = True
    computes_influence = True
    unread = {}  # every shared option acts
    teacher_loss_words = (
        AUX_WORDS + " (the influence term it also follows, measured on a feedback batch, is not "
        "in this curve)"
    )

    def step(
        self, batch: Batch, feedback_batch: Batch | None = None, probe: Batch | None = None
    ) -> dict[str, Any]:
        t, s, g_e = self.look_ahead_feedback(batch, feedback_batch)  # 1-3
        w = self.influence(batch, t, g_e)  # 4-5
        probed = self.probe(probe, g_e) if probe is not None else {}
        del g_e
        aux = self.teacher_aux_loss(t, s, batch["labels"])  # 6
        lt = aux - self.scale() * w.mean()
        self.apply(self.teacher_optimizer, self.teacher_params, self.grad_teacher(lt))
        return self.finish(batch, t, s, aux, w, probed)  # 7

    def look_ahead_feedback(
        self, batch: Batch, feedback_batch: Batch | None
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Steps 1–3: ``t`` (with graph), ``s`` (with graph, reused in step 7) and ``g_e``."""
        if feedback_batch is None:
            raise ValueError(f"{self.name} needs a feedback batch")
        t = self.teacher_logits(batch)
        s = self.student_logits(batch)
        g_s = self.grad_student(
            self.student_loss(s, t.detach(), batch["labels"]), retain_graph=True
        )
        out, scratch = self.workspace()
        ahead = look_ahead(
            self.student_params,
            g_s,
            self.student_optimizer,
            self.lookahead,
            out=out,
            scratch=scratch,
        )
        del g_s
        return t, s, self.feedback_gradient(feedback_batch, ahead)

    def finish(
        self, batch: Batch, t: Tensor, s: Tensor, aux: Tensor, w: Tensor, probed: dict
    ) -> dict[str, Any]:
        """Step 7, the real student step, and the statistics of this step."""
        student_loss = self.real_student_step(batch, s)
        return {
            "student_loss": student_loss,
            "teacher_loss": aux.item(),
            "influence": w.detach(),
            "student_logits": s.detach(),
            "teacher_logits": t.detach(),
            **probed,
        }

    def feedback_gradient(self, feedback_batch: Batch, ahead: list[Tensor]) -> list[Tensor]:
        """``g_e = ∇θs' ce(y^e, S(x^e; θs'))`` (zeros where a parameter is unused)."""
        ahead = [p.detach().requires_grad_() for p in ahead]
        loss = task_loss(
            self.student_logits(feedback_batch, ahead), feedback_batch["labels"]
        ).mean()
        grads = torch.autograd.grad(loss, ahead, allow_unused=True)
        grads = self.average(grads, samples=distributed.samples_in(feedback_batch))
        return [torch.zeros_like(p) if g is None else g for p, g in zip(ahead, grads, strict=True)]

    def influence(self, batch: Batch, t: Tensor, g_e: list[Tensor]) -> Tensor:
        """Per-sample ``w_i`` by a central difference along ``g_e``; differentiable in θt.

        Both perturbed forwards draw the same dropout masks, so their difference is a
        directional derivative and not dropout noise.
        """
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(g_e)))
        if norm == 0:
            return t.new_zeros(t.shape[0])
        eps = self.fd_radius / norm.item()
        params, work = [p.detach() for p in self.student_params], self.workspace()[0]
        with torch.no_grad():
            torch._foreach_copy_(work, params)
            torch._foreach_add_(work, g_e, alpha=eps)
            with torch.random.fork_rng(devices=_cuda_devices(t)):
                s_plus = self.student_logits(batch, work)
            torch._foreach_copy_(work, params)
            torch._foreach_add_(work, g_e, alpha=-eps)
            s_minus = self.student_logits(batch, work)
        if self.influence_objective == "student":  # the paper: kd(t, s±)
            diff = self.kd(t, s_plus) - self.kd(t, s_minus)
        else:  # the released code: the teacher's own term kd'(s±, t)
            diff = self.kd(s_plus, t) - self.kd(s_minus, t)
        return diff / (2 * eps)

    def probe(self, probe: Batch, g_e: list[Tensor]) -> dict[str, Tensor]:
        """Influence of other samples (e.g. a fixed set tracked over training), at the same
        θt, θs and ``g_e`` as this step's; not part of the update, and it costs one teacher
        and three student forwards on ``probe``, so the loop asks for it only now and then."""
        with torch.no_grad(), distributed.same_rows_everywhere():  # DIST: not gathered
            t = self.teacher_logits(probe)
            s = self.student_logits(probe)
            w = self.influence(probe, t, g_e)
        return {"probe_influence": w, "probe_teacher_logits": t, "probe_student_logits": s}

    def workspace(self) -> tuple[list[Tensor], list[Tensor]]:
        """Two sets of parameter-shaped buffers kept across steps for ``θs'`` and ``θs±``
        (on CPU, fresh parameter-sized memory costs more than the arithmetic done in it)."""
        if getattr(self, "_workspace", None) is None:
            self._workspace = tuple(
                [torch.empty_like(p, requires_grad=False) for p in self.student_params]
                for _ in range(2)
            )
        return self._workspace

    def scale(self) -> float:
        """The factor of ``mean_i w_i`` in the teacher's objective: ``ηs · α`` by the
        derivation, or ``ηt · αt`` as the released code has it."""
        weight = self.alpha if self.influence_objective == "student" else self.teacher_alpha
        if self.influence_step == "student_lr":
            return current_lr(self.student_optimizer) * weight
        return current_lr(self.teacher_optimizer) * weight


def _cuda_devices(x: Tensor) -> list[int]:
    return [x.device.index or 0] if x.device.type == "cuda" else []
