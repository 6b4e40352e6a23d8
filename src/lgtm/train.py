"""One ``lgtm distill`` run: data → models → phases → outputs.

A run has one or two *phases*: kd (and pkd) first fine-tune the teacher (stage one), then every
method distils. Each phase is driven by ``loop.run_phase``, which steps through seeded per-epoch
permutations of the training set (``batches.Batches``) and calls
``method.step(batch, feedback_batch)``; the gradient computation stays inside the method.
Evaluation: ``evaluation.py``; the output folder and checkpoints: ``rundir.py``; the models
checked against the task: ``checks.py``; several processes: ``distributed.py``.

Resume is exact: a checkpoint (🤗 Accelerate ``save_state``: models, optimizers, schedulers, RNG
states, and this loop's own state) is written after step ``k``; batch order and feedback order
are pure functions of (seed, phase, epoch or pass), so a resumed run redraws the same batches
from step ``k + 1`` on and reaches the same parameters bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import torch

from lgtm import config as cfg
from lgtm import distributed, rundir
from lgtm.batches import Batches, to_device
from lgtm.config import RunConfig
from lgtm.errors import LgtmInputError
from lgtm.evaluation import evaluate, majority_class, predict_logits
from lgtm.loop import (
    Callback,
    LazyInfluenceLog,
    LoopState,
    Phase,
    StageContext,
    run_phase,
    say,
)

CHECKPOINTS = rundir.CHECKPOINTS
# Re-exported: where they lived before the loop was split out of this module.
__all__ = ["Batches", "LoopState", "distill", "evaluate", "predict_logits", "to_device"]
PHASE_IDS = {"teacher": 1, "distill": 2, "assistant": 3}
EVALS_PER_RUN = 5
TRACKS_PER_RUN = 50  # influence of the tracked samples, computed this many times per run
FEEDBACK_STREAM = 7  # seeds the feedback order apart from the batch order
SELECTION_STREAM = 2  # seeds the selection set's carving apart from the feedback set's


# --------------------------------------------------------------------------- data


@dataclass
class RunData:
    """The examples of a run: training rest, feedback set, evaluation splits, provenance."""

    task: Any
    train: list
    feedback: list
    evals: dict[str, list]
    source: str
    feedback_source: str  # "train" | "validation"
    selection: list = dataclass_field(default_factory=list)  # carved from train, unused by all

    @property
    def leaks_into_evaluation(self) -> bool:
        """True when the feedback set is (part of) what the run is scored on."""
        return self.feedback_source == "validation"


def task_name(config: RunConfig) -> str:
    """The task's canonical name (``rotten_tomatoes`` for the offline default)."""
    from lgtm.data import get_task

    if config.uses_default_data:
        return "rotten_tomatoes"
    if config.task is None and config.data_dir is not None:
        try:
            return get_task(Path(config.data_dir).name).name
        except LgtmInputError:
            raise LgtmInputError(
                "cannot tell the task from the folder name: give --task", field="task"
            ) from None
    if config.task is None:
        if config.train_file is not None:
            return "custom"
        raise LgtmInputError("give --task", field="task")
    try:
        return get_task(config.task).name
    except LgtmInputError:
        if config.train_file is not None:
            return config.task
        raise


def default_output_dir(config: RunConfig) -> str:
    """``runs/lgtm-<task>-<method>``."""
    return str(Path("runs") / f"lgtm-{task_name(config)}-{config.method}")


