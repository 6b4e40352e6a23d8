"""The loop of one stage of a run (``plans.Stage``): batches in, ``stepper.step`` each,
evaluation, checkpoints.

The loop knows of a stepper only ``needs_feedback`` and ``trains_teacher`` (and, for the
tracked-sample influence, that it returns ``probe_influence``; with the student's weighting,
``probe_weights`` and ``weights_kept``). Every step's losses and
influence are checked finite; both models' parameters and outputs before every evaluation,
checkpoint and final save, so that no non-finite model is ever written.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lgtm import config as cfg
from lgtm import distributed, rundir, trackers
from lgtm.batches import Batches, to_device
from lgtm.config import RunConfig
from lgtm.errors import LgtmInputError, TrainingDiverged
from lgtm.evaluation import evaluate
from lgtm.fileio import writing
from lgtm.methods.base import CACHED_TEACHER, CACHED_TEACHER_CLS
from lgtm.plans import Stage

CHECKPOINTS = rundir.CHECKPOINTS
Callback = Callable[[str, int], None]
Report = Callable[[int, float], None]


@dataclass
class LoopState:
    """What the loop itself must carry across a restart (saved in every checkpoint)."""

    phase: str = ""
    step: int = 0  # steps done in the current phase
    checkpoint_index: int = 0
    feedback_drawn: int = 0
    history: list[dict] = field(default_factory=list)
    teacher_history: list[dict] = field(default_factory=list)
    window: dict[str, float] = field(default_factory=dict)
    frozen_teacher_eval: dict[str, float] | None = None
    stage_histories: dict[str, list[dict]] = field(default_factory=dict)  # other stages (takd)
    frozen_evals: dict[str, Any] = field(default_factory=dict)  # a frozen guide's, per stage
    train_seconds: float = 0.0
    wall_seconds: float = 0.0  # wall time of the run up to the last checkpoint
    samples_seen: int = 0
    phases_done: list[str] = field(default_factory=list)
    num_processes: int = 1
    best: dict[str, Any] | None = None  # --select-on selection: {"step", "score"} of the best
    stage_seconds: dict[str, float] = field(default_factory=dict)  # steps (+ labelling), per stage
    labelling_seconds: dict[str, float] = field(default_factory=dict)  # the teacher cache's
    # SHA-256 of the data and models the run started from (None: a checkpoint of an older lgtm
    # that recorded none); --resume refuses other ones
    inputs: dict[str, str] | None = None

    def state_dict(self) -> dict[str, Any]:
        """For ``accelerator.register_for_checkpointing``."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint."""
        for key, value in state.items():
            setattr(self, key, value)


def _accumulate(window: dict[str, float], stats: dict[str, Any], samples: int) -> None:
    """Add a step's losses (means over its ``samples``) and influence to the window's sums."""
    for key in ("student_loss", "teacher_loss", "weights_kept"):
        if key in stats:
            window[key] = window.get(key, 0.0) + float(stats[key]) * samples
            window[key + "_n"] = window.get(key + "_n", 0.0) + samples
    influence = stats.get("influence")
    if influence is not None:
        w = influence.detach().double().cpu()[:samples]  # a stand-in's (0 samples) left out
        window["inf_sum"] = window.get("inf_sum", 0.0) + float(w.sum())
        window["inf_sq"] = window.get("inf_sq", 0.0) + float((w * w).sum())
        window["inf_n"] = window.get("inf_n", 0.0) + w.numel()


def _summarise(window: dict[str, float]) -> dict[str, float]:
    out = {}
    for key in ("student_loss", "teacher_loss", "weights_kept"):
        if window.get(key + "_n"):
            out[key] = window[key] / window[key + "_n"]
    n = window.get("inf_n", 0.0)
    if n:
        mean = window["inf_sum"] / n
        out["influence_mean"] = mean
        out["influence_std"] = math.sqrt(max(window["inf_sq"] / n - mean * mean, 0.0))
    return out


