"""A frozen teacher's outputs, computed once per stage and kept in the run folder.

When a stage's teacher no longer learns (kd's distillation, takd's and rco's stages), its
logits on every labelled and transfer row are the same each epoch: they are computed once
(no gradient, in eval mode as the stage uses it, rows sorted by length so that little padding
is computed, the largest batch that fits), saved in ``teacher_outputs/<stage>.pt``, and reused
every epoch and after ``--resume``. A file is used only when its key — a hash of the teacher's
weights and of the encoded rows — matches, so a changed teacher or changed data is never
served stale outputs; a mismatched file is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lgtm import rundir
from lgtm.batches import to_device
from lgtm.data.encode import MODEL_INPUTS

FOLDER = rundir.TEACHER_OUTPUTS
FIRST_BATCH = {"cuda": 1024, "cpu": 256}  # rows per labelling batch, halved on out-of-memory


def fingerprint(model: torch.nn.Module, features: Sequence[dict]) -> str:
    """SHA-256 of ``model``'s state (names, dtypes, values) and of the rows' ids and inputs."""
    digest = hashlib.sha256()
    _add_model(digest, model)
    for row in features:
        digest.update(repr((row["example_id"], *(row.get(k) for k in MODEL_INPUTS))).encode())
    return digest.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of ``model``'s state: names, dtypes and values of every tensor (``--resume``
    compares those of the models a run started from)."""
    digest = hashlib.sha256()
    _add_model(digest, model)
    return digest.hexdigest()


def _add_model(digest: Any, model: torch.nn.Module) -> None:
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


@torch.no_grad()
def label_rows(
    model: torch.nn.Module,
    features: Sequence[dict],
    collate: Callable,
    device: torch.device,
    *,
    batch_size: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """``model``'s logits ``[N, C]`` (float32, CPU) on ``features``, in their order.

    Rows are taken longest first in batches of ``batch_size`` (default: 1024 on a GPU, 256 on
    a CPU), halved whenever a batch does not fit in the device's memory. The model is put in
    eval mode (no dropout) and its mode is restored.
    """
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    size = batch_size or FIRST_BATCH.get(torch.device(device).type, 256)
    out: list[torch.Tensor | None] = [None] * len(features)
    was_training = model.training
    model.eval()
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(order), desc="teacher labelling", unit="row", disable=not progress,
        file=sys.stderr, dynamic_ncols=True,
    )  # fmt: skip
    try:
        start = 0
        while start < len(order):
            chosen = order[start : start + size]
            batch = collate([features[i] for i in chosen])
            inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
            try:
                logits = model(**to_device(inputs, torch.device(device))).logits
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                size = max(1, size // 2)
                torch.cuda.empty_cache()
                continue
            for i, row in zip(chosen, logits.float().cpu(), strict=True):
                out[i] = row
            start += len(chosen)
            bar.update(len(chosen))
    finally:
        bar.close()
        model.train(was_training)
    return torch.stack(out) if out else torch.zeros(0, 1)  # type: ignore[arg-type]


class TeacherOutputs:
    """A frozen teacher's logits on a stage's rows, looked up by example id."""

    def __init__(self, ids: Sequence[int], logits: torch.Tensor) -> None:
        self.logits = logits
        self.position = {int(i): n for n, i in enumerate(ids)}

    def lookup(self, example_ids: torch.Tensor) -> torch.Tensor:
        """The logits ``[B, C]`` of the rows ``example_ids`` ``[B]``."""
        index = torch.tensor([self.position[int(i)] for i in example_ids.tolist()])
        return self.logits.index_select(0, index)


def cached_outputs(
    model: torch.nn.Module,
    features: Sequence[dict],
    collate: Callable,
    acc: Any,
    path: Path,
    *,
    progress: bool = True,
) -> TeacherOutputs:
    """The outputs of ``model`` on ``features``: read from ``path`` when its key matches,
    else computed by the main process and written there (atomically) while the others wait.
    Raises ``OSError`` when the file cannot be written."""
    from lgtm.fileio import atomic_write

    key = fingerprint(model, features)
    ids = [int(f["example_id"]) for f in features]
    stored = _read(path, key)
    if stored is None:
        if acc.is_main_process:
            logits = label_rows(model, features, collate, acc.device, progress=progress)
            buffer = io.BytesIO()
            torch.save({"key": key, "ids": ids, "logits": logits}, buffer)
            atomic_write(path, buffer.getvalue())
        acc.wait_for_everyone()
        stored = _read(path, key)
        if stored is None:  # pragma: no cover - written just now by the main process
            raise OSError(f"the teacher's outputs in {path} could not be read back")
    if stored["ids"] != ids:  # pragma: no cover - the key covers the ids
        raise OSError(f"the teacher's outputs in {path} are for other rows")
    return TeacherOutputs(ids, stored["logits"])


def _read(path: Path, key: str) -> dict | None:
    """The stored outputs when ``path`` holds them under ``key``; None otherwise."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged file is recomputed  # noqa: BLE001
        return None
    return stored if isinstance(stored, dict) and stored.get("key") == key else None
