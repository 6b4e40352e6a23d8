"""The student's distillation influence, and the student's loss weighted by it (issue #22).

Each sample's influence on the feedback loss through the student's next step, as LGTM
measures it (ALGORITHMS.md, LGTM steps 2–5), for any method whose student has a
distillation term:

1. ``g_s = ∇θs Ls(θs; t)`` (the step's student loss at uniform weights, ``t`` detached);
   look-ahead ``θs' = θs − ηs · step(g_s)``.
2. ``g_e = ∇θs' ce(y^e, S(x^e; θs'))`` on a feedback batch.
3. ``w_i = [kd(t_i, S(x_i; θs + ε g_e)) − kd(t_i, S(x_i; θs − ε g_e))] / (2ε)``,
   ``ε = r / ‖g_e‖``: the central difference of ``g_eᵀ ∇θs kd(t_i, S(x_i; θs))``.

With ``student_weighting="influence"`` the student's loss becomes
``α · Σ_i λ_i kd(t_i, s_i) + (1 − α) · mean_labelled ce``, ``λ_i = max(w_i, 0) / Σ_j max(w_j, 0)``
over the global batch (all 0 when no ``w_j`` is positive). With a plain-gradient look-ahead,
``w_i = −1/(α·ηs) · ∂ ce(y^e, S(x^e; θs'(ε))) / ∂ε_i`` at uniform ``ε_i``, where ``ε_i``
weighs sample ``i``'s distillation term (Ren et al., ICML 2018, "Learning to reweight
examples"): a sample with ``w_i > 0`` lowers the feedback loss, so it is kept in proportion,
and one with ``w_i ≤ 0`` is dropped. LGTM and lgtm-exact reuse the influence their step
already computes; a frozen teacher's method (kd, pkd, ...) computes it here without a teacher
graph: one more student backward, one feedback forward and backward, two student forwards.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import distributed
from ..lookahead import look_ahead
from ..objectives import task_loss

Tensor = torch.Tensor

#: ``student_weighting``'s choices: uniform (the plain mean), or by the distillation influence.
WEIGHTINGS = ("none", "influence")


class StudentInfluence:
    """A mixin of :class:`lgtm.methods.base.Method` for every method whose student has a
    distillation term: the per-sample influence (shared with LGTM) and the weights ``λ``."""

    #: True: the student's loss has a distillation term that ``student_weighting`` can weigh.
    distills = True

    def feedback_direction(self, loss: Tensor, feedback_batch: Any) -> list[Tensor]:
        """Steps 1–2: ``g_e`` at the look-ahead of the student's step on ``loss`` (the
        student loss at uniform weights, graph kept for the real step's backward).

        Raises ``ValueError`` without a feedback batch."""
        if feedback_batch is None:
            raise ValueError(f"{self.name} needs a feedback batch")
        g_s = self.grad_student(loss, retain_graph=True)
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
        return self.feedback_gradient(feedback_batch, ahead)

    def feedback_gradient(self, feedback_batch: Any, ahead: list[Tensor]) -> list[Tensor]:
        """``g_e = ∇θs' ce(y^e, S(x^e; θs'))`` (zeros where a parameter is unused)."""
        ahead = [p.detach().requires_grad_() for p in ahead]
        loss = task_loss(
            self.student_logits(feedback_batch, ahead), feedback_batch["labels"]
        ).mean()
        grads = torch.autograd.grad(loss, ahead, allow_unused=True)
        grads = self.average(grads, samples=distributed.samples_in(feedback_batch))
        return [torch.zeros_like(p) if g is None else g for p, g in zip(ahead, grads, strict=True)]

    def influence(self, batch: Any, t: Tensor, g_e: list[Tensor]) -> Tensor:
        """Step 3: per-sample ``w_i`` ``[B]`` by a central difference along ``g_e``;
        differentiable in θt through ``t`` when ``t`` has a graph (LGTM).

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

    def probe(self, probe: Any, g_e: list[Tensor]) -> dict[str, Tensor]:
        """Influence of other samples (e.g. a fixed set tracked over training), at the same
        θt, θs and ``g_e`` as this step's; not part of the update, and it costs one teacher
        and three student forwards on ``probe``, so the loop asks for it only now and then.
        With the weighting on, also the weights ``λ`` the probe would get as a batch of its
        own (``probe_weights``, normalised over the probe on this process)."""
        with torch.no_grad(), distributed.same_rows_everywhere():  # DIST: not gathered
            t = self.teacher_logits(probe)
            s = self.student_logits(probe)
            w = self.influence(probe, t, g_e)
        out = {"probe_influence": w, "probe_teacher_logits": t, "probe_student_logits": s}
        if self.student_weighting == "influence":
            out["probe_weights"] = self.distillation_weights(w, local=True)[0]
        return out

    def workspace(self) -> tuple[list[Tensor], list[Tensor]]:
        """Two sets of parameter-shaped buffers kept across steps for ``θs'`` and ``θs±``
        (on CPU, fresh parameter-sized memory costs more than the arithmetic done in it)."""
        if getattr(self, "_workspace", None) is None:
            self._workspace = tuple(
                [torch.empty_like(p, requires_grad=False) for p in self.student_params]
                for _ in range(2)
            )
        return self._workspace

    # ---- the weights -----------------------------------------------------------------
    def distillation_weights(self, w: Tensor, *, local: bool = False) -> tuple[Tensor, float]:
        """``λ_i = max(w_i, 0) / Σ_j max(w_j, 0)`` ``[B]`` (detached; all 0 when no ``w_j`` is
        positive) and the share of samples kept (``λ_i > 0``), both over the global batch (one
        all-reduce of three numbers on several processes; ``local``: this process's alone)."""
        positive = w.detach().clamp_min(0)
        if not local and distributed.stand_in():  # a stand-in sample: λ = 0, not counted
            positive = torch.zeros_like(positive)
        n_local = 0 if not local and distributed.stand_in() else positive.numel()
        sums = (float(positive.sum()), int((positive > 0).sum()), n_local)
        total, kept, n = sums if local else distributed.global_sums(*sums)
        weights = positive / total if total > 0 else torch.zeros_like(positive)
        return weights, (kept / n if n else 0.0)

    def student_weights(
        self, batch: Any, loss: Tensor, t: Tensor, feedback_batch: Any, probe: Any = None
    ) -> tuple[Tensor | None, dict[str, Any]]:
        """For a method whose teacher does not compute the influence: ``λ`` ``[B]`` of this
        batch from the influence of its look-ahead on ``loss`` (its student loss at uniform
        weights), and the step's outputs to add (``influence``, ``student_weights``,
        ``weights_kept``, and the probe's). ``(None, {})`` with the weighting off."""
        if self.student_weighting != "influence":
            return None, {}
        g_e = self.feedback_direction(loss, feedback_batch)
        w = self.influence(batch, t.detach(), g_e)
        found = self.probe(probe, g_e) if probe is not None else {}
        del g_e
        return self.weigh(w, found)

    def weigh(self, w: Tensor, found: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """``λ`` from the influence ``w`` ``[B]``, and the outputs that report it."""
        weights, kept = self.distillation_weights(w)
        return weights, {
            **found,
            "influence": w.detach(),
            "student_weights": weights,
            "weights_kept": kept,
        }


def _cuda_devices(x: Tensor) -> list[int]:
    return [x.device.index or 0] if x.device.type == "cuda" else []
