"""Experiment trackers of a run (``--report-to tensorboard,mlflow,wandb``), through
Accelerate's trackers, each kept inside the run folder and offline: TensorBoard event files in
``OUTPUT_DIR/tensorboard``, an MLflow local store in ``OUTPUT_DIR/mlflow.db`` (SQLite), a W&B
run in offline mode in ``OUTPUT_DIR/wandb`` (``wandb sync`` uploads it later). An
``MLFLOW_TRACKING_URI`` or ``WANDB_MODE`` already set by the user is respected."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from lgtm.errors import LgtmInputError

#: ``--report-to`` names -> the package each needs.
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def names(report_to: str | list[str] | None) -> list[str]:
    """The trackers a run's ``report_to`` names (a parsed list, or a text such as
    ``"tensorboard"`` or ``"none"`` given through the Python API); [] for none."""
    from lgtm.config.values import trackers

    try:
        return trackers(report_to) or []
    except ValueError as err:
        raise LgtmInputError(str(err), field="report_to") from None


def check_available(report_to: str | list[str] | None) -> None:
    """Refuse, before anything trains, a tracker whose package is missing (one line)."""
    for name in names(report_to):
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise LgtmInputError(
                f"--report-to {name} needs the package {TRACKERS[name]}: pip install "
                f"'lgtm[trackers]'",
                field="report_to",
            )


def tracking_uri(out: Path) -> str:
    """MLflow's store for a run: a local SQLite file in the run folder (MLflow 3 refuses its
    plain-file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a SQLite file is as local)."""
    return f"sqlite:///{(out / 'mlflow.db').resolve()}"


def log_with(report_to: str | list[str] | None) -> list[str] | None:
    """The Accelerator's ``log_with``."""
    return names(report_to) or None


def init_kwargs(report_to: str | list[str] | None, out: Path) -> dict[str, dict[str, Any]]:
    """``Accelerator.init_trackers``'s per-tracker arguments; sets MLflow's store and W&B's
    mode for this process unless the user set them."""
    kwargs: dict[str, dict[str, Any]] = {}
    chosen = names(report_to)
    if "mlflow" in chosen and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        mlflow.set_tracking_uri(tracking_uri(out))
    if "wandb" in chosen:
        out.mkdir(parents=True, exist_ok=True)
        kwargs["wandb"] = {  # W&B writes into DIR/wandb (DIR/.wandb where that exists)
            "dir": str(out),
            "mode": os.environ.get("WANDB_MODE", "offline"),
            "name": out.name,
        }
    return kwargs
