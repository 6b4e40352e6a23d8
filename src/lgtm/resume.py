"""Start a run, or resume it from its newest undamaged checkpoint with the same settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lgtm import config as cfg
from lgtm import rundir
from lgtm.config import RunConfig
from lgtm.errors import LgtmInputError
from lgtm.loop import LoopState, say


def start_or_resume(
    config: RunConfig,
    acc: Any,
    state: LoopState,
    found: list[Path],
    first: str,
    out: Path,
    inputs: dict[str, str],
    saved_as: RunConfig | None = None,
) -> Path | None:
    """Load the newest good checkpoint (``--resume``) or start at stage ``first``; write
    config.yaml (``saved_as``, the settings as asked, when they differ: ``--lr auto``) and
    start the trackers. ``inputs``: the digests of the run's data and models
    (``RunData.digests``, ``teacher_cache.model_digest``), recorded in every checkpoint and
    compared on resume (:func:`check_inputs`). Returns the checkpoint resumed from, if any."""
    checkpoint = load_checkpoint(acc, found, config) if found else None
    if checkpoint is not None and state.num_processes != acc.num_processes:
        raise LgtmInputError(
            f"the run was started with {state.num_processes} process(es): resume it with as "
            f"many (this launch has {acc.num_processes})",
            field="resume",
        )
    if checkpoint is not None:
        check_inputs(config, state.inputs, inputs, checkpoint)
    state.inputs = inputs
    if checkpoint is not None:
        say(config, f"lgtm: resuming from {checkpoint} ({state.phase} step {state.step})")
    else:
        if config.resume:
            say(config, f"lgtm: no checkpoint in {out}: starting the run")
        state.phase = first
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        saved = RunConfig(**{**(saved_as or config).to_dict(), "output_dir": str(out)})
        cfg.save_yaml(saved, out / "config.yaml")
    from lgtm import trackers

    if trackers.names(config.report_to):
        acc.init_trackers(
            "lgtm",
            config=_flat(config.to_dict(saved=True)),
            init_kwargs=trackers.init_kwargs(config.report_to, out),
        )
    return checkpoint


# How --resume names each input whose digest it compares (others: their own name).
INPUT_NAMES = {
    "train": "the training rows",
    "feedback": "the feedback rows",
    "selection": "the selection rows",
    "transfer": "the transfer rows",
    "teacher": "the teacher's weights",
    "student": "the student's weights",
}


def check_inputs(
    config: RunConfig, saved: dict[str, str] | None, now: dict[str, str], checkpoint: Path
) -> None:
    """Refuse to resume when the data or models differ from those the run started from
    (a file edited in place: labels flipped, rows added); a checkpoint that recorded none
    (older lgtm) is resumed with a notice that they could not be checked."""
    if saved is None:
        say(
            config,
            f"lgtm: notice: {checkpoint} records no digests of the run's data and models "
            "(written by an older lgtm): the data could not be checked against the run's start",
        )
        return
    changed = [k for k in sorted(saved.keys() | now.keys()) if saved.get(k) != now.get(k)]
    if changed:
        words = ", ".join(
            INPUT_NAMES.get(k, k.replace("eval ", "the evaluation rows of ")) for k in changed
        )
        raise LgtmInputError(
            f"{words} differ from those the run started from (a file changed since): resume "
            "with the same data and models, or start again with --overwrite",
            field="resume",
        )


def load_checkpoint(acc: Any, found: list[Path], config: RunConfig) -> Path:
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


def check_resume_config(config: RunConfig, out: Path) -> None:
    """Refuse ``--resume`` with result-changing settings other than the run's config.yaml."""
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


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    """Tracker-friendly values: numbers, texts and flags as they are, the rest as text."""
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in values.items()}
