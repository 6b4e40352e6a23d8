"""Data parallelism is exactly the single-process algorithm on the global batch.

Two processes (gloo, spawned here) each take their share of every global batch (rows
``rank::2``, as the training loop's ``Batches`` does; 5 rows split 3 / 2, so the shares are
unequal, and a batch of 1 row leaves the second process a stand-in that weighs nothing); after
3 steps of every method they must hold bit-identical models, equal to one process's on the
whole batches. Float64 tiny BERTs, dropout off, SGD and AdamW; DIST gathered over processes.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import make_batch, tiny_bert

import lgtm
from lgtm.batches import stand_in
from lgtm.train import TeacherFinetune

METHODS = ["teacher-finetune", "kd", "online", "meta", "lgtm", "lgtm-exact"]
METHODS += ["ce", "pkd", "dml", "prokt", "pesf"]
GLOBAL_BATCHES, FEEDBACK_BATCHES, WORLD = (5, 1, 4), (5, 3, 1), 2  # 1 row: one process idle
STEPS = len(GLOBAL_BATCHES)
#: DIST's intra-class term gathered across processes: the first-order methods (meta and
#: lgtm-exact, which differentiate it twice, refuse it on several processes).
DIST_METHODS = ["kd", "online", "lgtm", "pkd", "dml", "prokt", "pesf"]


def shard(batch: dict, rank: int, world: int) -> dict:
    """This process's rows ``rank::world``, or the loop's stand-in when there are none."""
    share = {k: v[rank::world] for k, v in batch.items()}
    if len(share["labels"]) == 0:
        return stand_in({k: v[:1] for k, v in batch.items()})
    return share


def named_parameters(teacher, student) -> dict[str, torch.Tensor]:
    named = {f"teacher.{n}": p for n, p in teacher.named_parameters()}
    named.update({f"student.{n}": p for n, p in student.named_parameters()})
    return {n: p.detach().clone() for n, p in named.items()}


def train_steps(
    method_name: str, optimizer: str, rank: int, world: int, objective: str = "kl"
) -> tuple[dict, dict]:
    """Both models' parameters before and after STEPS steps on this process's shares."""
    teacher, student = tiny_bert(2, seed=0), tiny_bert(1, seed=1)
    extra = {"pkd": {"pkd_layers": "1:2"}, "pesf": {"pesf_rank": 2}}.get(method_name, {})
    if method_name == "pesf":
        from lgtm.methods.pesf import wrap_teacher

        teacher = wrap_teacher(teacher, rank=2)
        with torch.no_grad():  # move the adapter off B = 0, so that A learns too
            for name, p in teacher.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)

    def opt(model, lr):
        params = [p for p in model.parameters() if p.requires_grad]
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr)
        return torch.optim.AdamW(params, lr=lr * 0.1, weight_decay=0.01)

    before = named_parameters(teacher, student)
    opt_t, opt_s = opt(teacher, 0.2), opt(student, 0.3)
    if method_name == "teacher-finetune":
        method = TeacherFinetune(teacher, opt_t)
    else:
        frozen = method_name in ("kd", "pkd", "ce")
        method = lgtm.make_method(
            method_name,
            teacher=teacher,
            student=student,
            student_optimizer=opt_s,
            teacher_optimizer=None if frozen else opt_t,
            alpha=0.7,
            temperature=2.0,
            objective=objective,
            **extra,
        )
    for step in range(STEPS):
        batch = shard(make_batch(GLOBAL_BATCHES[step], seed=10 + step), rank, world)
        feedback = shard(make_batch(FEEDBACK_BATCHES[step], seed=20 + step), rank, world)
        method.step(batch, feedback)
    return before, named_parameters(teacher, student)


def _worker(rank: int, store: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        out = {(m, o): train_steps(m, o, rank, WORLD) for m in METHODS for o in ("sgd", "adamw")}
        for m in DIST_METHODS:
            out[(m, "dist")] = train_steps(m, "adamw", rank, WORLD, "dist")
        torch.save(out, os.path.join(results, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(folder / "store"), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


def relative_error(a: dict, b: dict, start: dict) -> float:
    """‖a − b‖ relative to how far ``b`` moved from ``start`` (all parameters as one vector)."""
    num = sum(float((a[n] - b[n]).pow(2).sum()) for n in a) ** 0.5
    den = sum(float((b[n] - start[n]).pow(2).sum()) for n in a) ** 0.5
    return num / den


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("method", METHODS)
def test_two_processes_equal_one_on_the_global_batch(two_process_results, method, optimizer):
    rank0, rank1 = (r[(method, optimizer)][1] for r in two_process_results)
    assert all(torch.equal(rank0[n], rank1[n]) for n in rank0), "the processes disagree"
    start, single = train_steps(method, optimizer, rank=0, world=1)
    assert sum(float((single[n] - start[n]).abs().max()) for n in start) > 1e-3  # it moved
    tolerance = 1e-8 if method == "lgtm" else 1e-10  # lgtm: a finite difference divides by ε
    error = relative_error(rank0, single, start)
    print(f"{method} {optimizer}: relative difference to one process {error:.2e}")
    assert error < tolerance


@pytest.mark.parametrize("method", DIST_METHODS)
def test_dist_on_two_processes_equals_one(two_process_results, method):
    """DIST's intra-class Pearson distance over the global batch, its rows gathered."""
    rank0, rank1 = (r[(method, "dist")][1] for r in two_process_results)
    assert all(torch.equal(rank0[n], rank1[n]) for n in rank0), "the processes disagree"
    start, single = train_steps(method, "adamw", rank=0, world=1, objective="dist")
    _, kl = train_steps(method, "adamw", rank=0, world=1)
    assert relative_error(kl, single, start) > 1e-3  # dist is not kl here
    tolerance = 1e-8 if method == "lgtm" else 1e-9  # the gathered Pearson's sums: other order
    error = relative_error(rank0, single, start)
    print(f"{method} dist: relative difference to one process {error:.2e}")
    assert error < tolerance


def test_launch_and_batch_checks(monkeypatch):
    from lgtm import distributed
    from lgtm.errors import LgtmInputError

    with pytest.raises(LgtmInputError, match="differentiates it twice"):
        distributed.check_objective("dist", 2, second_order=True)
    distributed.check_objective("dist", 2, second_order=False)
    distributed.check_objective("dist", 1, second_order=True)
    distributed.check_objective("kl", 8, second_order=True)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert distributed.mixed_precision(None) == "bf16"  # the launcher's choice is kept
    with pytest.raises(LgtmInputError, match="give it once"):
        distributed.mixed_precision("no")  # contradicted by the flag
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    assert distributed.mixed_precision(None) == "no"
    with pytest.raises(LgtmInputError, match="use --mixed-precision bf16"):
        distributed.mixed_precision("fp16")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LgtmInputError, match="do not form one process group"):
        distributed.check_launch(1, "DistributedType.NO")
    distributed.check_launch(2, "DistributedType.MULTI_CPU")
    with pytest.raises(LgtmInputError, match="FSDP sharding is not supported"):
        distributed.check_launch(2, "DistributedType.FSDP")
