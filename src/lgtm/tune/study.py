"""``lgtm tune``: an Optuna study (TPE sampler, median pruner) whose trials are ordinary
``lgtm distill`` runs scored on the selection set, the dev split neither read nor scored.

The study lives in a database (``--storage``, default SQLite in the output folder): a killed
``lgtm tune`` continues where it stopped, and several ``lgtm tune`` processes share one study.
Each trial may itself run on several processes (``torchrun ... lgtm tune``): the main process
talks to the database and sends each trial's settings and each pruning decision to the others.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgtm.config import RunConfig, resolve
from lgtm.errors import LgtmInputError, TrainingDiverged
from lgtm.tune.space import Range, default_space, parse_search

STUDY_DB = "study.db"
TRIALS = "trials"
TUNE_JSON = "tune.json"
HEARTBEAT_SECONDS = 10  # a live trial's mark in the database
GRACE_SECONDS = int(os.environ.get("LGTM_TUNE_GRACE_SECONDS", "60"))  # then a trial is stale


@dataclass
class TuneSettings:
    """What ``lgtm tune`` adds to a run's settings."""

    trials: int  # trials in the study, finished or pruned (or diverged), all processes together
    output_dir: Path
    search: str | None = None  # --search; None: the default space of the method
    storage: str | None = None  # an Optuna RDB URL; None: sqlite:///<output_dir>/study.db
    study_name: str = "lgtm-tune"
    pruning: bool = True  # the median pruner on the selection-set evaluations
    summary: bool = True  # print the summary table at the end (also with --quiet)
    keep_trial_models: bool = False  # keep each trial's saved models (best.yaml re-runs the best)


class _Pruned(Exception):
    """Raised inside a trial's run on every process when the main process prunes it."""


def tune(explicit: dict[str, Any], settings: TuneSettings) -> dict[str, Any]:
    """Run (or continue) the study until it holds ``settings.trials`` trials; write its
    outputs (``trials.csv``, ``best.yaml``, ``tune.png``, ``tune.json``) and return
    ``tune.json``'s content.

    ``explicit``: the run's settings as a user gave them (YAML and flags). Raises
    :class:`LgtmInputError` (one line, exit 2) for ``--trials`` below 1, no selection set, a bad
    search space, an output folder holding something else, a storage that cannot be opened,
    or a study made for other settings.
    """
    from lgtm import distributed
    from lgtm.tune import outputs

    base = resolve(explicit)
    if settings.trials < 1:
        raise LgtmInputError(f"must be at least 1, got {settings.trials}", field="trials")
    if base.selection_fraction is None:
        raise LgtmInputError(
            "lgtm tune scores each trial on a selection set carved from train, never on dev: "
            "give --selection-fraction (e.g. 0.1)",
            field="selection_fraction",
        )
    space = parse_search(settings.search, base) if settings.search else default_space(base)
    if explicit.get("lr") == "auto":  # each trial would run a study of its own first
        searched = any(r.name == "lr" for r in space)
        raise LgtmInputError(
            "--lr auto: lgtm tune searches the student lr itself here; drop --lr"
            if searched
            else "--lr auto would run a 6-trial study inside every trial: give --lr, or "
            "search the student lr with the rest (--search lr,...)",
            field="lr",
        )
    fixed = [r.name for r in space if r.name in explicit]
    if fixed:  # a searched setting given too would be overridden by every trial
        raise LgtmInputError(
            f"{fixed[0]} is searched (--search, or the default space of --method "
            f"{base.method}): drop --{fixed[0].replace('_', '-')} or leave it out of --search",
            field=fixed[0],
        )
    state = distributed.process_state()
    out = Path(settings.output_dir)
    if not state.is_main_process:
        _follow(explicit, out, state)
        return _send(None)  # the main process's result
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    study, created = _open_study(base, space, settings, out)
    outputs.write(study, explicit, base, space, settings, out, show=False)  # the folder's study
    try:
        _optimize(study, explicit, base, space, settings, out, state)
    except LgtmInputError:  # a setting only a run finds wrong (a model, a file): no study kept
        if created and _counts(study)[0] == 0:
            _discard(study, settings, out, fresh)
        raise
    result = outputs.write(study, explicit, base, space, settings, out, show=settings.summary)
    if state.num_processes > 1:
        _send(None)  # the others stop following...
        _send(result)  # ...and return the same result
    return result


# --------------------------------------------------------------------------- the study


def _storage_url(settings: TuneSettings, out: Path) -> str:
    return settings.storage or _own_storage(out)


def _own_storage(out: Path) -> str:
    """The default storage: the SQLite file in the output folder."""
    return f"sqlite:///{(out / STUDY_DB).resolve()}"


