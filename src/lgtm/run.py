"""One ``lgtm distill`` run, read straight down: output folder → data → models → optimizers
and schedules → plan → stages → outputs (the shape of transformers' ``run_glue_no_trainer``).

What varies between methods is not here: the teaching step is the method's
(``lgtm.methods``), the run's shape is its plan's (``lgtm.plans``: a list of stages), and the
loop (``lgtm.loop``) runs any stage. Evaluation: ``evaluation.py``; the output folder and
checkpoints: ``rundir.py``; the models checked against the task: ``checks.py``; several
processes: ``distributed.py``.

Resume is exact: a checkpoint (🤗 Accelerate ``save_state``: models, optimizers, schedulers, RNG
states, and the loop's own state) is written after step ``k``; batch order and feedback order
are pure functions of (seed, stage, epoch or pass), so a resumed run redraws the same batches
from step ``k + 1`` on and reaches the same parameters bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lgtm import distributed, rundir, trackers
from lgtm.batches import Batches, MixedBatches
from lgtm.config import RunConfig, refuse_ignored
from lgtm.errors import LgtmInputError
from lgtm.loop import (
    Callback,
    LazyInfluenceLog,
    LoopState,
    Report,
    StageContext,
    run_stage,
    say,
)
from lgtm.plans import STREAMS, Plan, RunParts, make_plan
from lgtm.resume import check_resume_config, start_or_resume
from lgtm.rundata import RunData, default_output_dir, load_data
from lgtm.runmodels import build_models, load_weights, plain_model
from lgtm.teacher_cache import model_digest

FEEDBACK_STREAM = 7  # seeds the feedback order apart from the batch order
TRANSFER_STREAM = 100  # a stage's transfer order: its stream's seed + this


@dataclass
class RunResult:
    """What ``distill`` returns: metrics.json's content, where it lies, the trained models."""

    metrics: dict[str, Any]
    output_dir: Path
    student: Any
    teacher: Any
    tokenizer: Any


def prepare_output_dir(config: RunConfig, *, clear: bool = True) -> tuple[Path, list[Path]]:
    """``rundir.prepare_output_dir`` for the folder ``config`` names: the folder, and the
    checkpoints to resume from, newest first (empty: start afresh)."""
    out = Path(config.output_dir or default_output_dir(config))
    return rundir.prepare_output_dir(
        out,
        resume=config.resume,
        overwrite=config.overwrite,
        clear=clear,
        say=lambda message: say(config, message),
    )


def distill(
    config: RunConfig, *, callback: Callback | None = None, report: Report | None = None
) -> RunResult:
    """Run one distillation end to end and write its outputs.

    ``callback(stage, step)`` is called after every step, checkpoint included (tests raise in it
    to simulate a killed run); ``report(step, score)`` after each selection-set evaluation of
    the student (``lgtm tune`` prunes by it; an exception raised there ends the run). Raises
    :class:`LgtmInputError` for bad input or an unusable output folder, its subclass
    :class:`TrainingDiverged` for training that diverges (the first non-finite loss or
    parameter), and :class:`~lgtm.errors.LgtmWriteError` (one) when the disk refuses a write,
    naming the file and what of the run is kept.
    """
    processes = distributed.process_state()  # refuses launches it cannot honour
    distributed.mixed_precision(config.mixed_precision)  # refuses fp16 before anything loads
    trackers.check_available(config.report_to)  # --report-to: before anything trains
    out = Path(config.output_dir or default_output_dir(config))
    if config.export:  # --export: its packages and its folder checked before anything trains
        from lgtm.export import check_output_dir
        from lgtm.export.onnx import require_packages

        require_packages()
        check_output_dir(out / "export", overwrite=True)  # empty, new or an earlier export
    created = not out.exists()
    try:
        _hold(out, processes.is_main_process)  # from the first moment: before anything loads
        try:
            return _distill(config, callback, report)
        except Exception as err:  # a full or read-only disk: one line, and what is kept
            failed = rundir.failed_write(err, out)
            if failed is None:
                raise
            raise failed from None
    except BaseException:
        rundir.release_lock(out)
        if created and out.is_dir() and not any(out.iterdir()):
            with contextlib.suppress(OSError):  # another process may have removed it
                out.rmdir()  # made for this run, which left nothing in it
        raise
    finally:
        rundir.release_lock(out)


