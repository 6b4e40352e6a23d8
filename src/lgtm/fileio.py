"""Writing files so that a reader never sees half of one: the one atomic-write helper.

Every file a run writes whole (metrics.json, config.yaml, predictions, a rewritten influence
log) goes through :func:`atomic_write`: a temporary file in the same folder, flushed and
fsynced, then ``os.replace`` over the target. A write that fails (a full disk, an interrupt)
leaves the old file, or none, and no temporary file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text is encoded as UTF-8) to ``path`` atomically; return the path.

    Raises ``OSError`` from the file system (nothing is left half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON values: tuples and sets as lists, numpy/torch scalars and arrays
    as Python numbers and lists, paths as strings, non-finite floats as ``None`` (NaN is not
    valid JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return plain(obj.tolist())
    if hasattr(obj, "item"):
        return plain(obj.item())
    return str(obj)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` (through :func:`plain`) as indented JSON to ``path`` atomically."""
    text = json.dumps(plain(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write(path, text)