def load_data(config: RunConfig) -> RunData:
    """Read the data named by ``config``; carve the selection and feedback sets; apply the
    sample limits.

    Order matters for fairness: the training sample is drawn first, then the selection set (if
    asked) and then the feedback set are carved from it, for every method alike (those that
    take no feedback train on the same rest), so all methods see the same labelled data.
    """
    from lgtm import data as D

    name = task_name(config)
    if config.uses_default_data:
        loaded = D.load_default()
    elif config.train_file is not None:
        try:
            task = D.get_task(config.task) if config.task else None
        except LgtmInputError:
            task = None
        label_column = config.label_column or "label"
        if task is None:
            if not config.text_columns:
                raise LgtmInputError("--train-file needs --text-columns", field="text_columns")
            task = D.table_task(
                config.train_file,
                text_columns=config.text_columns,
                label_column=label_column,
                name=name,
            )
        text_columns = config.text_columns or list(task.text_columns)
        loaded = D.load_table(
            task,
            config.train_file,
            config.eval_file,
            text_columns=text_columns,
            label_column=label_column,
        )
    elif config.data_dir is not None:
        loaded = D.load_glue_dir(D.get_task(name), config.data_dir)
    else:
        loaded = D.load_hf_glue(D.get_task(name))

    train = D.subsample(loaded.train, config.max_train_samples, config.seed)
    evals = dict(loaded.evals)
    source = loaded.source
    if not evals:  # the user's own data without --eval-file: hold out 10% of train
        train, held = D.split_feedback(train, 0.1, config.seed + 1)
        evals = {loaded.task.eval_splits[0]: held}
        source += " (10% of train held out for evaluation)"
    for split, examples in evals.items():
        if not examples:
            raise LgtmInputError(f"empty evaluation split {split!r}", field=split)
    selection: list = []
    if config.selection_fraction is not None:
        train, selection = D.split_feedback(
            train, config.selection_fraction, config.seed + SELECTION_STREAM
        )
    if config.feedback_from == "train":
        train, feedback = D.split_feedback(train, config.feedback_fraction, config.seed)
    else:
        feedback = list(next(iter(evals.values())))
    evals = {k: D.subsample(v, config.max_eval_samples, config.seed) for k, v in evals.items()}
    return RunData(loaded.task, train, feedback, evals, source, config.feedback_from, selection)


# --------------------------------------------------------------------------- models