def _hold(out: Path, main: bool) -> None:
    """The main process takes the folder (``rundir.take_lock``) for all the processes of the
    launch; each raises the same one-line error when it cannot."""
    refused = None
    if main:
        try:
            rundir.take_lock(out)
        except LgtmInputError as err:
            refused = err
    message = distributed.from_main(None if refused is None else str(refused))
    if refused is not None:
        raise refused
    if message is not None:
        raise LgtmInputError(str(message))
    rundir.take_lock(out, main_holds=not main)


def _distill(config: RunConfig, callback: Callback | None, report: Report | None) -> RunResult:
    from accelerate import PartialState
    from accelerate.utils import set_seed

    import lgtm
    from lgtm.data.encode import encode

    started = time.perf_counter()
    method_cls = lgtm.methods.method_class(config.method)
    plan = make_plan(method_cls, config)
    out, found = prepare_output_dir(config, clear=False)  # refuse early, before heavy loading...
    if config.resume:
        check_resume_config(config, out)
    set_seed(config.seed)

    # ---- data and models
    data = load_data(config)
    if data.task.is_regression:  # objective and temperature: known to act only now
        refuse_ignored(config, regression=True, names=("objective", "temperature"))
    notices: list[str] = []  # what was adjusted to fit the models to the task
    teacher, student, tokenizer = build_models(config, data.task, notices)
    inputs = {**data.digests(), "teacher": model_digest(teacher), "student": model_digest(student)}
    plan.build_models(teacher, student)  # takd's assistant, from the pre-trained teacher
    PartialState().wait_for_everyone()  # every process has checked the folder as it was
    if PartialState().is_main_process:  # ...and replace an old run once the input is good
        prepare_output_dir(config)
    asked, lr_search = config, None
    if config.lr == "auto":  # a small lgtm tune study of the student lr on the selection set
        from lgtm.tune.auto import choose_lr

        lr_search = choose_lr(config, out)
        config = dataclasses.replace(config, lr=lr_search["lr"])
        say(
            config,
            f"lgtm: --lr auto chose {config.lr:.3g} (selection score "
            f"{lr_search['selection_score']:.4f}, {len(lr_search['trials'])} trials in "
            f"{lr_search['study']})",
        )
    max_length, collate, train_f, feedback_f, eval_f = _features(
        config, data, tokenizer, (teacher, student), notices
    )
    transfer_f = _transfer_features(config, data, tokenizer, max_length)

    # ---- accelerate, optimizers and schedules, the teaching method, the plan's stages
    step_cls = lgtm.methods.method_class(plan.step_method or config.method)
    teacher = step_cls.prepare_teacher(teacher, config.to_dict())  # pesf: its LoRA adapter
    acc = _accelerator(config, out)
    distributed.check_objective(config.objective, acc.num_processes, step_cls.needs_double_backward)
    parts = _parts(
        config, acc, plan, step_cls, teacher, student, (len(train_f), len(transfer_f)), out
    )
    state = LoopState(num_processes=acc.num_processes)
    acc.register_for_checkpointing(state)
    method = _make_method(
        step_cls.name,
        config,
        teacher=plan.distill_teacher(parts.teacher) if step_cls.needs_teacher else None,
        student=parts.student,
        student_optimizer=parts.student_optimizer,
        teacher_optimizer=parts.teacher_optimizer if step_cls.trains_teacher else None,
        preset=config.preset,
    )
    method.safe_step = False  # a step that fails ends the run: its checkpoints are the recovery
    stages = plan.stages(parts, method)

    # ---- resume, or start
    checkpoint = start_or_resume(
        config, acc, state, found, stages[0].name, out, inputs, saved_as=asked
    )
    transfer_ids = [int(f["example_id"]) for f in transfer_f]
    tracked = _tracked(config, [e.id for e in data.train], transfer_ids)
    influence_log = _influence_log(config, acc, state, checkpoint, tracked, out)
    feedback_batches = None
    if feedback_f:
        feedback_batches = Batches(
            feedback_f,
            collate,
            config.batch_size,
            config.seed,
            FEEDBACK_STREAM,
            shuffle=data.feedback_source == "train",
            rank=acc.process_index,
            world=acc.num_processes,
        )
    tracked_set = set(tracked)
    selection = None
    if config.select_on == "selection":
        selection = (  # --do-eval false: the evaluation set is the selection set, scored once
            eval_f
            if not config.do_eval
            else {"selection": encode(data.selection, tokenizer, max_length)}
        )
    ctx = StageContext(
        config=config,
        acc=acc,
        task=data.task,
        train_f=train_f,
        eval_f=eval_f,
        collate=collate,
        teacher=parts.teacher,
        student=parts.student,
        state=state,
        tracked=collate([f for f in train_f + transfer_f if f["example_id"] in tracked_set]),
        started=started,
        wall_before=state.wall_seconds,
        has_teacher=step_cls.needs_teacher,
        selection_f=selection,
        transfer_f=transfer_f,
        tokenizer=tokenizer,
        out=out,
        report=report,
    )

    # ---- the stages, then the outputs
    _run_stages(ctx, stages, train_f, collate, feedback_batches, influence_log, callback)
    metrics = _outputs(ctx, plan, parts, stages, data, max_length, notices, lr_search)
    return RunResult(
        metrics,
        out,
        ctx.acc.unwrap_model(parts.student),
        ctx.acc.unwrap_model(parts.teacher),
        tokenizer,
    )