class LazyInfluenceLog:
    """``report.InfluenceLog``, opened at the first step that has influence to log (methods
    without per-sample influence leave no influence.jsonl)."""

    def __init__(self, path: Path, tracked: list[int], resume_step: int | None) -> None:
        self.path, self.tracked, self.resume_step = path, tracked, resume_step
        self.log_file: Any = None

    def log(self, *args: Any, **kwargs: Any) -> None:
        """Append the tracked samples among this batch (see ``InfluenceLog.log``)."""
        with writing(self.path, "the influence log"):
            if self.log_file is None:
                from lgtm.report import InfluenceLog

                resume = self.resume_step if self.path.exists() else None
                self.log_file = InfluenceLog(self.path, self.tracked, resume_step=resume)
            self.log_file.log(*args, **kwargs)

    def close(self) -> None:
        """Close the file if it was opened."""
        if self.log_file is not None:
            self.log_file.close()


def say(config: RunConfig, message: str) -> None:
    """Print ``message`` to stderr unless the run is ``--quiet``."""
    if not config.quiet:
        print(message, file=sys.stderr, flush=True)


@dataclass
class StageContext:
    """What every stage of a run shares: its settings, models, encoded data and state."""

    config: RunConfig
    acc: Any
    task: Any
    train_f: list[dict]
    eval_f: dict[str, list[dict]]
    collate: Callable
    teacher: Any
    student: Any
    state: LoopState
    tracked: dict[str, torch.Tensor] | None  # the tracked training samples, one batch
    started: float  # perf_counter() when this process started the run
    wall_before: float  # wall time of the run before this process (a resumed run)
    has_teacher: bool = True  # False: the student learns alone (ce); no teacher is scored
    selection_f: dict[str, list[dict]] | None = None  # the selection set (--select-on selection)
    transfer_f: list[dict] = field(default_factory=list)  # the transfer set (labels -100 / NaN)
    tokenizer: Any = None
    out: Path | None = None
    report: Report | None = None  # (step, selection score) after each selection evaluation
    #: "<split> <metric>" -> why, for each metric undefined at some evaluation (a notice)
    undefined: dict[str, str] = field(default_factory=dict)

    def wall(self) -> float:
        """Wall time of the whole run so far, all processes that worked on it together."""
        return self.wall_before + time.perf_counter() - self.started


