"""What a finished run reports and leaves: metrics.json's content, and the folder's outputs
(models, metrics, plots, the summary), written by the main process only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lgtm import rundir
from lgtm.config import DEFAULT_RUN_GAIN, RunConfig
from lgtm.errors import LgtmWriteError
from lgtm.evaluation import majority_class
from lgtm.loop import LoopState, history_of, say
from lgtm.plans import Stage
from lgtm.rundata import RunData


def stages_summary(stages: list[Stage], state: LoopState) -> list[dict[str, Any]]:
    """The stages of the run, in order: what each trained, from what, for how many steps, the
    last dev score of the model it trained, and its seconds of training (steps, and the
    frozen teacher's labelling of its rows, also given apart; evaluations not counted)."""
    out = []
    for stage in stages:
        history = history_of(state, stage.name)
        last = history[-1] if history else {}
        key = "student_eval" if stage.evaluate_student else "teacher_eval"
        out.append(
            {
                "name": stage.name,
                "trains": stage.trains,
                "learns_from": stage.learns_from,
                "steps": stage.total,
                "dev": last.get(key),
                "seconds": state.stage_seconds.get(stage.name),
                "teacher_outputs_seconds": state.labelling_seconds.get(stage.name),
            }
        )
    return out


def selection_metrics(config: RunConfig, data: RunData, state: LoopState) -> dict[str, Any]:
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


def weighting_metrics(config: RunConfig, state: LoopState) -> dict[str, Any] | None:
    """How the student's distillation term was weighted (``--student-weighting``): None for
    the plain mean; else the scheme and the mean share of a batch kept (``λ > 0``) over the
    steps: each logged window's share (the mean of its steps') counts for the steps it spans,
    from the history's entry before it (``--log-steps`` and the evaluations make them
    uneven)."""
    if config.student_weighting == "none":
        return None
    total = steps = 0.0
    previous = 0  # every history entry closes a window
    for entry in state.history:
        if "weights_kept" in entry:
            span = entry["step"] - previous
            total, steps = total + entry["weights_kept"] * span, steps + span
        previous = entry["step"]
    return {
        "scheme": config.student_weighting,
        "weights": "λ_i = max(w_i, 0) / Σ_j max(w_j, 0) over each batch, w_i the influence",
        "weights_kept_mean": total / steps if steps else None,
    }


def final_metrics(
    config: RunConfig,
    data: RunData,
    stages: list[Stage],
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
        "student_weighting": weighting_metrics(config, state),
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
        **selection_metrics(config, data, state),
        "data_source": data.source,
        "train_samples": len(data.train),
        "selection_samples": len(data.selection),  # carved from train (--selection-fraction)
        "eval_samples": evals,
        "steps": {s.name: s.total for s in stages},
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
        # the committed measurement the offline demonstration's summary quotes
        "default_run_gain": DEFAULT_RUN_GAIN if config.is_default_run else None,
        "versions": R.package_versions(),
        "config": config.to_dict(saved=True) | {"output_dir": str(out)},
    }


def write_outputs(
    config: RunConfig,
    out: Path,
    metrics: dict[str, Any],
    models: dict[str, Any],
    tokenizer: Any,
) -> None:
    """Save ``models`` (folder name → model) with the tokenizer, metrics.json and the plots,
    remove what a finished run does not keep, and print the summary. Main process only."""
    from rich.console import Console

    from lgtm import report as R

    for name, model in models.items():
        rundir.save_model(model, tokenizer, out / name)
    R.write_metrics(out, metrics)
    from lgtm.report.card import write_model_cards

    write_model_cards(out, list(models), metrics)  # README.md: Hugging Face model cards
    try:
        R.make_plots(out)
    except LgtmWriteError:  # a full disk stops the run here too: nothing is lost yet
        raise
    except Exception as err:  # plots are a convenience: never lose a finished run to them
        say(config, f"lgtm: warning: plots not written: {err}")
    if (out / rundir.SELECTED).exists():  # now in student/
        shutil.rmtree(out / rundir.SELECTED)
    if not config.keep_checkpoints and (out / rundir.ANCHORS).exists():  # rco's, K teachers
        shutil.rmtree(out / rundir.ANCHORS)
    if not config.keep_checkpoints and (out / rundir.CHECKPOINTS).exists():
        shutil.rmtree(out / rundir.CHECKPOINTS)
    if not config.keep_checkpoints:  # kept for --resume: only the files the run wrote
        rundir.remove_teacher_outputs(out, metrics["steps"])
    Console().print(R.summary_table(metrics))
    print(f"outputs in {out}/", flush=True)