def _features(
    config: RunConfig, data: RunData, tokenizer: Any, models: tuple, notices: list[str]
) -> tuple[int, Any, list[dict], list[dict], dict[str, list[dict]]]:
    """The usable max length, the collator, and the encoded training, feedback and
    evaluation rows; says what they are."""
    from lgtm.checks import usable_max_length
    from lgtm.data.encode import encode, make_collator

    max_length, lowered = usable_max_length(config.max_length, models, tokenizer)
    if lowered:
        say(config, lowered)
        notices.append(lowered)
    collate = make_collator(tokenizer)
    train_f = encode(data.train, tokenizer, max_length)
    feedback_f = encode(data.feedback, tokenizer, max_length)
    eval_f = {k: encode(v, tokenizer, max_length) for k, v in data.evals.items()}
    _say_data(config, data, train_f, feedback_f, eval_f)
    return max_length, collate, train_f, feedback_f, eval_f


def _transfer_features(
    config: RunConfig, data: RunData, tokenizer: Any, max_length: int
) -> list[dict]:
    """The transfer set encoded, its labels the ignore index (NaN for regression); says
    what it is. Empty when the run has none."""
    from lgtm.data.encode import encode
    from lgtm.objectives import IGNORE_INDEX

    if data.transfer is None:
        return []
    missing = float("nan") if data.task.is_regression else IGNORE_INDEX
    rows = encode(data.transfer.examples, tokenizer, max_length, missing_label=missing)
    dropped = data.transfer.dropped_in_eval
    where = "; ".join(data.transfer.sources)
    message = f"lgtm: transfer set: {len(rows)} rows without labels ({where})"
    if dropped:
        message += f"; {dropped} dropped: their text is in a set the run is scored or chosen on"
    if data.transfer.blank_lines:
        message += f"; {data.transfer.blank_lines} lines without text skipped"
    say(config, message)
    return rows


def _transfer_batch(config: RunConfig) -> int:
    """Transfer samples per step: ``--transfer-batch-size``, by default ``--batch-size``."""
    return config.transfer_batch_size or config.batch_size


def _run_stages(
    ctx: StageContext,
    stages: list,
    train_f: list[dict],
    collate: Any,
    feedback_batches: Batches | None,
    influence_log: LazyInfluenceLog | None,
    callback: Callback | None,
) -> None:
    """Run the stages not yet done, in order, each over its own seeded batch stream."""
    config, acc, state, out = ctx.config, ctx.acc, ctx.state, ctx.out
    try:
        for index, stage in enumerate(stages):
            if stage.name in state.phases_done:
                continue
            if state.phase != stage.name:
                state.phase, state.step, state.window = stage.name, 0, {}
            stream = STREAMS[stage.stream or stage.name]
            batches: Batches | MixedBatches = Batches(
                train_f,
                collate,
                config.batch_size,
                config.seed,
                stream,
                rank=acc.process_index,
                world=acc.num_processes,
            )
            if stage.uses_transfer and ctx.transfer_f:
                transfer = Batches(
                    ctx.transfer_f,
                    collate,
                    _transfer_batch(config),
                    config.seed,
                    stream + TRANSFER_STREAM,
                    rank=acc.process_index,
                    world=acc.num_processes,
                )
                batches = MixedBatches(batches, transfer)
            before = sum(s.total for s in stages[:index])  # the trackers' step: the run's
            run_stage(ctx, stage, batches, feedback_batches, influence_log, out, callback, before)
            state.phases_done.append(stage.name)
    finally:
        if influence_log is not None:
            influence_log.close()