def run_stage(
    ctx: StageContext,
    phase: Stage,
    batches: Batches,
    feedback: Batches | None,
    influence_log: Any,
    out: Path,
    callback: Callback | None,
    steps_before: int = 0,
) -> None:
    """Run ``phase`` from ``ctx.state.step`` to its end: a step of its stepper per batch,
    its schedules advanced, losses logged, evaluations and checkpoints at their periods.
    Raises :class:`LgtmInputError` when training diverges; ``callback(stage, step)`` after
    every step. ``steps_before``: the steps of the run's stages before this one; the trackers
    (``--report-to``) log at the run's step ``steps_before + step``, so that their step never
    decreases from one stage to the next (W&B drops a record whose step is lower than one it
    has seen), with the stage's own step beside it (``STAGE/step``, as in metrics.json)."""
    from tqdm.auto import tqdm

    config, acc, state = ctx.config, ctx.acc, ctx.state
    teacher_mode = phase.evaluate_teacher  # a frozen teacher gives its targets in eval mode
    _teacher(ctx, phase).train(teacher_mode)
    _student(ctx, phase).train(phase.evaluate_student)
    history = history_of(state, phase.name)
    if phase.on_start is not None:  # also when resumed in the middle of the stage
        phase.on_start()
    t_cache = time.perf_counter()
    cache = _teacher_outputs(ctx, phase)
    if cache is not None and phase.name not in state.labelling_seconds:  # computed, or read back
        spent = time.perf_counter() - t_cache
        state.labelling_seconds[phase.name] = spent
        state.stage_seconds[phase.name] = state.stage_seconds.get(phase.name, 0.0) + spent
    if state.step == 0:
        _check_models(ctx, phase, 0, out)  # the models as loaded (step 0: nothing trained yet)
    if state.step == 0 and not history:
        history.append(_evaluate(ctx, phase, 0, batches.per_epoch, {}))
    bar = tqdm(
        total=phase.total,
        initial=state.step,
        desc=phase.label or phase.name,
        unit="step",
        dynamic_ncols=True,
        disable=config.quiet or not acc.is_main_process,
        file=sys.stderr,
    )
    try:
        while state.step < phase.total:
            t0 = time.perf_counter()
            batch = batches.get(phase.offset + state.step)
            example_ids = batch.pop("example_id")
            if cache is not None:
                batch[CACHED_TEACHER] = cache.lookup(example_ids)
                if cache.cls is not None:
                    batch[CACHED_TEACHER_CLS] = cache.lookup_cls(example_ids)
            batch = to_device(batch, acc.device)
            fb = None
            if phase.stepper.needs_feedback:
                if feedback is None:
                    raise LgtmInputError(
                        "this method needs a feedback set and it is empty",
                        field="feedback_fraction",
                    )
                fb = feedback.get(state.feedback_drawn)
                fb.pop("example_id")
                fb = to_device(fb, acc.device)
                state.feedback_drawn += 1
            probe = None
            if phase.track_every and (state.step + 1) % phase.track_every == 0:
                probe = to_device(ctx.tracked, acc.device)
                probe_ids = probe.pop("example_id")
            stats = phase.stepper.step(batch, fb, probe=probe)
            _check_finite(ctx, phase, state.step + 1, stats, out)
            for scheduler in phase.schedulers:
                scheduler.step()
            state.step += 1
            state.samples_seen += batches.global_size(state.step - 1)
            step = state.step
            epoch = (phase.offset + step) / batches.per_epoch
            _accumulate(state.window, stats, distributed.samples_in(batch))
            if influence_log is not None and probe is not None:
                influence_log.log(
                    step,
                    epoch,
                    probe_ids.tolist(),
                    stats["probe_influence"].cpu(),
                    probe["labels"].cpu(),
                    stats["probe_teacher_logits"].cpu(),
                    stats["probe_student_logits"].cpu(),
                    weights=stats.get("probe_weights"),
                    kept=stats.get("weights_kept"),
                )
            spent = time.perf_counter() - t0
            state.train_seconds += spent
            state.stage_seconds[phase.name] = state.stage_seconds.get(phase.name, 0.0) + spent
            is_eval = step % phase.eval_every == 0 or step == phase.total
            if step % config.log_steps == 0 or is_eval:
                window = distributed.reduce_sums(state.window)  # all processes' samples
                entry = {"step": phase.offset + step, "epoch": round(epoch, 4)}
                entry.update(_summarise(window))
                state.window = {}
                if is_eval:
                    _check_models(ctx, phase, step, out)
                    entry = _evaluate(ctx, phase, step, batches.per_epoch, entry)
                history.append(entry)
                if trackers.names(config.report_to):
                    acc.log(_scalars(phase.name, entry), step=steps_before + step)
                bar.set_postfix(
                    {
                        k[0] + "_loss": f"{entry[k]:.4f}"
                        for k in ("student_loss", "teacher_loss")
                        if k in entry
                    },
                    refresh=False,
                )
            bar.update(1)
            if phase.snapshots and step in phase.snapshots and acc.is_main_process:
                rundir.save_model(
                    acc.unwrap_model(_teacher(ctx, phase)), ctx.tokenizer, phase.snapshots[step]
                )
            if step % phase.save_every == 0 or step == phase.total:
                _check_models(ctx, phase, step, out)
                _checkpoint(ctx, out, influence_log)
            if callback is not None:
                callback(phase.name, step)
    finally:
        bar.close()


def _teacher_outputs(ctx: StageContext, phase: Stage) -> Any:
    """The stage's frozen teacher's outputs on its rows (training, and transfer where the
    stage takes it), computed once and kept in ``teacher_outputs/`` (``lgtm.teacher_cache``);
    None when the stage's teacher learns or is read otherwise than through its logits."""
    if phase.frozen_teacher is None:
        return None
    from lgtm.teacher_cache import FOLDER, cached_outputs

    rows = ctx.train_f + (ctx.transfer_f if phase.uses_transfer else [])
    path = ctx.out / FOLDER / f"{phase.name}.pt"
    try:
        return cached_outputs(
            phase.frozen_teacher,
            rows,
            ctx.collate,
            ctx.acc,
            path,
            progress=not ctx.config.quiet and ctx.acc.is_main_process,
            layers=getattr(phase.stepper, "cached_teacher_layers", ()),
        )
    except OSError as err:
        raise LgtmInputError(
            f"cannot write the teacher's outputs: {err.strerror or err}", file=path
        ) from None


