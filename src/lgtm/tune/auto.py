"""``lgtm distill --lr auto``: a small ``lgtm tune`` study on the student learning rate, run
on the selection set before the run itself (its trials kept in ``<output_dir>/lr-search``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lgtm.config import RunConfig
from lgtm.tune.study import TuneSettings, tune

AUTO_TRIALS = 6  # trials of the study (the first 3 drawn at random, then TPE; median pruning)
LR_SEARCH = "lr-search"


@contextlib.contextmanager
def _random_states_kept() -> Iterator[None]:
    """Python's, NumPy's and torch's random states (CPU and GPUs) as they were before."""
    import random

    import numpy as np
    import torch

    kept = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        yield
    random.setstate(kept[0])
    np.random.set_state(kept[1])


def choose_lr(config: RunConfig, out: Path) -> dict[str, Any]:
    """The student lr chosen for ``config`` (whose ``lr`` is ``"auto"``) by a study of
    ``AUTO_TRIALS`` trials over the default range of ``lr`` (``lgtm.tune.space.TUNABLE``),
    each trial scored on the selection set, dev neither read nor scored.

    Returns ``{"lr", "selection_score", "trials", "trial_steps", "study"}`` (metrics.json's
    ``lr_search``). A continued run (``--resume``) continues the same study. Raises
    :class:`LgtmInputError` as :func:`lgtm.tune.tune` does.
    """
    explicit = config.to_dict(saved=True)
    for key in ("lr", "output_dir", "overwrite", "resume"):
        explicit.pop(key, None)
    explicit["quiet"] = True
    folder = out / LR_SEARCH
    with _random_states_kept():  # the run goes on exactly as ``--lr <chosen>`` would
        settings = TuneSettings(AUTO_TRIALS, folder, search="lr", summary=False)  # the run's own
        result = tune(explicit, settings)
    best = result["best"]
    if best is None:
        from lgtm.errors import TrainingDiverged

        raise TrainingDiverged(
            f"--lr auto: none of the {AUTO_TRIALS} trials finished (see {folder}/trials.csv); "
            "give --lr",
            field="lr",
        )
    return {
        "lr": best["params"]["lr"],
        "selection_score": best["selection_score"],
        "trials": [
            {k: r[k] for k in ("trial", "state", "selection_score", "steps", "lr")}
            for r in result["table"]
        ],
        "trial_steps": result["trial_steps"],
        "study": str(folder),
    }