def _check_output_dir(settings: TuneSettings, out: Path) -> None:
    """The folder is new, empty, or an earlier ``lgtm tune``'s of the same study name and storage
    (continued); else refused."""
    if out.exists() and not out.is_dir():
        raise LgtmInputError("is a file, not a folder", file=out, field="output_dir")
    if not out.is_dir() or not any(out.iterdir()):
        return
    ours = (out / STUDY_DB).exists() or (out / TRIALS).is_dir() or (out / TUNE_JSON).exists()
    if not ours:
        raise LgtmInputError(
            "holds files that lgtm tune did not write; give a new or empty --output-dir",
            file=out,
            field="output_dir",
        )
    try:  # written when the study is opened: its trial folders and outputs are that study's
        name = json.loads((out / TUNE_JSON).read_text()).get("study_name")
    except (OSError, ValueError, AttributeError):
        name = None
    if name is not None and name != settings.study_name:
        raise LgtmInputError(
            f"holds the study {name!r} (its trials/ and outputs); give another --output-dir "
            f"for the study {settings.study_name!r}",
            file=out,
            field="output_dir",
        )
    own = _own_storage(out)
    held = own if (out / STUDY_DB).exists() else _held_storage(out)
    if held is not None and _sqlite_path(held) != _sqlite_path(_storage_url(settings, out)):
        how = "without --storage" if held == own else f"with --storage {held}"
        raise LgtmInputError(
            f"holds a study kept in {held} (its trials/ and outputs); continue it {how}, or "
            "give another --output-dir",
            file=out,
            field="output_dir",
        )


def _held_storage(out: Path) -> str | None:
    """The storage ``tune.json`` names: where the folder's study is kept."""
    try:
        return json.loads((out / TUNE_JSON).read_text()).get("storage")
    except (OSError, ValueError, AttributeError):
        return None


def _sqlite_path(url: str) -> str:
    """A SQLite URL as its file's resolved path (``sqlite:///runs/t/study.db`` is the same
    study as ``sqlite:////abs/runs/t/study.db``); any other URL as it is."""
    prefix = "sqlite:///"
    return str(Path(url[len(prefix) :]).resolve()) if url.startswith(prefix) else url


def _open_study(
    base: RunConfig, space: list[Range], settings: TuneSettings, out: Path
) -> tuple[Any, bool]:
    """The study, created or loaded, and whether this call created it; refused when an
    existing study was made for other settings (its trials would not be comparable). Nothing
    stored is changed."""
    import optuna

    _check_output_dir(settings, out)
    made = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    out.mkdir(parents=True, exist_ok=True)
    url = _storage_url(settings, out)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # lgtm says what failed, in one line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _storage(url)
    except LgtmInputError:  # the folders this call made are removed again
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study_name,
        direction="maximize",
        pruner=_pruner(settings),
        load_if_exists=True,
    )
    mine = _identity(base, space)
    stored = study.user_attrs.get("lgtm")
    if stored is None:
        study.set_user_attr("lgtm", mine)
    elif stored != mine:
        keys = sorted(
            k for k in {*stored["run"], *mine["run"]} if stored["run"].get(k) != mine["run"].get(k)
        )
        what = ", ".join(keys) if keys else "the search space"
        if keys and stored["space"] != mine["space"]:
            what += " and the search space"
        raise LgtmInputError(
            f"the study {settings.study_name!r} in {url} was made for other settings (differing: "
            f"{what}); give another --output-dir (with a shared --storage, also another "
            "--study-name)",
            field="study_name",
        )
    pruning = study.user_attrs.get("lgtm_pruning")  # absent in studies made before it was kept
    if pruning is None:
        study.set_user_attr("lgtm_pruning", settings.pruning)
    elif pruning != settings.pruning:
        raise LgtmInputError(
            f"the study {settings.study_name!r} in {url} was made with --pruning "
            f"{str(pruning).lower()}: continue it with the same, or give another --output-dir",
            field="pruning",
        )
    return study, stored is None


def _discard(study: Any, settings: TuneSettings, out: Path, fresh: bool) -> None:
    """Remove a study this command created whose first trial found the settings unusable, so
    that the corrected command starts a new one instead of being refused as "other settings":
    the study from its storage, and the database file and trial folders it wrote when the
    output folder was new or empty."""
    import optuna

    optuna.delete_study(study_name=settings.study_name, storage=study._storage)
    if fresh:
        shutil.rmtree(out / TRIALS, ignore_errors=True)
        for name in (TUNE_JSON, "trials.csv"):
            (out / name).unlink(missing_ok=True)
        if settings.storage is None:
            (out / STUDY_DB).unlink(missing_ok=True)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _storage(url: str) -> Any:
    """Optuna's RDB storage with a heartbeat; a database being created by another process at
    the same moment is waited for (up to 5 tries)."""
    import optuna

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {},
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
            )
        except Exception as err:  # a bad URL, a missing driver, a refused connection
            racing = type(err).__name__ in ("OperationalError", "IntegrityError")
            if racing and attempt < 4:
                time.sleep(1 + attempt)
                continue
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise LgtmInputError(
                f"cannot open the study storage {url!r}: {reason}", field="storage"
            ) from None
    raise AssertionError("unreachable")