def _diverged(ctx: StageContext, phase: Stage, step: int, what: str, out: Path) -> LgtmInputError:
    """The one-line error of a run in which ``what`` is not finite at ``step``: which value,
    the learning rates to lower, and which checkpoint is kept."""
    config = ctx.config
    if step == 0:  # nothing has been trained: the model came so
        return LgtmInputError(
            f"{what} not finite before training: the model given holds NaN or infinite "
            "weights (or overflows on this data); check it with lgtm evaluate",
            field="teacher" if "teacher" in what else "student",
        )
    rates = [] if phase.name == "teacher" else ["lr"]
    if phase.stepper.trains_teacher:
        rates.append("teacher_lr")
    if len(rates) == 2 and not _finite(_teacher(ctx, phase)) and _finite(_student(ctx, phase)):
        rates.reverse()  # the teacher's update (first in a step) broke it
    hint = " or ".join(f"{cfg.flag(r)} (now {getattr(config, r):g})" for r in rates)
    last = rundir.latest_checkpoint(out)
    kept = (
        f"the last good checkpoint is kept ({last}); no model was written"
        if last is not None
        else "no checkpoint had been written, and no model was"
    )
    return TrainingDiverged(
        f"training diverged at step {step} of {phase.name}: {what} not finite; try a lower "
        f"{hint} and run again with --overwrite; {kept}",
        field=rates[0],
    )


def _check_finite(
    ctx: StageContext, phase: Stage, step: int, stats: dict[str, Any], out: Path
) -> None:
    """Stop the run at the first non-finite loss or influence of a step (every step: the
    losses are already on the host, so this costs nothing)."""
    for key, what in (
        ("student_loss", "the student's loss is"),
        ("teacher_loss", "the teacher's loss is"),
    ):
        if key in stats and not math.isfinite(float(stats[key])):
            raise _diverged(ctx, phase, step, what, out)
    influence = stats.get("influence")
    if influence is not None and not bool(torch.isfinite(influence).all()):
        raise _diverged(ctx, phase, step, "the distillation influence is", out)


def _finite(model: Any) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _check_models(ctx: StageContext, phase: Stage, step: int, out: Path) -> None:
    """Before the models are evaluated or saved: every parameter finite, and so are their
    outputs on a few training samples (a step's losses are computed before its update, so
    they cannot show a bad last update; huge finite weights can still overflow)."""
    probe = {k: v[:8].to(ctx.acc.device) for k, v in ctx.tracked.items() if k != "example_id"}
    probe.pop("labels", None)
    for role, model in (("teacher", _teacher(ctx, phase)), ("student", _student(ctx, phase))):
        if not _finite(model):
            raise _diverged(ctx, phase, step, f"the {role}'s parameters are", out)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = model(**probe).logits
        finally:
            model.train(was_training)
        if not bool(torch.isfinite(logits).all()):
            raise _diverged(ctx, phase, step, f"the {role}'s outputs are", out)


