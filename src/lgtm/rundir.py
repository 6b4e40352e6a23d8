"""The output folder of a run: what it holds, whether it may be replaced, and its checkpoints.

A folder is in one of four states, and ``prepare_output_dir`` treats each its own way:

- **empty or new**: the run starts (the folder is created and checked writable first, before
  anything heavy loads);
- **finished** (``metrics.json``): refused unless ``--overwrite``;
- **unfinished with a checkpoint**: refused with the hint ``--resume`` (or ``--overwrite``);
- **unfinished without a checkpoint** (the run died before saving anything it could continue
  from): the same command replaces it, with a notice, unless a live process still runs in it.

A run holds its folder from its first moment (:func:`take_lock`: an OS lock on
``.lgtm-running``, dropped by the system when the process ends, so it is never stale); no other
process clears or writes a held folder.

Checkpoints are written to a temporary folder with a manifest of their files' sizes and
digests, then renamed; the last two are kept, so that a damaged newest one (a truncated,
missing or corrupted file) makes ``--resume`` fall back to the one before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lgtm.errors import LgtmInputError, LgtmWriteError
from lgtm.fileio import atomic_write, write_failure, writing

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
LOCK = ".lgtm-running"
KEEP_CHECKPOINTS = 2
# folder (resolved) -> descriptor of the lock this process holds (None: its launch's main
# process holds it for all the launch's processes)
_HELD: dict[Path, int | None] = {}
# What marks a folder as holding a run (refused unless --overwrite or --resume).
RUN_MARKERS = ("config.yaml", "metrics.json", CHECKPOINTS, "student", "teacher", "influence.jsonl")
# What --overwrite removes (nothing else in the folder is touched).
SELECTED = "student-selected"  # the best student on the selection set so far (--select-on)
ANCHORS = "anchors"  # rco's snapshots of the teacher's route
TEACHER_OUTPUTS = "teacher_outputs"  # a frozen teacher's cached outputs (lgtm.teacher_cache)
RUN_OUTPUTS = (*RUN_MARKERS, "plots", "tensorboard", SELECTED, ANCHORS, TEACHER_OUTPUTS)
RUN_OUTPUTS += ("lr-search",)  # --lr auto: its study (lgtm.tune.auto.LR_SEARCH)


def holds_run(folder: Path) -> bool:
    """True when ``folder`` already holds (part of) an lgtm run."""
    return folder.is_dir() and any((folder / name).exists() for name in RUN_MARKERS)


def checkpoints(folder: Path) -> list[Path]:
    """The run's renamed (so fully written, unless damaged since) checkpoints, newest first."""
    root = folder / CHECKPOINTS
    if not root.is_dir():
        return []
    done = (p for p in root.iterdir() if p.is_dir() and p.name.startswith("ckpt-"))
    return sorted(done, reverse=True)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint of a run, damaged or not (``None`` when there is none)."""
    found = checkpoints(folder)
    return found[0] if found else None


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(checkpoint: Path) -> None:
    """Record the size and a BLAKE2 digest of every file of a just-written checkpoint (the
    manifest is written last)."""
    files = {
        str(p.relative_to(checkpoint)): [p.stat().st_size, _digest(p)]
        for p in sorted(checkpoint.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    atomic_write(checkpoint / MANIFEST, json.dumps(files, indent=1))


def damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint's files (``None``: all there, with their recorded sizes
    and digests).

    A checkpoint without a manifest (written by lgtm 0.1) is taken as it is."""
    manifest = checkpoint / MANIFEST
    if not manifest.is_file():
        return None
    try:
        sizes = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{manifest}: unreadable manifest"
    for name, recorded in sizes.items():
        size, digest = recorded if isinstance(recorded, list) else (recorded, None)
        path = checkpoint / name
        if not path.is_file():
            return f"{path}: missing"
        if path.stat().st_size != size:
            return f"{path}: {path.stat().st_size} bytes, {size} when written (truncated?)"
        if digest is not None and _digest(path) != digest:
            return f"{path}: its content changed since it was written (corrupted)"
    return None


