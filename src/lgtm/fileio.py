"""Writing files so that a reader never sees half of one: the one atomic-write helper.

Every file a run writes whole (metrics.json, config.yaml, predictions, a rewritten influence
log, plots, the teacher's cached outputs) goes through :func:`atomic_write`: a temporary file in
the same folder, flushed and fsynced, then ``os.replace`` over the target. A write that fails (a
full disk, an interrupt) leaves the old file, or none, and no temporary file behind.

A write that fails for want of room or permission (:func:`write_failure`) is raised as
:class:`~lgtm.errors.LgtmWriteError` naming the file (:func:`writing` does so for any block).
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lgtm.errors import LgtmInputError, LgtmWriteError

# What a write that the file system refuses raises (a full disk, a read-only one, no
# permission, a quota or file size limit).
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
)
NEARLY_FULL = 1 << 20  # bytes free below which a failed write is put down to a full disk


def write_failure(err: BaseException, path: str | os.PathLike[str] | None = None) -> str | None:
    """Why writing failed, when ``err`` comes of a file system that refuses writes; else None.

    Read from ``err`` and its causes (an ``OSError`` with one of ``WRITE_ERRNOS``, or a library
    error quoting its message: safetensors does), else, for errors that say nothing (torch.save
    on a full disk raises "unexpected pos"), from the file system of ``path``: read-only, or
    less than ``NEARLY_FULL`` bytes free.
    """
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in WRITE_ERRNOS:
            return os.strerror(cause.errno)
        for code in WRITE_ERRNOS:
            if os.strerror(code).lower() in str(cause).lower():
                return os.strerror(code)
        cause = cause.__cause__ or cause.__context__
    if path is None or not isinstance(err, OSError | RuntimeError):
        return None
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        disk = os.statvfs(where)
    except OSError:
        return None
    if disk.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if disk.f_bavail * disk.f_frsize < NEARLY_FULL:
        return os.strerror(errno.ENOSPC)
    return None


@contextmanager
def writing(path: str | os.PathLike[str], what: str = "it") -> Iterator[None]:
    """Raise a write refused by the file system inside the block (see :func:`write_failure`)
    as :class:`~lgtm.errors.LgtmWriteError`: ``PATH: cannot write WHAT: REASON``. Other
    errors pass unchanged."""
    try:
        yield
    except LgtmInputError:
        raise
    except Exception as err:
        reason = write_failure(err, path)
        if reason is None:
            raise
        raise LgtmWriteError(f"cannot write {what}: {reason}", file=path) from None


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text is encoded as UTF-8) to ``path`` atomically; return the path.

    Raises :class:`~lgtm.errors.LgtmWriteError` when the file system refuses the write (full,
    read-only, no permission), ``OSError`` for other failures; either way the old file, or
    none, is left as it was, and no temporary file."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
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