def _outputs(
    ctx: StageContext,
    plan: Plan,
    parts: RunParts,
    stages: list,
    data: RunData,
    max_length: int,
    notices: list[str],
    lr_search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json's content; the models, metrics, plots and summary written (main
    process). With ``--select-on selection`` the best student replaces the last first."""
    from lgtm import methods as lgtm_methods
    from lgtm.evaluation import undefined_notice
    from lgtm.outputs import final_metrics, stages_summary, write_outputs

    config, acc, state, out = ctx.config, ctx.acc, ctx.state, ctx.out
    student, teacher = acc.unwrap_model(parts.student), acc.unwrap_model(parts.teacher)
    if state.best is not None:  # --select-on selection: the best student replaces the last
        acc.wait_for_everyone()
        load_weights(student, out / rundir.SELECTED)
    probe = ctx.collate(next(iter(ctx.eval_f.values()))[: config.eval_batch_size])
    probe.pop("example_id", None)
    metrics = final_metrics(config, data, stages, state, parts.student, parts.teacher, probe, out)
    metrics["max_length"] = max_length  # --max-length, lowered to what the models take
    undefined = undefined_notice(ctx.undefined)  # a metric undefined on its rows: said once
    if undefined is not None:
        say(config, undefined)
        notices = [*notices, undefined]
    metrics["notices"] = notices
    # the settings config.yaml records (at the values they would have anyway) that do not act
    ignored = lgtm_methods.method_class(config.method).ignored_settings(
        config.to_dict(), data.task.is_regression
    )
    metrics["settings_without_effect"] = sorted(ignored)
    metrics["transfer"] = data.transfer.record() if data.transfer is not None else None
    if data.transfer is not None:
        metrics["transfer"]["batch_size"] = _transfer_batch(config)
    metrics["stages"] = stages_summary(stages, state)
    plan.finish(metrics, state, stages)
    metrics["lr_search"] = lr_search  # --lr auto: the study's trials and the rate chosen
    metrics["num_processes"] = acc.num_processes
    metrics["backend"] = acc.state.backend  # None on one process
    metrics["mixed_precision"] = str(acc.mixed_precision)
    metrics["device"] = str(acc.device)
    if acc.is_main_process:
        models = {"student": student}
        if ctx.has_teacher:
            models["teacher"] = plain_model(teacher)
        models.update(plan.saved_models(parts))
        metrics["wall_seconds"] = ctx.wall()
        write_outputs(config, out, metrics, models, tokenizer=ctx.tokenizer)
        if config.export:  # --export onnx,int8: lgtm export RUN_DIR --output-dir RUN_DIR/export
            from lgtm.export.command import export_run

            export_run(out, config.export, seed=config.seed)
    if trackers.names(config.report_to):
        acc.end_training()
    return metrics


def _say_data(config: RunConfig, data: RunData, train_f: list, feedback_f: list, eval_f: dict):
    where = (
        "the validation split: it LEAKS into evaluation"
        if data.leaks_into_evaluation
        else "carved from train"
    )
    say(
        config,
        f"lgtm: task {data.task.name}: {len(train_f)} training, {len(feedback_f)} "
        f"feedback ({where}), "
        + (f"{len(data.selection)} selection (carved from train), " if data.selection else "")
        + ", ".join(f"{len(v)} {k}" for k, v in eval_f.items())
        + f" examples; {data.source}",
    )


def _accelerator(config: RunConfig, out: Path) -> Any:
    """The run's Accelerator: CPU backend where there is no GPU, its mixed precision, its
    tracker. Each run gets its own state (the process group stays)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    AcceleratorState._reset_state()  # each run its own mixed precision; the process group stays
    return Accelerator(
        cpu=distributed.use_cpu_backend(),
        mixed_precision=distributed.mixed_precision(config.mixed_precision),
        step_scheduler_with_optimizer=False,
        log_with=trackers.log_with(config.report_to),
        project_config=ProjectConfiguration(
            project_dir=str(out), logging_dir=str(out / "tensorboard")
        ),
    )