def _evaluate(
    ctx: StageContext, phase: Stage, step: int, per_epoch: int, entry: dict[str, Any]
) -> dict[str, Any]:
    entry = {
        "step": phase.offset + step,
        "epoch": round((phase.offset + step) / per_epoch, 4),
        **entry,
    }
    args = (ctx.task, ctx.eval_f, ctx.collate, ctx.config.eval_batch_size, ctx.acc.device)
    args += (ctx.undefined,)
    if phase.evaluate_student:
        entry["student_eval"] = evaluate(_student(ctx, phase), *args)
        if ctx.selection_f and _distills(phase.name):
            selection = (ctx.task, ctx.selection_f, *args[2:])
            entry["student_selection"] = (
                dict(entry["student_eval"])  # --do-eval false: already scored
                if ctx.selection_f is ctx.eval_f
                else evaluate(ctx.student, *selection)
            )
            if step > 0:
                _keep_if_best(ctx, entry["step"], entry["student_selection"])
        if ctx.report is not None and step > 0 and _distills(phase.name):  # lgtm tune's pruner
            # a trial reads no dev: its evaluation set is the selection set (either --select-on)
            scores = entry.get("student_selection", entry["student_eval"])
            ctx.report(entry["step"], float(scores[ctx.task.main_metric]))
    if phase.evaluate_teacher:
        entry["teacher_eval"] = evaluate(_teacher(ctx, phase), *args)
        if ctx.selection_f and ctx.selection_f is not ctx.eval_f:  # scored, never used to choose
            entry["teacher_selection"] = evaluate(
                _teacher(ctx, phase), ctx.task, ctx.selection_f, *args[2:]
            )
    elif phase.teacher_model is not None:  # a frozen guide of its own: scored once per stage
        if phase.name not in ctx.state.frozen_evals:
            ctx.state.frozen_evals[phase.name] = evaluate(phase.teacher_model, *args)
        entry["teacher_eval"] = dict(ctx.state.frozen_evals[phase.name])
    elif phase.name == "distill" and ctx.has_teacher:  # a frozen teacher: scored once
        if ctx.state.frozen_teacher_eval is None:
            ctx.state.frozen_teacher_eval = evaluate(ctx.teacher, *args)
        entry["teacher_eval"] = dict(ctx.state.frozen_teacher_eval)
    return entry


def _teacher(ctx: StageContext, phase: Stage) -> Any:
    return phase.teacher_model if phase.teacher_model is not None else ctx.teacher


def _student(ctx: StageContext, phase: Stage) -> Any:
    return phase.student_model if phase.student_model is not None else ctx.student


def history_of(state: LoopState, stage: str) -> list[dict]:
    """The evaluation history of a stage (``history``: distillation; ``teacher_history``:
    kd's stage one; the others by name)."""
    if _distills(stage):
        return state.history
    if stage == "teacher":
        return state.teacher_history
    return state.stage_histories.setdefault(stage, [])


def _distills(stage: str) -> bool:
    """True for the stage(s) that teach the student (rco's ``distill-k`` parts included)."""
    return stage == "distill" or stage.startswith("distill-")


def _keep_if_best(ctx: StageContext, step: int, scores: dict[str, float]) -> None:
    """``--select-on selection``: keep the student of ``step`` (saved to ``student-selected/``)
    when its selection-set score beats every earlier one (ties keep the earlier). An undefined
    score (None) is never kept; when every score is undefined the last student is reported."""
    if scores[ctx.task.main_metric] is None:
        return
    score = float(scores[ctx.task.main_metric])
    best = ctx.state.best
    if best is not None and not score > best["score"]:
        return
    ctx.state.best = {"step": step, "score": score}
    if ctx.acc.is_main_process:
        model = ctx.acc.unwrap_model(ctx.student)
        rundir.save_model(model, ctx.tokenizer, ctx.out / rundir.SELECTED)


def _scalars(phase: str, entry: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in entry.items():
        if isinstance(value, dict):  # an undefined metric (None) has no point
            out.update({f"{phase}/{key}/{k}": v for k, v in value.items() if v is not None})
        elif isinstance(value, int | float):  # "step": the stage's own (metrics.json's)
            out[f"{phase}/{key}"] = value
    return out


def _checkpoint(ctx: StageContext, out: Path, influence_log: Any) -> None:
    """Save the whole state after this step, atomically (temporary folder, then a rename)."""
    acc, state = ctx.acc, ctx.state
    state.checkpoint_index += 1
    root = out / CHECKPOINTS
    final = root / f"ckpt-{state.checkpoint_index:08d}"
    tmp = root / f".tmp-ckpt-{state.checkpoint_index:08d}"
    if acc.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    acc.wait_for_everyone()
    state.wall_seconds = ctx.wall()
    try:
        with writing(final, "the checkpoint"), rundir.no_progress_bars():
            acc.save_state(str(tmp))
            acc.wait_for_everyone()
            if acc.is_main_process:
                rundir.write_manifest(tmp)
                if final.exists():  # left by an attempt resumed from an earlier checkpoint
                    shutil.rmtree(final)
                tmp.rename(final)
                rundir.prune_checkpoints(out)
    except BaseException:
        if acc.is_main_process:  # a half-written checkpoint is never left behind
            shutil.rmtree(tmp, ignore_errors=True)
        raise