def prune_checkpoints(folder: Path) -> None:
    """Delete all but the newest ``KEEP_CHECKPOINTS`` checkpoints and any temporary folder."""
    root = folder / CHECKPOINTS
    keep = set(checkpoints(folder)[:KEEP_CHECKPOINTS])
    for path in root.iterdir():
        if path.is_dir() and path not in keep:
            shutil.rmtree(path)


def remove_teacher_outputs(folder: Path, stages: Iterable[str]) -> None:
    """Delete the frozen teachers' cached outputs of ``stages`` (``teacher_outputs/STAGE.pt``)
    and the folder when nothing else is left in it (a user's files there stay)."""
    cache = folder / TEACHER_OUTPUTS
    for stage in stages:
        (cache / f"{stage}.pt").unlink(missing_ok=True)
    if cache.is_dir() and not any(cache.iterdir()):
        cache.rmdir()


def _holder(path: Path) -> str:
    """Who holds the lock file ``path``, as its holder wrote it (pid, and host if not this)."""
    try:
        pid, host = (path.read_text(encoding="utf-8").split("\n") + ["", ""])[:2]
    except OSError:
        return "another process"
    if not pid.strip():
        return "another process"
    return f"process {pid}" + ("" if host in ("", socket.gethostname()) else f" on {host}")


def take_lock(folder: Path, *, field: str = "output_dir", main_holds: bool = False) -> None:
    """Hold ``folder`` for this process until :func:`release_lock` or the process's end.

    An exclusive ``flock`` on ``folder/.lgtm-running`` (which records the holder's pid and
    host): the operating system drops it when the process ends, killed or not, so a lock is
    never stale. Taken again by the same process, it is held once. The folder is created and
    checked writable first. ``main_holds``: the main process of this launch holds it for this
    one (nothing is locked here). Raises :class:`LgtmInputError` (``field`` names the option
    that gave the folder) when another live process holds it, or the folder cannot be written.
    """
    folder = Path(folder)
    if folder.resolve() in _HELD:
        return
    if main_holds:
        _HELD[folder.resolve()] = None
        return
    ensure_writable(folder)
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = ", or choose another --output-dir" if field == "output_dir" else ""
            raise LgtmInputError(
                f"a live run holds this folder ({_holder(path)}): wait for it to end or stop "
                f"it{other}",
                file=folder,
                field=field,
            ) from None
        except OSError as err:  # a file system without locks (some network ones): said, not hidden
            print(
                f"lgtm: warning: {folder}: this file system cannot lock files "
                f"({err.strerror}): a second run into this folder would not be refused",
                file=sys.stderr,
            )
            break
        try:  # the holder before may have removed the file between our open and our lock
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{socket.gethostname()}\n".encode())
    _HELD[folder.resolve()] = fd


def live_holder(folder: Path) -> str | None:
    """Who holds ``folder`` (see :func:`take_lock`), if another live process does."""
    path = Path(folder) / LOCK
    if Path(folder).resolve() in _HELD or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    finally:
        os.close(fd)  # drops the shared lock, if taken
    return None


def release_lock(folder: Path) -> None:
    """Give ``folder`` up (nothing happens when this process does not hold it)."""
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is None:  # not held, or held by the main process of this launch
        return
    with contextlib.suppress(OSError):
        (Path(folder) / LOCK).unlink()  # still held: no one else can have replaced it
    os.close(fd)


@contextlib.contextmanager
def holding(folder: Path, *, field: str = "output_dir") -> Iterator[None]:
    """:func:`take_lock` for the ``with`` block (released on the way out, however it ends)."""
    held = Path(folder).resolve() in _HELD
    take_lock(folder, field=field)
    try:
        yield
    finally:
        if not held:
            release_lock(folder)