def build_models(
    config: RunConfig, task: Any, notices: list[str] | None = None
) -> tuple[Any, Any, Any]:
    """Teacher, student and the shared tokenizer, with label names and the chosen heads.

    Models with a trained head are checked against the task (``checks.align_labels``); what
    was adjusted is printed, and appended to ``notices`` when given. Raises
    :class:`LgtmInputError` for a model that cannot serve the task."""
    from lgtm import models as M
    from lgtm.checks import align_labels, check_embeddings, require_trained_head

    teacher, tokenizer = M.load_model(config.teacher, task.num_labels)
    if config.teacher_finetuned and config.method != "ce":  # ce never runs the teacher
        require_trained_head(
            teacher,
            "teacher",
            config.teacher,
            "it is not fine-tuned; drop --teacher-finetuned (it is then fine-tuned first), or "
            "use --method ce for the student alone",
        )
    check_embeddings(teacher, tokenizer, task, "teacher", config.teacher)
    adjusted = [align_labels(teacher, task, "teacher", config.teacher)]
    if config.student is not None:
        student, s_tok = M.load_model(config.student, task.num_labels)
        M.check_compatible(tokenizer, s_tok, config.teacher, config.student)
        check_embeddings(student, s_tok, task, "student", config.student)
        adjusted.append(align_labels(student, task, "student", config.student))
    else:
        layers = config.student_layers
        if layers is None:
            layers = max(1, int(teacher.config.num_hidden_layers) // 2)
        student = M.student_from_teacher(teacher, layers)
    if config.init_classifier == "zero":
        if not config.teacher_finetuned:  # never wipe the head of a fine-tuned teacher
            M.zero_init_classifier(teacher)
        M.zero_init_classifier(student)
    for model in (teacher, student):
        set_label_names(model, task)
    for notice in filter(None, adjusted):
        say(config, notice)
        if notices is not None:
            notices.append(notice)
    return teacher, student, tokenizer


def set_label_names(model: Any, task: Any) -> None:
    """``id2label`` / ``label2id`` from the task, so that pipelines print label names."""
    names = list(task.label_names) if task.label_names is not None else ["score"]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.config.finetuning_task = task.name
    model.config.problem_type = (
        "regression" if task.is_regression else "single_label_classification"
    )


class TeacherFinetune:
    """kd's stage one as a method: plain task-loss training of the teacher alone."""

    needs_feedback = False
    trains_teacher = True

    def __init__(self, teacher: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.teacher, self.optimizer = teacher, optimizer
        self.params = [p for p in teacher.parameters() if p.requires_grad]

    def step(
        self, batch: dict, feedback_batch: dict | None = None, probe: dict | None = None
    ) -> dict[str, Any]:
        """One cross-entropy (regression: squared error) step of the teacher."""
        from lgtm.objectives import task_loss

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.teacher(**inputs).logits
        loss = task_loss(logits, batch["labels"]).mean()
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = distributed.average(grads, int(batch["labels"].shape[0]))  # the global batch's
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        for p in self.params:
            p.grad = None
        return {"teacher_loss": loss.item(), "teacher_logits": logits.detach()}


# --------------------------------------------------------------------------- output folder


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


# --------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    """What ``distill`` returns: metrics.json's content, where it lies, the trained models."""

    metrics: dict[str, Any]
    output_dir: Path
    student: Any
    teacher: Any
    tokenizer: Any


def distill(config: RunConfig, *, callback: Callback | None = None) -> RunResult:
    """Run one distillation end to end and write its outputs.

    ``callback(phase, step)`` is called after every step, checkpoint included (tests raise in it
    to simulate a killed run). Raises :class:`LgtmInputError` for bad input, an unusable output
    folder, or training that diverges (the first non-finite loss or parameter).
    """
    processes = distributed.process_state()  # refuses launches it cannot honour
    distributed.mixed_precision(config.mixed_precision)  # refuses fp16 before anything loads
    out = Path(config.output_dir or default_output_dir(config))
    created = not out.exists()
    try:
        return _distill(config, callback)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            with contextlib.suppress(OSError):  # another process may have removed it
                out.rmdir()  # made for this run, which left nothing in it
        raise
    finally:
        if processes.is_main_process:
            rundir.release_lock(out)


def _distill(config: RunConfig, callback: Callback | None) -> RunResult:
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration, set_seed
    from transformers import get_linear_schedule_with_warmup

    import lgtm
    from lgtm import report as R
    from lgtm.checks import usable_max_length
    from lgtm.data.encode import encode, make_collator

    started = time.perf_counter()
    out, found = prepare_output_dir(config, clear=False)  # refuse early, before heavy loading...
    if config.resume:
        _check_resume_config(config, out)
    set_seed(config.seed)

    # ---- data and models
    data = load_data(config)
    notices: list[str] = []  # what was adjusted to fit the models to the task
    teacher, student, tokenizer = build_models(config, data.task, notices)
    assistant = _teacher_assistant(config, teacher, student)  # takd; from the pre-trained teacher
    PartialState().wait_for_everyone()  # every process has checked the folder as it was
    if PartialState().is_main_process:  # ...and replace an old run once the input is good
        prepare_output_dir(config)
        rundir.take_lock(out)
    max_length, lowered = usable_max_length(config.max_length, (teacher, student), tokenizer)
    if lowered:
        say(config, lowered)
        notices.append(lowered)
    collate = make_collator(tokenizer)
    train_f = encode(data.train, tokenizer, max_length)
    feedback_f = encode(data.feedback, tokenizer, max_length)
    eval_f = {k: encode(v, tokenizer, max_length) for k, v in data.evals.items()}
    where = (
        "the validation split: it LEAKS into evaluation"
        if data.leaks_into_evaluation
        else "carved from train"
    )
    say(
        config,
        f"lgtm: task {data.task.name}: {len(train_f)} training, {len(feedback_f)} "
        f"feedback ({where}), "
        + ", ".join(f"{len(v)} {k}" for k, v in eval_f.items())
        + f" examples; {data.source}",
    )

    # ---- accelerate: one teacher optimizer (kd's stage one, or joint training), one student's
    rco = config.method == "rco"
    if rco and config.teacher_finetuned:
        raise LgtmInputError(
            "rco follows the teacher's route while it is fine-tuned: drop --teacher-finetuned",
            field="teacher_finetuned",
        )
    staged = assistant is not None or rco
    step_method = "kd" if staged else config.method  # takd, rco: kd in each stage
    method_cls = lgtm.methods.base.REGISTRY[step_method]
    has_teacher = method_cls.needs_teacher  # ce: the teacher only lends the student its layers
    stage_one = has_teacher and not method_cls.trains_teacher and not config.teacher_finetuned
    if config.method == "pesf":  # only a LoRA adapter and the head of the teacher learn
        from lgtm.methods.pesf import wrap_teacher

        teacher = wrap_teacher(teacher, config.pesf_rank)
    AcceleratorState._reset_state()  # each run its own mixed precision; the process group stays
    acc = Accelerator(
        cpu=distributed.use_cpu_backend(),
        mixed_precision=distributed.mixed_precision(config.mixed_precision),
        step_scheduler_with_optimizer=False,
        log_with="tensorboard" if config.report_to == "tensorboard" else None,
        project_config=ProjectConfiguration(
            project_dir=str(out), logging_dir=str(out / "tensorboard")
        ),
    )
    streams = {"train": (len(train_f), config.batch_size)}
    if method_cls.needs_feedback:
        streams["feedback"] = (len(feedback_f), config.batch_size)
    distributed.check_batches(streams, acc.num_processes)
    distributed.check_objective(config.objective, acc.num_processes)
    per_epoch = math.ceil(len(train_f) / config.batch_size)
    distill_total = _total(per_epoch, config.epochs, config.max_steps)
    teacher_total = _total(per_epoch, config.teacher_epochs or config.epochs, config.max_steps)
    opt_t = torch.optim.AdamW(
        [p for p in teacher.parameters() if p.requires_grad],
        lr=config.teacher_lr,
        weight_decay=config.weight_decay,
    )
    opt_s = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    teacher_steps = teacher_total if stage_one else distill_total
    sched_t = get_linear_schedule_with_warmup(
        opt_t, int(config.warmup_ratio * teacher_steps), teacher_steps
    )
    sched_s = get_linear_schedule_with_warmup(
        opt_s, int(config.warmup_ratio * distill_total), distill_total
    )
    # Both models whole on every process, not wrapped in DistributedDataParallel: the methods
    # average their own gradients (lgtm.distributed). evaluation_mode=True: device placement
    # and mixed precision only; the models are still saved by save_state.
    teacher = acc.prepare_model(teacher, evaluation_mode=True)
    student = acc.prepare_model(student, evaluation_mode=True)
    opt_t, opt_s, sched_t, sched_s = acc.prepare(opt_t, opt_s, sched_t, sched_s)
    if assistant is not None:  # its own optimizer and schedule, a student's budget
        assistant = acc.prepare_model(assistant, evaluation_mode=True)
        opt_a = torch.optim.AdamW(
            assistant.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        sched_a = get_linear_schedule_with_warmup(
            opt_a, int(config.warmup_ratio * distill_total), distill_total
        )
        opt_a, sched_a = acc.prepare(opt_a, sched_a)
    if acc.num_processes > 1:  # the same models everywhere, but each process its own dropout
        set_seed(config.seed + acc.process_index)
    state = LoopState(num_processes=acc.num_processes)
    acc.register_for_checkpointing(state)
    raw_opt_t = getattr(opt_t, "optimizer", opt_t)  # the methods replay AdamW themselves
    raw_opt_s = getattr(opt_s, "optimizer", opt_s)
    anchor = None
    if rco:  # the frozen teacher of each part: one model, each part loads its snapshot into it
        anchor = acc.prepare_model(copy.deepcopy(acc.unwrap_model(teacher)), evaluation_mode=True)
    method = _make_method(
        step_method,
        teacher=(assistant or anchor or teacher) if has_teacher else None,
        student=student,
        student_optimizer=raw_opt_s,
        teacher_optimizer=raw_opt_t if method_cls.trains_teacher else None,
        preset=config.preset,
        **_method_options(config),
    )
    method.safe_step = False  # a step that fails ends the run: its checkpoints are the recovery

    phases = []
    eval_t, save_t = _periods(teacher_total, config)
    eval_d, save_d = _periods(distill_total, config)
    anchors = _anchor_steps(teacher_total, config.rco_anchors) if rco else {}
    if stage_one:
        phases.append(
            Phase(
                "teacher",
                TeacherFinetune(teacher, raw_opt_t),
                teacher_total,
                eval_t,
                save_t,
                evaluate_teacher=True,
                evaluate_student=False,
                snapshots={s: out / rundir.ANCHORS / f"anchor-{k}" for k, s in anchors.items()}
                or None,
            )
        )
    if assistant is not None:  # takd: teacher → assistant, then assistant → student
        assistant_kd = _make_method(
            "kd",
            teacher=teacher,
            student=assistant,
            student_optimizer=getattr(opt_a, "optimizer", opt_a),
            **_method_options(config),
        )
        assistant_kd.safe_step = False
        phases.append(
            Phase(
                "assistant",
                assistant_kd,
                distill_total,
                eval_d,
                save_d,
                evaluate_teacher=False,
                evaluate_student=True,
                teacher_model=teacher,
                student_model=assistant,
            )
        )
    if rco:  # the student's budget in K parts, part k taught by anchor k, easy to hard
        k_parts = config.rco_anchors
        parts = [distill_total // k_parts + (j < distill_total % k_parts) for j in range(k_parts)]
        for k, size in enumerate(parts, start=1):
            folder = out / rundir.ANCHORS / f"anchor-{k}"
            phases.append(
                Phase(
                    f"distill-{k}",
                    method,
                    size,
                    eval_d,
                    save_d,
                    evaluate_teacher=False,
                    evaluate_student=True,
                    teacher_model=anchor,
                    offset=sum(parts[: k - 1]),
                    stream="distill",
                    on_start=lambda folder=folder: _load_weights(acc.unwrap_model(anchor), folder),
                )
            )
    else:
        phases.append(
            Phase(
                "distill",
                method,
                distill_total,
                eval_d,
                save_d,
                evaluate_teacher=method.trains_teacher,
                evaluate_student=True,
                teacher_model=assistant,
                track_every=(
                    config.track_steps or max(1, math.ceil(distill_total / TRACKS_PER_RUN))
                )
                if method.computes_influence
                else 0,
            )
        )
    schedulers = {
        "teacher": [sched_t],
        "distill": [sched_s] + ([sched_t] if method.trains_teacher else []),
    }
    schedulers.update({p.name: [sched_s] for p in phases if p.name.startswith("distill-")})
    if assistant is not None:
        schedulers["assistant"] = [sched_a]

    checkpoint = _load_checkpoint(acc, found, config) if found else None
    if checkpoint is not None and state.num_processes != acc.num_processes:
        raise LgtmInputError(
            f"the run was started with {state.num_processes} process(es): resume it with as "
            f"many (this launch has {acc.num_processes})",
            field="resume",
        )
    if checkpoint is not None:
        say(config, f"lgtm: resuming from {checkpoint} ({state.phase} step {state.step})")
    else:
        if config.resume:
            say(config, f"lgtm: no checkpoint in {out}: starting the run")
        state.phase = phases[0].name
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        saved = RunConfig(**{**config.to_dict(), "output_dir": str(out)})
        cfg.save_yaml(saved, out / "config.yaml")
    if config.report_to == "tensorboard":
        acc.init_trackers("lgtm", config=_flat(config.to_dict(saved=True)))

    ids = [e.id for e in data.train]
    tracked = R.choose_tracked_ids(ids, n=64, seed=config.seed)
    influence_log = None
    if acc.is_main_process:
        resume_step = None
        if checkpoint is not None:  # keep what was logged up to the checkpoint
            resume_step = state.step if state.phase == "distill" else 0
        elif (out / R.INFLUENCE_FILE).exists():
            (out / R.INFLUENCE_FILE).unlink()
        influence_log = LazyInfluenceLog(out / R.INFLUENCE_FILE, tracked, resume_step)

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
    tracked_batch = collate([f for f in train_f if f["example_id"] in tracked_set])
    ctx = StageContext(
        config,
        acc,
        data.task,
        train_f,
        eval_f,
        collate,
        teacher,
        student,
        state,
        tracked_batch,
        started,
        state.wall_seconds,
        has_teacher,
        {"selection": encode(data.selection, tokenizer, max_length)}
        if config.select_on == "selection"
        else None,
        tokenizer,
        out,
    )
    try:
        for phase in phases:
            if phase.name in state.phases_done:
                continue
            if state.phase != phase.name:
                state.phase, state.step, state.window = phase.name, 0, {}
            batches = Batches(
                train_f,
                collate,
                config.batch_size,
                config.seed,
                PHASE_IDS[phase.stream or phase.name],
                rank=acc.process_index,
                world=acc.num_processes,
            )
            run_phase(
                ctx,
                phase,
                batches,
                feedback_batches,
                schedulers[phase.name],
                influence_log,
                out,
                callback,
            )
            state.phases_done.append(phase.name)
    finally:
        if influence_log is not None:
            influence_log.close()

    # ---- final outputs
    if state.best is not None:  # --select-on selection: the best student replaces the last
        acc.wait_for_everyone()
        _load_weights(acc.unwrap_model(student), out / rundir.SELECTED)
    probe = collate(next(iter(eval_f.values()))[: config.eval_batch_size])
    probe.pop("example_id", None)
    metrics = _final_metrics(config, data, phases, state, student, teacher, probe, out)
    metrics["max_length"] = max_length  # --max-length, lowered to what the models take
    metrics["notices"] = notices
    metrics["stages"] = _stages(phases, state)
    if rco:  # each part's "teacher" was an anchor: report the final teacher, and the route
        metrics["teacher"] = state.teacher_history[-1]["teacher_eval"]
        metrics["anchors"] = [state.frozen_evals.get(p.name) for p in phases[1:]]
    if assistant is not None:  # the distill stage's "teacher" is the assistant: say so
        metrics["assistant"] = metrics["teacher"]
        metrics["teacher"] = (
            state.teacher_history[-1]["teacher_eval"]
            if state.teacher_history
            else state.frozen_evals.get("assistant")
        )
    metrics["num_processes"] = acc.num_processes
    metrics["backend"] = acc.state.backend  # None on one process
    metrics["mixed_precision"] = str(acc.mixed_precision)
    metrics["device"] = str(acc.device)
    if acc.is_main_process:
        rundir.save_model(acc.unwrap_model(student), tokenizer, out / "student")
        if has_teacher:
            rundir.save_model(_plain(acc.unwrap_model(teacher)), tokenizer, out / "teacher")
        if assistant is not None:
            rundir.save_model(acc.unwrap_model(assistant), tokenizer, out / "assistant")
        metrics["wall_seconds"] = ctx.wall()
        R.write_metrics(out, metrics)
        try:
            R.make_plots(out)
        except Exception as err:  # plots are a convenience: never lose a finished run to them
            say(config, f"lgtm: warning: plots not written: {err}")
        if (out / rundir.SELECTED).exists():  # now in student/
            shutil.rmtree(out / rundir.SELECTED)
        if not config.keep_checkpoints and (out / rundir.ANCHORS).exists():  # rco's, K teachers
            shutil.rmtree(out / rundir.ANCHORS)
        if not config.keep_checkpoints and (out / CHECKPOINTS).exists():
            shutil.rmtree(out / CHECKPOINTS)
        from rich.console import Console

        Console().print(R.summary_table(metrics))
        print(f"outputs in {out}/", flush=True)
    if config.report_to == "tensorboard":
        acc.end_training()
    return RunResult(metrics, out, acc.unwrap_model(student), acc.unwrap_model(teacher), tokenizer)


def _make_method(name: str, **kwargs: Any) -> Any:
    """``lgtm.make_method``, with the options it refuses reported as bad input (exit 2)."""
    import lgtm

    try:
        return lgtm.make_method(name, **kwargs)
    except ValueError as err:
        text = str(err)
        field = next((f for f in ("pkd_layers", "objective") if f.split("_")[0] in text), "method")
        raise LgtmInputError(text, field=field) from None


def _stages(phases: list[Phase], state: LoopState) -> list[dict[str, Any]]:
    """The stages of the run, in order: what each trained, from what, for how many steps, and
    the last dev score of the model it trained."""
    from lgtm.loop import _history

    trains = {"teacher": "teacher", "assistant": "assistant"}
    guides = {"teacher": "labels", "assistant": "teacher"}
    out = []
    for phase in phases:
        history = _history(state, phase.name)
        last = history[-1] if history else {}
        key = "student_eval" if phase.evaluate_student else "teacher_eval"
        learner = trains.get(phase.name, "student")
        if phase.name == "distill" and phase.stepper.trains_teacher:
            learner = "student and teacher"
        if phase.name.startswith("distill-"):  # rco: part k learns from anchor k
            guide = f"teacher anchor {phase.name.rsplit('-', 1)[1]}"
        else:
            default = "assistant" if phase.teacher_model is not None else "teacher"
            if not getattr(phase.stepper, "needs_teacher", True):  # ce
                default = "labels"
            guide = guides.get(phase.name, default)
        out.append(
            {
                "name": phase.name,
                "trains": learner,
                "learns_from": guide,
                "steps": phase.total,
                "dev": last.get(key),
            }
        )
    return out


def _anchor_steps(total: int, k: int) -> dict[int, int]:
    """rco: anchor ``j`` (1..k) is the teacher after step ``round(j · total / k)`` of its
    fine-tuning, evenly spaced, the last the final teacher. Raises :class:`LgtmInputError`
    when stage one has fewer steps than anchors."""
    if k > total:
        raise LgtmInputError(
            f"{k} anchors need at least {k} steps of the teacher's fine-tuning, it has {total}",
            field="rco_anchors",
        )
    return {j: round(j * total / k) for j in range(1, k + 1)}


def _teacher_assistant(config: RunConfig, teacher: Any, student: Any) -> Any:
    """takd's teacher assistant (Mirzadeh et al., AAAI 2020): the pre-trained teacher's first
    ``--ta-layers`` layers (default ⌈(Nt + Ns) / 2⌉), built as students are; None otherwise."""
    if config.method != "takd":
        if config.ta_layers is not None:
            raise LgtmInputError("--ta-layers is for --method takd", field="ta_layers")
        return None
    from lgtm import models as M

    n_t, n_s = teacher.config.num_hidden_layers, student.config.num_hidden_layers
    layers = config.ta_layers or math.ceil((n_t + n_s) / 2)
    if not 1 <= layers <= n_t:
        raise LgtmInputError(
            f"an assistant of {layers} layers is impossible: the teacher has {n_t} "
            f"(choose 1..{n_t})",
            field="ta_layers",
        )
    return M.student_from_teacher(teacher, layers)


def _plain(model: Any) -> Any:
    """The model as ``from_pretrained`` will load it: pesf's adapter merged into a copy."""
    if not type(model).__module__.startswith("peft"):  # (importing peft takes seconds)
        return model
    from lgtm.methods.pesf import merged_teacher

    return merged_teacher(model)


def _load_weights(student: Any, folder: Path) -> None:
    """Put the weights saved in ``folder`` (``rundir.save_model``) into ``student``: the
    selected student (``loop._keep_if_best``), or an rco anchor into the anchor model."""
    from safetensors.torch import load_file

    weights = {}
    for shard in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(shard, device=str(next(student.parameters()).device)))
    missing, unexpected = student.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(
            f"the selected student in {folder} does not fit: {missing or unexpected}"
        )


def _selection_metrics(config: RunConfig, data: RunData, state: LoopState) -> dict[str, Any]:
    """How the reported student was chosen: the last step's, or the best on the selection set
    (its dev score then stands beside the last step's, ``student_last``)."""
    if state.best is None:
        return {"selection": "none: the models of the last step are kept and reported"}
    by_step = {h["step"]: h for h in state.history if "student_eval" in h}
    chosen, last = by_step[state.best["step"]], state.history[-1]
    return {
        "selection": {
            "on": f"selection set: {len(data.selection)} examples carved from train, "
            "trained on by no method; dev never used to choose",
            "step": state.best["step"],
            "score": state.best["score"],
        },
        "student_selected_eval": chosen["student_eval"],
        "student_last": last["student_eval"],
        "student_selection_last": last.get("student_selection"),
    }


def _final_metrics(
    config: RunConfig,
    data: RunData,
    phases: list[Phase],
    state: LoopState,
    student: Any,
    teacher: Any,
    probe: dict,
    out: Path,
) -> dict[str, Any]:
    """metrics.json's content: the last evaluation, how the run was done, size and speed."""
    from lgtm import models as M
    from lgtm import report as R

    latency = {
        "student": M.measure_latency(student, probe),
        "teacher": M.measure_latency(teacher, probe),
    }
    train_s = state.train_seconds
    leaks = data.leaks_into_evaluation
    evals = {k: len(v) for k, v in data.evals.items()}
    return {
        "task": data.task.name,
        "method": config.method,
        "preset": config.preset,
        "seed": config.seed,
        "student": (
            next(h for h in state.history if h["step"] == state.best["step"])["student_eval"]
            if state.best is not None
            else state.history[-1]["student_eval"]
        ),
        "teacher": state.history[-1].get("teacher_eval"),  # None: no teacher (ce)
        "majority_class": majority_class(
            data.task, [e.label for e in data.train], data.evals
        ),  # the floor: always the most frequent training class
        "eval_split": next(iter(evals)),
        "main_metric": data.task.main_metric,
        "feedback": {
            "source": data.feedback_source,
            "size": len(data.feedback),
            "fraction": config.feedback_fraction if not leaks else None,
            "leaks_into_evaluation": leaks,
        },
        "leaks_into_evaluation": leaks,
        **_selection_metrics(config, data, state),
        "data_source": data.source,
        "train_samples": len(data.train),
        "eval_samples": evals,
        "steps": {p.name: p.total for p in phases},
        "epochs": config.epochs,
        "parameters": {
            "student": M.count_parameters(student),
            "teacher": M.count_parameters(teacher),
        },
        "latency_seconds": latency,
        "latency_batch_size": int(probe["input_ids"].shape[0]),
        "speedup": latency["teacher"] / max(latency["student"], 1e-12),
        "samples_per_second": state.samples_seen / train_s if train_s > 0 else None,
        "train_seconds": train_s,
        "wall_seconds": None,  # set when the outputs are written
        "teacher_finetune_history": state.teacher_history,
        "history": state.history,
        "versions": R.package_versions(),
        "config": config.to_dict(saved=True) | {"output_dir": str(out)},
    }


def _load_checkpoint(acc: Any, found: list[Path], config: RunConfig) -> Path:
    """Load the newest undamaged checkpoint of ``found`` (newest first) into ``acc``'s objects.

    A damaged one (a missing or truncated file, or one that fails to load) is skipped with a
    warning; when every one is damaged, :class:`LgtmInputError` names the newest's problem.
    """
    problems = []
    for checkpoint in found:
        problem = rundir.damage(checkpoint)
        if problem is None:
            try:
                acc.load_state(str(checkpoint))
                return checkpoint
            except Exception as err:  # a damaged file fails in many ways, all of them here
                text = str(err).strip().splitlines()
                problem = f"{checkpoint}: cannot be loaded ({text[0] if text else type(err)})"
        problems.append(problem)
        say(config, f"lgtm: warning: damaged checkpoint: {problem}")
    raise LgtmInputError(
        f"no undamaged checkpoint to resume from ({problems[0]}): pass --overwrite to start again",
        field="resume",
    )


def _check_resume_config(config: RunConfig, out: Path) -> None:
    path = out / "config.yaml"
    if not path.exists():
        return
    saved = cfg.resolve(cfg.load_yaml(path))
    diff = cfg.differences(saved, config)
    if diff:
        key, (was, now) = next(iter(diff.items()))
        raise LgtmInputError(
            f"differs from the run being resumed ({was!r} there, {now!r} "
            f"here): resume with the same settings",
            file=path,
            field=key,
        )


def _total(per_epoch: int, epochs: int, max_steps: int | None) -> int:
    total = per_epoch * epochs
    return min(total, max_steps) if max_steps else total


def _periods(total: int, config: RunConfig) -> tuple[int, int]:
    every = config.eval_steps or max(1, math.ceil(total / EVALS_PER_RUN))
    return every, config.save_steps or every


def _method_options(config: RunConfig) -> dict[str, Any]:
    own = {"pkd": ("pkd_beta", "pkd_layers"), "pesf": ("pesf_rank",)}.get(config.method, ())
    return {
        k: getattr(config, k)
        for k in (
            *own,
            "alpha",
            "teacher_alpha",
            "temperature",
            "objective",
            "fd_radius",
            "lookahead",
            "influence_objective",
            "influence_step",
        )
    }


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in values.items()}