def _identity(base: RunConfig, space: list[Range]) -> dict[str, Any]:
    """What makes two tune commands the same study: the run's settings and the space."""
    run = base.to_dict(saved=True)
    for k in ("output_dir", "quiet", "report_to", "save_steps", "keep_checkpoints", "export"):
        run.pop(k, None)
    return {"run": run, "space": [r.text() for r in space]}


def _pruner(settings: TuneSettings) -> Any:
    import optuna

    if not settings.pruning:
        return optuna.pruners.NopPruner()
    # a trial stops when its selection score at an evaluation is below the median of the
    # earlier trials' scores at that evaluation; the first 3 trials always run to the end
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def _sampler(seed: int, number: int, trials: int) -> Any:
    """TPE seeded by ``--seed`` and the trial's number: the same command gives the same trials,
    also after a kill. The first third of the trials (3 to 10) are drawn at random."""
    import optuna

    startup = min(10, max(3, trials // 3))
    seed = (seed * 100_003 + number) % 2**32
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


FINISHED = ("COMPLETE", "PRUNED")


def _counts(study: Any) -> tuple[int, int, int]:
    """(finished, running, waiting) trials: finished counts pruned and diverged trials too."""
    done = running = waiting = 0
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state in FINISHED or (state == "FAIL" and t.user_attrs.get("outcome") == "diverged"):
            done += 1
        elif state == "RUNNING":
            running += 1
        elif state == "WAITING":
            waiting += 1
    return done, running, waiting


def _optimize(
    study: Any,
    explicit: dict[str, Any],
    base: RunConfig,
    space: list[Range],
    settings: TuneSettings,
    out: Path,
    state: Any,
) -> None:
    """Trials until the study holds ``settings.trials`` finished ones (other processes' too).

    A trial whose process was killed (failed, or running without a heartbeat for
    ``GRACE_SECONDS``) is run again with its settings before new ones are drawn; the sampler is
    seeded by ``--seed`` and the number of trials finished or running, so a continued study
    draws what the uninterrupted one would have."""
    import optuna

    said = False
    while True:
        _fail_dead_here(study)  # killed on this machine: FAIL at once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # killed elsewhere: FAIL
        _retry_killed(study)
        done, running, waiting = _counts(study)
        if done >= settings.trials:
            return
        if done + running >= settings.trials and not waiting:
            if not said and not explicit.get("quiet"):
                print(
                    f"lgtm tune: waiting for {running} running trial(s): another process's, "
                    f"or a killed one, run again once silent for {GRACE_SECONDS} s",
                    flush=True,
                )
                said = True
            time.sleep(HEARTBEAT_SECONDS)  # the rest are running elsewhere (or going stale)
            continue
        study.sampler = _sampler(base.seed, done + running, settings.trials)
        study.optimize(
            lambda trial: _objective(trial, explicit, space, out, state, settings),
            n_trials=1,
            catch=(TrainingDiverged,),
            gc_after_trial=True,
        )


def _process_mark() -> dict[str, Any]:
    """The machine and process running a trial (kept with it)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _fail_dead_here(study: Any) -> None:
    """Fail each running trial whose process, on this machine, is gone (a SIGKILL, a crash):
    it is run again before new trials are drawn, as after Ctrl-C, rather than once its
    heartbeat is stale, while new trials would be drawn without its result. A trial of
    another machine goes stale after ``GRACE_SECONDS``."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        mark = t.user_attrs.get("process") or {}
        if mark.get("host") != host or _alive(mark.get("pid")):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:  # failed meanwhile by another process
            pass


def _alive(pid: Any) -> bool:
    """Whether a process ``pid`` runs on this machine (an unknown pid counts as running)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _retry_killed(study: Any) -> None:
    """Queue again, with the same settings, each failed trial that was not a diverged run and
    has not been queued again yet (Optuna's retry callback, applied once per trial)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:
        killed = t.state.name == "FAIL" and t.user_attrs.get("outcome") != "diverged"
        if killed and t.number not in retried:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
                (retry or optuna.storages.RetryFailedTrialCallback)()(study, t)


def _objective(
    trial: Any, explicit: dict, space: list[Range], out: Path, state: Any, settings: TuneSettings
) -> float:
    """One trial: a run with the sampled settings, scored by its kept student's selection-set
    score; pruned by the median pruner at its evaluations. Its saved models are removed after
    it (``best.yaml`` runs the best trial again) unless ``settings.keep_trial_models``."""
    try:
        return _trial(trial, explicit, space, out, state)
    finally:
        if not settings.keep_trial_models:
            _drop_models(_trial_dir(out, trial.number))


def _drop_models(folder: Path) -> None:
    """Remove the model folders (a ``config.json`` in them) and checkpoints a run saved in
    ``folder``; its ``config.yaml``, ``metrics.json``, logs and plots stay."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and (child.name == "checkpoints" or (child / "config.json").exists()):
            shutil.rmtree(child)


def _trial(trial: Any, explicit: dict, space: list[Range], out: Path, state: Any) -> float:
    import optuna

    trial.set_user_attr("process", _process_mark())  # killed here: run again at once
    params = {}
    for r in space:
        if r.kind is int:
            params[r.name] = trial.suggest_int(r.name, int(r.low), int(r.high), log=r.log)
        else:
            params[r.name] = trial.suggest_float(r.name, r.low, r.high, log=r.log)
    if state.num_processes > 1:
        _send({"number": trial.number, "params": params})
    trial.set_user_attr("output_dir", str(_trial_dir(out, trial.number)))

    def report(step: int, score: float) -> None:
        trial.report(score, step)
        prune = trial.should_prune()
        if state.num_processes > 1:
            _send(prune)
        if prune:
            raise _Pruned

    steps = [0]
    t0 = time.perf_counter()
    words = ", ".join(f"{k} {v:.4g}" for k, v in params.items())
    try:
        result = _run(explicit, params, out, trial.number, report, steps)
    except _Pruned:
        _record(trial, "pruned", steps[0], t0, words, explicit)
        raise optuna.TrialPruned from None
    except TrainingDiverged:
        _record(trial, "diverged", steps[0], t0, words, explicit)
        raise
    m = result.metrics  # the kept student's selection-set score (a trial's evaluation set)
    best = m["selection"]["score"] if isinstance(m["selection"], dict) else None  # --select-on
    score = float(best if best is not None else m["student"][m["main_metric"]])
    _record(trial, "complete", steps[0], t0, f"{words}: selection {score:.4f}", explicit)
    return score


def _record(trial: Any, outcome: str, steps: int, t0: float, words: str, explicit: dict) -> None:
    trial.set_user_attr("outcome", outcome)
    trial.set_user_attr("steps", steps)
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
    if not explicit.get("quiet"):
        print(f"lgtm tune: trial {trial.number} {outcome} ({words}; {steps} steps)", flush=True)


def _trial_dir(out: Path, number: int) -> Path:
    return out / TRIALS / f"{number:04d}"


def trial_config(explicit: dict[str, Any], params: dict[str, Any], out: Path, number: int):
    """A trial's run: the user's settings, the sampled ones, dev neither read nor scored, the
    student kept as the run that follows keeps it (the best on the selection set unless the user
    gave ``--select-on``), its own folder, nothing exported."""
    return resolve(
        {
            **explicit,
            **params,
            "do_eval": False,
            "export": None,  # a trial's student is not shipped
            "select_on": explicit.get("select_on", "selection"),  # as the run that follows
            "output_dir": str(_trial_dir(out, number)),
            "overwrite": True,
            "resume": False,
            "quiet": True,
        }
    )


def _run(explicit, params, out, number, report, steps) -> Any:
    """The trial's run, its summary kept out of the way (``trials.csv`` holds its results)."""
    import contextlib
    import io

    from lgtm.run import distill

    def count(stage: str, step: int) -> None:
        steps[0] += 1

    config = trial_config(explicit, params, out, number)
    with contextlib.redirect_stdout(io.StringIO()):
        return distill(config, callback=count, report=report)


# --------------------------------------------------------------------------- several processes


def _send(obj: Any) -> Any:
    """Broadcast ``obj`` from the main process; every process returns it."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _follow(explicit: dict[str, Any], out: Path, state: Any) -> None:
    """A process other than the main one: run each trial the main process sends, with its
    pruning decisions, until it sends None."""
    while (msg := _send(None)) is not None:

        def report(step: int, score: float) -> None:
            if _send(None):
                raise _Pruned

        try:
            _run(explicit, msg["params"], out, msg["number"], report, [0])
        except (_Pruned, TrainingDiverged):
            pass
