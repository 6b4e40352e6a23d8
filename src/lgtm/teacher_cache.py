"""A frozen teacher's outputs, computed once per stage and kept in the run folder.

When a stage's teacher no longer learns (kd's and pkd's distillation, takd's and rco's
stages), its logits on every labelled and transfer row are the same each epoch, and so are the
``[CLS]`` hidden states pkd compares: they are computed once (no gradient, in eval mode as the
stage uses it, rows sorted by length so that little padding is computed, the largest batch that
fits), saved in ``teacher_outputs/<stage>.pt``, and reused every epoch and after ``--resume``.
A file is used only when its key — a hash of the teacher's weights, of the encoded rows and of
the layers kept — matches, so a changed teacher or changed data is never served stale outputs;
a mismatched file is recomputed and replaced.
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


def fingerprint(
    model: torch.nn.Module, features: Sequence[dict], layers: Sequence[int] = ()
) -> str:
    """SHA-256 of ``model``'s state (names, dtypes, values), of the rows' ids and inputs and
    of the ``layers`` whose ``[CLS]`` states are kept (when there are any)."""
    digest = hashlib.sha256()
    _add_model(digest, model)
    for row in features:
        digest.update(repr((row["example_id"], *(row.get(k) for k in MODEL_INPUTS))).encode())
    if layers:
        digest.update(repr(("cls layers", tuple(layers))).encode())
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
    layers: Sequence[int] = (),
) -> dict[str, torch.Tensor]:
    """``model``'s outputs on ``features``, in their order (float32, CPU): ``"logits"``
    ``[N, C]`` and, with ``layers``, ``"cls"`` ``[N, K, H]``: each row's hidden state at
    position 0 after each of the K ``layers`` (index of ``output_hidden_states``, pkd's).

    Rows are taken longest first in batches of ``batch_size`` (default: 1024 on a GPU, 256 on
    a CPU), halved whenever a batch does not fit in the device's memory. The model is put in
    eval mode (no dropout) and its mode is restored.
    """
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    size = batch_size or FIRST_BATCH.get(torch.device(device).type, 256)
    out: list[torch.Tensor | None] = [None] * len(features)
    cls: list[torch.Tensor | None] = [None] * len(features)
    hidden = {"output_hidden_states": True} if layers else {}
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
                outputs = model(**to_device(inputs, torch.device(device)), **hidden)
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                size = max(1, size // 2)
                torch.cuda.empty_cache()
                continue
            for i, row in zip(chosen, outputs.logits.float().cpu(), strict=True):
                out[i] = row
            if layers:
                states = torch.stack([outputs.hidden_states[k][:, 0] for k in layers], 1)
                for i, row in zip(chosen, states.float().cpu(), strict=True):
                    cls[i] = row
            start += len(chosen)
            bar.update(len(chosen))
    finally:
        bar.close()
        model.train(was_training)
    found = {"logits": torch.stack(out) if out else torch.zeros(0, 1)}  # type: ignore[arg-type]
    if layers:
        found["cls"] = torch.stack(cls) if cls else torch.zeros(0, len(layers), 1)  # type: ignore[arg-type]
    return found


class TeacherOutputs:
    """A frozen teacher's logits (and pkd's ``[CLS]`` states) on a stage's rows, looked up by
    example id."""

    def __init__(
        self, ids: Sequence[int], logits: torch.Tensor, cls: torch.Tensor | None = None
    ) -> None:
        self.logits, self.cls = logits, cls
        self.position = {int(i): n for n, i in enumerate(ids)}

    def lookup(self, example_ids: torch.Tensor) -> torch.Tensor:
        """The logits ``[B, C]`` of the rows ``example_ids`` ``[B]``."""
        return self.logits.index_select(0, self._index(example_ids))

    def lookup_cls(self, example_ids: torch.Tensor) -> torch.Tensor:
        """The ``[CLS]`` states ``[B, K, H]`` of the rows ``example_ids`` ``[B]``."""
        assert self.cls is not None, "no [CLS] states were cached"
        return self.cls.index_select(0, self._index(example_ids))

    def _index(self, example_ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.position[int(i)] for i in example_ids.tolist()])


def cached_outputs(
    model: torch.nn.Module,
    features: Sequence[dict],
    collate: Callable,
    acc: Any,
    path: Path,
    *,
    progress: bool = True,
    layers: Sequence[int] = (),
) -> TeacherOutputs:
    """The outputs of ``model`` on ``features`` (with ``layers``, also their ``[CLS]`` states
    there: :func:`label_rows`): read from ``path`` when its key matches, else computed — each
    of the run's processes labels every N-th row, so that none waits long at the barrier that
    follows (gloo's default timeout is 30 minutes) — and written there (atomically) by the
    main process. Raises ``OSError`` when the file cannot be written."""
    key = fingerprint(model, features, layers)
    ids = [int(f["example_id"]) for f in features]
    stored = _read(path, key)
    if stored is None:
        rank, world = acc.process_index, acc.num_processes
        mine = list(range(rank, len(features), world))
        found = label_rows(
            model, [features[i] for i in mine], collate, acc.device,
            progress=progress and acc.is_main_process, layers=layers,
        )  # fmt: skip
        if world == 1:
            _write(path, {"key": key, "ids": ids, **found})
        else:
            _write(_part(path, rank), {"key": key, "rows": mine, **found})
            acc.wait_for_everyone()
            if acc.is_main_process:
                _write(path, {"key": key, "ids": ids, **_join(path, key, world, len(ids))})
            acc.wait_for_everyone()
            _part(path, rank).unlink(missing_ok=True)
        stored = _read(path, key)
        if stored is None:  # pragma: no cover - written just now by the main process
            raise OSError(f"the teacher's outputs in {path} could not be read back")
    if stored["ids"] != ids:  # pragma: no cover - the key covers the ids
        raise OSError(f"the teacher's outputs in {path} are for other rows")
    return TeacherOutputs(ids, stored["logits"], stored.get("cls"))


def _part(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.stem}.process{rank}{path.suffix}")


def _write(path: Path, content: dict) -> None:
    from lgtm.fileio import atomic_write

    buffer = io.BytesIO()
    torch.save(content, buffer)
    atomic_write(path, buffer.getvalue())


def _join(path: Path, key: str, world: int, rows: int) -> dict[str, torch.Tensor]:
    """The processes' parts of the outputs (:func:`_part`), put back in the rows' order."""
    parts = [_read(_part(path, rank), key) for rank in range(world)]
    if any(p is None for p in parts):  # pragma: no cover - written just now by each process
        raise OSError(f"a process's part of the teacher's outputs beside {path} is missing")
    out = {}
    for name in ("logits", "cls"):
        given = [p for p in parts if name in p and len(p["rows"])]
        if name == "cls" and not any(name in p for p in parts):
            continue
        if not given:  # no rows at all
            out[name] = parts[0][name]
            continue
        joined = given[0][name].new_zeros((rows, *given[0][name].shape[1:]))
        for p in given:
            joined[torch.tensor(p["rows"])] = p[name]
        out[name] = joined
    return out


def _read(path: Path, key: str) -> dict | None:
    """The stored outputs when ``path`` holds them under ``key``; None otherwise."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged file is recomputed  # noqa: BLE001
        return None
    return stored if isinstance(stored, dict) and stored.get("key") == key else None
