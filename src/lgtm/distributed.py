"""Data parallelism that is exactly the single-process algorithm on the global batch.

Every process holds both models whole and takes its share of each global batch. The methods
compute their gradients with ``torch.autograd.grad`` (not ``backward``), so PyTorch's
DistributedDataParallel never sees them; instead every gradient a method uses passes through
:func:`average`: one flattened all-reduce per gradient list, weighted by each process's number
of samples, so that the result is the gradient of the *global* mean loss even when the last
batch splits unevenly. Gradients that are part of a graph (meta distillation's pilot update)
pass through :func:`average_in_graph`, whose value is the global mean and whose derivative is
the process's own weighted share, so that a second backward followed by :func:`sum_up` gives the
exact global meta-gradient.

A process whose share of a global batch is empty (a last batch of one sample on two processes)
steps on a stand-in: one sample marked :data:`PADDING`, without a label, whose weight is 0
(:func:`samples_in`), so that every collective still lines up and the result is the
one-process result for any dataset size.

On one process (or without an initialised process group) every function here returns its input
unchanged, so single-process runs are bit for bit what they were.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from lgtm.errors import LgtmInputError

if TYPE_CHECKING:
    from accelerate import PartialState

Tensor = torch.Tensor


#: A batch's key marking a stand-in: a process whose share of the global batch is empty steps on
#: one sample so marked (its label dropped); it weighs nothing in any mean.
PADDING = "padding"

_STAND_IN = contextvars.ContextVar("lgtm_stand_in", default=False)


def samples_in(batch: Mapping[str, Tensor]) -> int:
    """This process's real samples in ``batch`` (0 for a :data:`PADDING` stand-in): the
    weight of its gradients in :func:`average`."""
    return 0 if PADDING in batch else int(batch["labels"].shape[0])


@contextlib.contextmanager
def step_on(batch: Mapping[str, Tensor]) -> Iterator[None]:
    """Within: whether this process's step batch is a stand-in (:func:`stand_in`)."""
    token = _STAND_IN.set(PADDING in batch)
    try:
        yield
    finally:
        _STAND_IN.reset(token)


_SHARED_ROWS = contextvars.ContextVar("lgtm_shared_rows", default=False)


@contextlib.contextmanager
def same_rows_everywhere() -> Iterator[None]:
    """Within: the rows at hand are the same on every process (a probe of tracked samples),
    so :func:`gather_rows` leaves them as they are."""
    token = _SHARED_ROWS.set(True)
    try:
        yield
    finally:
        _SHARED_ROWS.reset(token)


def stand_in() -> bool:
    """True inside :func:`step_on` a stand-in batch: this process's rows weigh nothing."""
    return _STAND_IN.get()