def make_optimizer(
    acc: Any, model: torch.nn.Module, lr: float, steps: int, config: RunConfig
) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over ``model``'s trainable parameters and a linear schedule over ``steps`` with
    ``--warmup-ratio`` warm-up, both prepared by ``acc``; returns the optimizer the methods
    step themselves (Accelerate's wrapper removed) and the schedule."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=lr,
        weight_decay=config.weight_decay,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    optimizer, schedule = acc.prepare(optimizer, schedule)
    return getattr(optimizer, "optimizer", optimizer), schedule


def _parts(
    config: RunConfig,
    acc: Any,
    plan: Plan,
    step_cls: type,
    teacher: Any,
    student: Any,
    rows: tuple[int, int],
    out: Path,
) -> RunParts:
    """Both models on the device with their optimizers and schedules; the plan's own after
    them (the order of Accelerate's checkpoint files). ``rows``: training and transfer rows
    (a distillation epoch is a pass over the longer stream; the teacher's fine-tuning sees
    the labelled rows alone)."""
    train_rows, transfer_rows = rows
    per_epoch = math.ceil(train_rows / config.batch_size)
    distill_per_epoch = max(per_epoch, math.ceil(transfer_rows / _transfer_batch(config)))
    distill_total = _total(distill_per_epoch, config.epochs, config.max_steps)
    teacher_total = _total(per_epoch, config.teacher_epochs or config.epochs, config.max_steps)
    # Both models whole on every process, not wrapped in DistributedDataParallel: the methods
    # average their own gradients (lgtm.distributed). evaluation_mode=True: device placement
    # and mixed precision only; the models are still saved by save_state.
    teacher = acc.prepare_model(teacher, evaluation_mode=True)
    student = acc.prepare_model(student, evaluation_mode=True)
    teacher_steps = teacher_total if plan.fine_tunes_teacher(step_cls) else distill_total
    opt_t, sched_t = make_optimizer(acc, teacher, config.teacher_lr, teacher_steps, config)
    opt_s, sched_s = make_optimizer(acc, student, config.lr, distill_total, config)
    parts = RunParts(
        config=config,
        acc=acc,
        method_cls=step_cls,
        teacher=teacher,
        student=student,
        out=out,
        per_epoch=per_epoch,
        teacher_total=teacher_total,
        distill_total=distill_total,
        teacher_optimizer=opt_t,
        student_optimizer=opt_s,
        teacher_schedule=sched_t,
        student_schedule=sched_s,
        make_method=lambda name, **kw: _make_method(name, config, **kw),
        make_optimizer=lambda model, lr, steps: make_optimizer(acc, model, lr, steps, config),
        load_weights=lambda model, folder: load_weights(model, folder),  # looked up at call time
    )
    plan.prepare(parts)  # takd's assistant and its optimizer, rco's anchor model
    if acc.num_processes > 1:  # the same models everywhere, but each process its own dropout
        from accelerate.utils import set_seed

        set_seed(config.seed + acc.process_index)
    return parts


def _make_method(name: str, config: RunConfig, **models: Any) -> Any:
    """``lgtm.make_method`` with the run's options; an option the method refuses for these
    models (pkd's layer pairs beyond them...) is bad input (exit 2) naming the option."""
    import lgtm

    cls = lgtm.methods.method_class(name)
    try:
        return lgtm.make_method(name, **models, **_options(cls, config))
    except ValueError as err:
        text = str(err)
        names = [o.name for o in (*cls.options, *lgtm.methods.options.SHARED)]
        hits = {n: sum(part in text for part in n.split("_")) for n in names}  # words named
        best = max(names, key=lambda n: hits[n], default=None)
        raise LgtmInputError(text, field=best if best and hits[best] else "method") from None


def _options(cls: type, config: RunConfig) -> dict[str, Any]:
    """The method's keyword options from ``config`` (as ``Method.option_values``)."""
    return cls.option_values(config.to_dict())


def _total(per_epoch: int, epochs: int, max_steps: int | None) -> int:
    total = per_epoch * epochs
    return min(total, max_steps) if max_steps else total


def _tracked(config: RunConfig, ids: list[int], transfer_ids: list[int]) -> list[int]:
    """The samples whose influence (and, with ``--student-weighting influence``, weight) is
    logged, seeded: 64 of the labelled training samples and, when the run has a transfer set,
    64 of its rows too (logged without a label, which the run does not have)."""
    from lgtm.report import choose_tracked_ids

    picked = choose_tracked_ids(ids, n=64, seed=config.seed)
    if transfer_ids:
        picked += choose_tracked_ids(transfer_ids, n=64, seed=config.seed)
    return sorted(picked)


def _influence_log(
    config: RunConfig,
    acc: Any,
    state: LoopState,
    checkpoint: Path | None,
    tracked: list[int],
    out: Path,
) -> LazyInfluenceLog | None:
    """The main process's influence log, keeping what was logged up to the checkpoint."""
    from lgtm.report import INFLUENCE_FILE

    if not acc.is_main_process:
        return None
    resume_step = None
    if checkpoint is not None:  # keep what was logged up to the checkpoint
        resume_step = state.step if state.phase == "distill" else 0
    elif (out / INFLUENCE_FILE).exists():
        (out / INFLUENCE_FILE).unlink()
    return LazyInfluenceLog(out / INFLUENCE_FILE, tracked, resume_step)