def ensure_writable(out: Path) -> None:
    """Create ``out`` (and its parents) and check a file can be written in it.

    Raises :class:`LgtmInputError` naming the folder and the reason when it cannot.
    """
    if out.exists() and not out.is_dir():
        raise LgtmInputError("output path exists and is not a folder", file=out, field="output_dir")
    probe = out / f".lgtm-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise LgtmInputError(
            f"cannot write the run's outputs here: {reason}", file=out, field="output_dir"
        ) from None


def prepare_output_dir(
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    clear: bool = True,
    say: Callable[[str], None] | None = None,
) -> tuple[Path, list[Path]]:
    """Check ``out`` against ``--overwrite`` / ``--resume`` (see the module's docstring).

    Returns the folder and the checkpoints to resume from, newest first (empty: start
    afresh). With ``clear``, a run being replaced has its outputs removed (only those: other
    files in the folder stay); ``say`` prints its notice. Raises :class:`LgtmInputError` when
    the folder cannot be used.
    """
    ensure_writable(out)
    holder = live_holder(out)
    if holder is not None:  # even with --overwrite: two runs must never share a folder
        raise LgtmInputError(
            f"a live run holds this folder ({holder}): wait for it to end or stop it, or "
            "choose another --output-dir",
            file=out,
            field="output_dir",
        )
    found = checkpoints(out)
    finished = (out / "metrics.json").exists()
    if resume:
        if not found and finished:
            raise LgtmInputError(
                "this run is already finished: nothing to resume "
                "(pass --overwrite to run it again)",
                file=out,
                field="output_dir",
            )
        return out, found
    if not holds_run(out):
        return out, []
    if not overwrite:
        if finished:
            raise LgtmInputError(
                "output directory already holds a finished run: pass --overwrite to replace it",
                file=out,
                field="output_dir",
            )
        if found:
            raise LgtmInputError(
                "output directory holds an unfinished run with a checkpoint: pass --resume to "
                "continue it, or --overwrite to replace it",
                file=out,
                field="output_dir",
            )
        if clear and say is not None:
            say(f"lgtm: {out} held a run that stopped before its first checkpoint: replacing it")
    if clear:
        for name in RUN_OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return out, []


def replace_dir(tmp: Path, final: Path) -> None:
    """Put a fully written folder in place (a rename: readers never see half of it); a folder
    already at ``final`` is first moved aside to a fresh name (no other folder is touched)."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
        final.rename(old)  # onto the empty folder just made
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    """``save_pretrained`` model + tokenizer, written to a temporary folder then renamed.

    Raises :class:`LgtmWriteError` naming ``folder`` when the disk refuses the write; the
    temporary folder is removed and a model already at ``folder`` is left as it was."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    try:
        with writing(folder, "the model"), no_progress_bars():
            if tmp.exists():
                shutil.rmtree(tmp)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' progress bars ("Writing model shards") off for the ``with`` block."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def kept(out: Path) -> str:
    """What of the run in ``out`` is still good after a failed write, and how to go on."""
    last = latest_checkpoint(out)
    if last is None:
        return "no checkpoint had been written yet: make room and run again"
    return f"the last complete checkpoint is kept ({last}): make room and continue with --resume"


def failed_write(err: BaseException, out: Path) -> LgtmWriteError | None:
    """``err`` as the one-line :class:`LgtmWriteError` of a run in ``out`` (naming what could
    not be written and what is kept) when it is a write the file system refused; else None."""
    if isinstance(err, LgtmWriteError):
        return err if err.kept is not None else err.keeping(kept(out))
    if not isinstance(err, OSError) or write_failure(err) is None:
        return None
    target = Path(err.filename) if err.filename else out
    if out.absolute() not in (target.absolute(), *target.absolute().parents):
        return None  # not a write of this run (an input it could not read)
    failure = LgtmWriteError(f"cannot write it: {write_failure(err)}", file=target)
    return failure.keeping(kept(out))