def world_size() -> int:
    """Number of processes of the initialised process group (1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def active() -> bool:
    """True when gradients must be combined across processes."""
    return world_size() > 1


def _flat_reduce(tensors: list[Tensor], extra: float | None) -> tuple[list[Tensor], Tensor | None]:
    """All-reduce (sum) ``tensors`` and the scalar ``extra`` as one flat buffer."""
    dtype = tensors[0].dtype if tensors else torch.float64
    device = tensors[0].device if tensors else torch.device("cpu")
    parts = [t.reshape(-1).to(dtype) for t in tensors]
    if extra is not None:
        parts.append(torch.tensor([extra], dtype=dtype, device=device))
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    total = flat[-1] if extra is not None else None
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view_as(t).to(t.dtype))
        start += t.numel()
    return out, total


def average(grads: Sequence[Tensor | None], samples: int) -> list[Tensor | None]:
    """``Σ_p n_p g_p / Σ_p n_p`` over processes ``p``, each holding ``grads`` ``g_p`` of its
    mean loss over its ``n_p = samples`` samples: the gradient of the global mean loss.

    ``None`` entries (parameters a loss does not reach) stay ``None``; they must be the same
    on every process. Detached results; on one process ``grads`` are returned as they are.
    """
    if not active():
        return list(grads)
    present = [g for g in grads if g is not None]
    reduced, total = _flat_reduce([g.detach() * samples for g in present], float(samples))
    it = iter(r / total for r in reduced)
    return [None if g is None else next(it) for g in grads]


def average_in_graph(grads: Sequence[Tensor | None], samples: int) -> list[Tensor | None]:
    """:func:`average`, kept differentiable: the value of each result is the global mean
    gradient, its derivative that of this process's weighted share ``n_p / N · g_p``.

    A function ``f`` of the results, differentiated here and then summed over processes
    (:func:`sum_up`), has the gradient of ``f`` of the global mean: the chain rule through a
    mean is the sum of the shares.
    """
    if not active():
        return list(grads)
    present = [g for g in grads if g is not None]
    reduced, total = _flat_reduce([g.detach() * samples for g in present], float(samples))
    share = samples / float(total)
    it = iter(r / total for r in reduced)
    return [None if g is None else next(it) + share * (g - g.detach()) for g in grads]


def sum_up(grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    """``Σ_p g_p``: the shares of one global gradient computed on each process."""
    if not active():
        return list(grads)
    present = [g for g in grads if g is not None]
    reduced, _ = _flat_reduce([g.detach() for g in present], None)
    it = iter(reduced)
    return [None if g is None else next(it) for g in grads]


class _GatherRows(torch.autograd.Function):
    """All processes' real rows in process order; backward: this process's own rows only,
    scaled by ``N / n_p`` (0 for a stand-in)."""

    @staticmethod
    def forward(ctx, x: Tensor, real: int) -> Tensor:  # noqa: ANN001
        counts = [x.new_zeros(1, dtype=torch.long) for _ in range(world_size())]
        dist.all_gather(counts, torch.tensor([real], dtype=torch.long, device=x.device))
        counts = [int(c) for c in counts]
        widest = max(counts)
        local = x.new_zeros((widest, *x.shape[1:]))
        local[:real] = x[:real]
        parts = [torch.empty_like(local) for _ in counts]
        dist.all_gather(parts, local.contiguous())
        ctx.real, ctx.rows = real, x.shape[0]
        ctx.offset = sum(counts[: dist.get_rank()])
        ctx.scale = sum(counts) / real if real else 0.0
        return torch.cat([part[:c] for part, c in zip(parts, counts, strict=True)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        own = grad[ctx.offset : ctx.offset + ctx.real] * ctx.scale
        rest = grad.new_zeros((ctx.rows - ctx.real, *grad.shape[1:]))
        return torch.cat([own, rest]), None


def gather_rows(x: Tensor) -> Tensor:
    """The rows of ``x`` ``[n_p, ...]`` of every process, concatenated in process order
    ``[N, ...]`` (a stand-in's row left out): for a statistic of the whole global batch inside
    a loss that :func:`average` combines with weights ``n_p / N`` (DIST's intra-class term).

    Differentiable: every process computes the same function ``f`` of the gathered rows, and
    the gradient reaching this process's rows is its own part of ``∂f`` times ``N / n_p``, so
    that the weighted average over processes is the gradient of ``f`` itself (exact to first
    order; a second derivative would miss the terms across processes). On one process, or
    within :func:`same_rows_everywhere`: ``x``.
    """
    if not active() or _SHARED_ROWS.get():
        return x
    return _GatherRows.apply(x, 0 if stand_in() else x.shape[0])


def global_sums(*counts: float) -> tuple[float, ...]:
    """Each of ``counts`` summed over processes (one all-reduce; as given on one process)."""
    if not active():
        return tuple(float(c) for c in counts)
    flat = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    dist.all_reduce(flat)
    return tuple(flat.tolist())


def from_main(value: object) -> object:
    """The main process's ``value`` on every process (one broadcast; ``value`` on one)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def global_mean(value: float, samples: int) -> float:
    """The mean over the global batch of a quantity whose mean over this process's ``samples``
    is ``value`` (a logged loss of a batch other than the step's, e.g. the feedback batch's);
    ``value`` itself on one process."""
    if not active():
        return float(value)
    total, count = global_sums(float(value) * samples, samples)
    return total / count if count else 0.0


def reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """The sum over processes of each number in ``values`` (every process gives the same keys)."""
    if not active() or not values:
        return dict(values)
    keys = sorted(values)
    flat = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(flat)
    return {k: float(v) for k, v in zip(keys, flat.tolist())}


# --------------------------------------------------------------------------- launching


def _env_int(name: str, default: int = 1) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _launcher_asked() -> int | None:
    """The ``--num_processes`` of an ``accelerate launch`` that started this process (Linux).

    ``accelerate launch --cpu --num_processes N`` runs one process whatever N is, and says
    nothing: the parent's command line is the only place the request is visible.
    """
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in argv if a]
    head = " ".join(args[:3])  # accelerate launch ... | python -m accelerate.commands.launch ...
    if "accelerate" not in head or "launch" not in head:
        return None
    for i, arg in enumerate(args):
        for flag in ("--num_processes", "--num-processes"):
            value = None
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            if value is not None:
                try:
                    return int(value)
                except ValueError:
                    return None
    return None


def use_cpu_backend() -> bool:
    """Whether Accelerate must be told ``cpu=True``: several processes and no GPU (gloo), or
    ``accelerate launch --cpu``. Without it Accelerate starts each of several CPU processes
    as if it were alone."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return _env_int("WORLD_SIZE") > 1 and not torch.cuda.is_available()


def check_launch(num_processes: int, distributed_type: str) -> None:
    """Refuse a launch whose processes would not know of each other, and the distributed
    set-ups lgtm does not support, with one line each (:class:`LgtmInputError`)."""
    world = _env_int("WORLD_SIZE")
    if world > 1 and num_processes != world:
        raise LgtmInputError(
            f"{world} processes were launched but they do not form one process group "
            f"({num_processes} seen): launch with `torchrun --nproc-per-node N -m lgtm.cli "
            "distill ...` or `accelerate launch --multi_gpu --num_processes N -m lgtm.cli ...`"
        )
    asked = _launcher_asked()
    if world == 1 and asked is not None and asked > 1:
        raise LgtmInputError(
            f"accelerate launch was asked for {asked} processes but started one (with --cpu it "
            "always does): use `accelerate launch --multi_gpu --num_processes "
            f"{asked} -m lgtm.cli distill ...` (gloo on CPU) or torchrun"
        )
    unsupported = {
        "FSDP": "FSDP sharding",
        "DEEPSPEED": "DeepSpeed",
        "MEGATRON_LM": "Megatron-LM",
        "XLA": "XLA/TPU",
    }
    kind = distributed_type.rsplit(".", 1)[-1]
    if kind in unsupported:
        raise LgtmInputError(
            f"{unsupported[kind]} is not supported: every process holds both models whole "
            "(plain data parallelism); launch without it"
        )
    steps = _env_int("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if steps > 1:
        raise LgtmInputError(
            f"gradient accumulation ({steps} steps) is not supported: each step of a teaching "
            "method updates the teacher from the student's look-ahead on that very batch; use "
            "a larger --batch-size over more processes instead"
        )


def process_state() -> PartialState:
    """Accelerate's view of this launch (created once per process), checked: several processes
    must form one process group (gloo on CPU), and the set-ups lgtm cannot honour are refused
    with one line (:func:`check_launch`)."""
    from accelerate import PartialState

    for variable, name in (
        ("ACCELERATE_USE_FSDP", "FSDP"),
        ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED"),
    ):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
            check_launch(1, name)  # refused before Accelerate tries to set it up
    state = PartialState(cpu=use_cpu_backend())
    check_launch(state.num_processes, str(state.distributed_type))
    return state


def mixed_precision(asked: str | None) -> str:
    """The mixed precision of a run: ``asked`` (``--mixed-precision``), else what
    ``accelerate launch --mixed_precision`` set, else ``"no"``. Raises
    :class:`LgtmInputError` for fp16 (its loss scaler works through ``backward``, which the
    methods bypass) and for a launcher that says otherwise than the flag."""
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
    chosen = asked or launcher or "no"
    if asked and launcher and launcher != "no" and launcher != asked:
        raise LgtmInputError(
            f"accelerate launch says --mixed_precision {launcher}, the run says {asked}: give "
            "it once, with --mixed-precision",
            field="mixed_precision",
        )
    if chosen == "fp16":
        raise LgtmInputError(
            "fp16 needs a loss scaler, and the teaching methods take their gradients with "
            "autograd.grad, which it does not see: use --mixed-precision bf16",
            field="mixed_precision",
        )
    if chosen not in ("no", "bf16"):
        raise LgtmInputError(
            f"{chosen!r} is not supported: use no or bf16", field="mixed_precision"
        )
    return chosen


def check_objective(objective: str, processes: int, second_order: bool) -> None:
    """DIST's intra-class term is gathered over processes (:func:`gather_rows`), exactly to
    first order; a method with second-order gradients (meta, lgtm-exact) would miss the terms
    that cross processes, so that pairing is refused on several processes
    (:class:`LgtmInputError`)."""
    if processes > 1 and objective == "dist" and second_order:
        raise LgtmInputError(
            "DIST's intra-class term is gathered over processes to first order only, and this "
            "method differentiates it twice: run it on one process, or use --objective kl",
            field="objective",
        )
