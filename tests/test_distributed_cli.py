"""``lgtm distill`` on two CPU processes (torchrun, gloo), end to end on real SST-2 rows.

The saved student equals one process's within float32 reduction error, a run killed under two
processes resumes to the numbers of an uninterrupted one, bf16 autocast keeps the influence
within a few percent of float32, and launches lgtm cannot honour are refused with one line.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, bundled_tokenizer, make_batch, save_tiny_bert, tiny_bert
from safetensors.torch import load_file

import lgtm
from lgtm import cli, rundir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torchrun on Linux")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
    )
    for key in [k for k in env if k.startswith("ACCELERATE_") or k in ("WORLD_SIZE", "RANK")]:
        del env[key]
    return env


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny BERT without dropout (so one process and two draw no different masks)."""
    folder = save_tiny_bert(
        tmp_path_factory.mktemp("ddp-teacher"), layers=2, tokenizer=bundled_tokenizer()
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def distill_args(glue_dir: Path, teacher: Path, out: Path, *more: str) -> list[str]:
    return [
        "distill",
        "--task",
        "sst2",
        "--data-dir",
        str(glue_dir / "SST-2"),
        "--teacher",
        str(teacher),
        "--student-layers",
        "1",
        "--method",
        "lgtm",
        "--max-train-samples",
        "80",
        "--max-eval-samples",
        "32",
        "--max-length",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--quiet",
        "--output-dir",
        str(out),
        *more,
    ]


def torchrun(args: list[str], **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["-m", "lgtm.cli", *args]
    return subprocess.Popen(
        command,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


#: ``lgtm ARGS`` for each ARGS of a JSON list, in this one process (stops at a failure).
SCRIPT = """
import json, sys
from lgtm import cli
for args in json.loads(sys.argv[1]):
    status = cli.main(args)
    if status:
        sys.exit(status)
"""


@pytest.fixture(scope="module")
def two_process_runs(glue_dir, teacher_dir, tmp_path_factory) -> Path:
    """Every two-process run the tests below compare with one process's, in one torchrun
    launch (one start of torch and transformers in each process, not one a run): the plain
    run (``run``), the transfer-set runs (``transfer-<method>``), the tuning study
    (``tune``), the weighted kd run (``weighted``) and every method on an uneven split
    (``uneven/<method>``)."""
    folder = tmp_path_factory.mktemp("two")
    runs = [distill_args(glue_dir, teacher_dir, folder / "run")]
    for method in TRANSFER_METHODS:
        out = folder / f"transfer-{method}"
        runs.append([*distill_args(glue_dir, teacher_dir, out), *transfer_args(method)])
    runs.append([*tune_args(glue_dir, teacher_dir), "--output-dir", str(folder / "tune")])
    runs.append([*distill_args(glue_dir, teacher_dir, folder / "weighted"), *WEIGHTED])
    for method in lgtm.METHOD_NAMES:
        runs.append(uneven_args(glue_dir, teacher_dir, folder / "uneven" / method, method))
    script = folder / "runs.py"
    script.write_text(SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*command, str(script), json.dumps([[str(a) for a in args] for args in runs])],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def two_process_run(two_process_runs) -> Path:
    return two_process_runs / "run"


def weights(run: Path, model: str) -> dict[str, torch.Tensor]:
    return load_file(run / model / "model.safetensors")


def relative(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a) ** 0.5
    return num / sum(float(b[k].double().pow(2).sum()) for k in a) ** 0.5


def same_history(m1: dict, m2: dict, keys: tuple[str, ...], abs: float) -> None:
    """Both runs log the same ``keys`` at the same steps, equal within float32 reduction error
    (``abs`` for values near 0)."""
    for a, b in zip(m1["history"], m2["history"], strict=True):
        for key in keys:
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=abs)


def test_two_processes_save_the_student_of_one(glue_dir, teacher_dir, two_process_run, tmp_path):
    one = tmp_path / "one"
    status = cli.main(distill_args(glue_dir, teacher_dir, one))
    assert status == 0
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two_process_run / "metrics.json").read_text())
    assert (m1["num_processes"], m2["num_processes"]) == (1, 2)
    assert (m1["backend"], m2["backend"]) == (None, "gloo")
    assert m2["mixed_precision"] == "no" and m2["train_samples"] == m1["train_samples"] == 72
    for model in ("student", "teacher"):
        error = relative(weights(two_process_run, model), weights(one, model))
        print(f"{model}: relative difference 2 vs 1 process {error:.1e}")
        assert error < 1e-6
    # the logged losses and influence are over all processes' samples, as on one process
    for a, b in zip(m1["history"], m2["history"]):
        for key in ("student_loss", "teacher_loss", "influence_mean"):
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=2e-8)  # float32 KL ~ 0
    assert m2["samples_per_second"] > 0 and len((two_process_run / "influence.jsonl").read_text())


def test_resume_after_a_kill_under_two_processes(glue_dir, teacher_dir, two_process_run, tmp_path):
    out = tmp_path / "killed"
    args = distill_args(glue_dir, teacher_dir, out, "--save-steps", "1")
    process = torchrun(args)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "ckpt-00000007").exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    import psutil

    launcher = psutil.Process(process.pid)
    tree = [*launcher.children(recursive=True), launcher]
    for proc in tree:  # the launcher and both workers, mid-run
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    process.wait()
    assert not (out / "metrics.json").exists()
    finish(torchrun([*args, "--resume"]))
    whole = json.loads((two_process_run / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["history"] == whole["history"] and resumed["student"] == whole["student"]
    for model in ("student", "teacher"):
        a, b = weights(out, model), weights(two_process_run, model)
        assert all(torch.equal(a[k], b[k]) for k in a)


TRANSFER_METHODS = ["lgtm", "kd"]


def transfer_args(method: str) -> list[str]:
    """A run with a transfer set, added to :func:`distill_args`."""
    more = [
        "--method",
        method,
        "--max-train-samples",
        "56",  # 50 to train on, after the feedback set: batches of 8 end with one of 2
        "--transfer-from-train",
        "--max-transfer-samples",
        "30",
        "--transfer-batch-size",
        "5",  # split 3 + 2: the processes' shares of labelled samples differ
        "--epochs",
        "1",
        "--alpha",
        "0.5",  # the student's label term counts
        "--teacher-epochs",
        "1",
    ]
    if method == "lgtm":
        more = more[:-2]  # its teacher learns jointly: no stage one
    return more


@pytest.mark.parametrize("method", TRANSFER_METHODS)
def test_two_processes_with_a_transfer_set_save_the_student_of_one(
    method, glue_dir, teacher_dir, two_process_runs, tmp_path
):
    """Labelled and transfer samples split across processes; label terms averaged over the
    labelled samples of the global batch (the labelled stream's last batch holds 2 of 8)."""
    one, two = tmp_path / "one", two_process_runs / f"transfer-{method}"
    assert cli.main([*distill_args(glue_dir, teacher_dir, one), *transfer_args(method)]) == 0
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert m1["transfer"]["rows"] == m2["transfer"]["rows"] == 30
    assert m2["num_processes"] == 2
    for model in ("student", "teacher"):
        error = relative(weights(two, model), weights(one, model))
        print(f"{method} {model}: relative difference 2 vs 1 process {error:.1e}")
        assert error < 1e-6, (model, error)
    for a, b in zip(m1["history"], m2["history"]):
        for key in ("student_loss", "teacher_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=2e-8)


#: kd with the influence weighting on the student (issue #22); 50 rows in batches of 8, so
#: the last batch is uneven; rates large enough that the influence stands above float noise.
WEIGHTED = ["--method", "kd", "--student-weighting", "influence", "--alpha", "0.2"]
WEIGHTED += ["--max-train-samples", "56", "--epochs", "1", "--teacher-epochs", "2"]
WEIGHTED += ["--track-steps", "2", "--lr", "5e-3", "--teacher-lr", "5e-3"]


def test_two_processes_weigh_as_one(glue_dir, teacher_dir, two_process_runs, tmp_path):
    """λ's normaliser and the weighted sum run over the global batch: kd with the weighting on
    two processes saves one process's student, logs its kept shares and tracked λ."""
    from lgtm.report import read_influence

    one, two = tmp_path / "one", two_process_runs / "weighted"
    assert cli.main([*distill_args(glue_dir, teacher_dir, one), *WEIGHTED]) == 0
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert (m1["num_processes"], m2["num_processes"]) == (1, 2)
    for model in ("student", "teacher"):
        error = relative(weights(two, model), weights(one, model))
        assert error < 1e-6, (model, error)
    same_history(m1, m2, ("student_loss", "weights_kept", "influence_mean"), abs=1e-7)
    kept = [h["weights_kept"] for h in m1["history"] if "weights_kept" in h]
    assert max(kept) > 0 and min(kept) < 1  # batches kept, and batches dropped
    r1, r2 = (read_influence(d / "influence.jsonl") for d in (one, two))
    assert len(r1) == len(r2) > 0
    assert len({round(r["weight"], 6) for r in r1}) > 2  # λ differ between samples
    for a, b in zip(r1, r2, strict=True):
        assert b["weight"] == pytest.approx(a["weight"], rel=1e-3, abs=1e-6)
        assert b["weights_kept"] == pytest.approx(a["weights_kept"])


def test_bf16_autocast_keeps_the_influence_within_a_few_percent():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # an earlier test's run may have set another precision
    acc = Accelerator(cpu=True, mixed_precision="bf16")
    batch = {k: v.float() if v.is_floating_point() else v for k, v in make_batch(16, 0).items()}
    feedback = {k: v.float() if v.is_floating_point() else v for k, v in make_batch(16, 1).items()}
    for seed in range(3):
        teacher = tiny_bert(2, seed, dtype=torch.float32)
        student = tiny_bert(1, seed + 10, dtype=torch.float32)
        influence = {}
        for mode in ("fp32", "bf16"):
            t, s = copy.deepcopy(teacher), copy.deepcopy(student)
            if mode == "bf16":  # as the training loop prepares them
                t = acc.prepare_model(t, evaluation_mode=True)
                s = acc.prepare_model(s, evaluation_mode=True)
            method = lgtm.make_method(
                "lgtm",
                teacher=t,
                student=s,
                teacher_optimizer=torch.optim.AdamW(t.parameters(), 1e-3),
                student_optimizer=torch.optim.AdamW(s.parameters(), 1e-3),
            )
            influence[mode] = method.step(batch, feedback)["influence"].double()
        w32, w16 = influence["fp32"], influence["bf16"]
        assert torch.isfinite(w16).all() and w16.dtype == torch.float64
        error = float((w16 - w32).norm() / w32.norm())
        print(f"seed {seed}: bf16 influence within {error:.1%} of float32")
        assert 0 < error < 0.05  # not zero: the forwards did run in bf16


def test_bf16_run_end_to_end_is_finite_and_recorded(glue_dir, teacher_dir, tmp_path, capsys):
    out = tmp_path / "bf16"
    status = cli.main(
        distill_args(glue_dir, teacher_dir, out, "--mixed-precision", "bf16", "--epochs", "1")
    )
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mixed_precision"] == "bf16"
    assert all(torch.isfinite(v).all() for v in weights(out, "student").values())


def one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.startswith("lgtm: error:")]
    assert len(lines) >= 1 and "Traceback" not in output, output
    return lines[0]


def test_launches_that_cannot_be_honoured_are_refused(glue_dir, teacher_dir, tmp_path):
    args = distill_args(glue_dir, teacher_dir, tmp_path / "o")
    # accelerate launch --cpu runs one process, whatever --num_processes says
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes"]
    command += ["2", "-m", "lgtm.cli", *args]
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=300)
    # lgtm exits 2 with one line; accelerate launch then reports its child's status its own way
    assert "returned non-zero exit status 2" in done.stderr, done.stdout + done.stderr
    line = [x for x in done.stderr.splitlines() if x.startswith("lgtm: error:")][0]
    assert "asked for 2 processes but started one" in line and "--multi_gpu" in line
    # fp16, gradient accumulation and sharding: one line each, before anything is written.
    # One process runs them all, each in the environment of its own launch: sharding first,
    # as lgtm refuses it before Accelerate's process state exists; the others are read
    # from the environment whether or not that state exists already.
    cases = [
        ({"ACCELERATE_USE_FSDP": "true"}, [], "FSDP sharding is not supported"),
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, [], "DeepSpeed is not supported"),
        ({}, ["--mixed-precision", "fp16"], "use --mixed-precision bf16"),
        ({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"}, [], "gradient accumulation (4 steps)"),
        ({"ACCELERATE_MIXED_PRECISION": "fp16"}, [], "use --mixed-precision bf16"),
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LAUNCHES,
            json.dumps([[env, args + more] for env, more, _ in cases]),
        ],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(results) == len(cases), done.stdout
    for (env, more, message), (status, err) in zip(cases, results, strict=True):
        assert status == 2, (env, more, err)
        assert message in one_line(err), (env, more, err)
    assert not (tmp_path / "o").exists()


#: ``lgtm ARGS`` in the environment ENV, for each (ENV, ARGS) of a JSON list, in this one
#: process: one line ``[exit status, stderr]`` each.
LAUNCHES = """
import contextlib, io, json, os, sys
from lgtm import cli
for env, args in json.loads(sys.argv[1]):
    os.environ.update(env)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(args)
    for key in env:
        del os.environ[key]
    print(json.dumps([status, err.getvalue()]), flush=True)
"""


def tune_args(glue_dir: Path, teacher: Path) -> list[str]:
    """``lgtm tune`` of ce's lr, 3 trials, without ``--output-dir``."""
    args = distill_args(glue_dir, teacher, Path("x"), "--method", "ce")
    args = [a for a in args if a not in ("distill", "--output-dir", "x")]
    tune = ["tune", *args, "--trials", "3", "--selection-fraction", "0.25", "--eval-steps", "4"]
    return [*tune, "--search", "lr=1e-4:1e-1:log"]


def test_tune_on_two_processes_runs_the_trials_of_one(
    glue_dir, teacher_dir, two_process_runs, tmp_path, capsys
):
    """``torchrun --nproc-per-node 2 lgtm tune``: the main process draws each trial and its
    pruning decisions, both processes run it; the trials equal the one-process study's."""
    status = cli.main([*tune_args(glue_dir, teacher_dir), "--output-dir", str(tmp_path / "one")])
    assert status == 0, capsys.readouterr().err

    def trials(folder: Path) -> list[tuple]:
        table = json.loads((folder / "tune.json").read_text())["table"]
        return [(r["lr"], r["state"], r["steps"], r["selection_score"]) for r in table]

    two = two_process_runs / "tune"
    a, b = trials(tmp_path / "one"), trials(two)
    assert [r[:3] for r in a] == [r[:3] for r in b] and len(a) == 3
    for x, y in zip(a, b):
        assert x[3] is None and y[3] is None or abs(x[3] - y[3]) < 1e-9, (x, y)
    m = json.loads((two / "trials" / "0000" / "metrics.json").read_text())
    assert m["num_processes"] == 2


def test_two_processes_are_refused_a_folder_a_live_run_holds(glue_dir, teacher_dir, tmp_path):
    out = tmp_path / "o"
    hold = "import sys, time; from lgtm import rundir; rundir.take_lock(sys.argv[1]); "
    hold += "print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(out)], env=environment(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        output, _ = torchrun(distill_args(glue_dir, teacher_dir, out, "--overwrite")).communicate(
            timeout=300
        )
    finally:
        holder.kill()
        holder.wait()
    # both processes refuse with the same line (the main one holds the folder for the launch)
    message = f"{out}: field 'output_dir': a live run holds this folder (process {holder.pid})"
    assert output.count(f"lgtm: error: {message}") == 2, output
    assert "lgtm/" not in output  # no traceback of lgtm's (torchrun reports the exit its way)
    assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK]


# ------------------------------------------------- every method, any dataset size (issue #19)

#: 10 rows: 1 feedback row and 9 to train on, in batches of 8 and 1 — the second process's
#: share of the last batch (and of every feedback batch) is empty: it steps on a stand-in.
UNEVEN = ["--max-train-samples", "10", "--max-eval-samples", "8", "--max-length", "16"]
UNEVEN += ["--epochs", "1"]  # two steps a stage: a batch of 8, then one of 1


def uneven_args(glue_dir: Path, teacher: Path, out: Path, method: str) -> list[str]:
    args = distill_args(glue_dir, teacher, out, "--method", method, *UNEVEN)
    if method == "rco":
        args += ["--rco-anchors", "2"]  # the teacher's fine-tuning has 2 steps
    if "alpha" not in lgtm.methods.method_class(method).unread:
        args += ["--alpha", "0.5"]  # the label term counts where there is one
    return args


@pytest.mark.parametrize("method", list(lgtm.METHOD_NAMES))
def test_two_processes_equal_one_for_every_method_and_any_dataset_size(
    method, glue_dir, teacher_dir, two_process_runs, tmp_path
):
    """A last batch of one sample (and feedback batches of one) on two processes: the second
    process contributes nothing to any mean, and the models are one process's."""
    one = tmp_path / "one"
    assert cli.main(uneven_args(glue_dir, teacher_dir, one, method)) == 0
    two = two_process_runs / "uneven" / method
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert m1["train_samples"] == m2["train_samples"] == 9 and m2["num_processes"] == 2
    models = ["student", "teacher"] + (["assistant"] if method == "takd" else [])
    for model in models if method != "ce" else ["student"]:
        error = relative(weights(two, model), weights(one, model))
        print(f"{method} {model}: relative difference 2 vs 1 process {error:.1e}")
        assert error < 1e-6, (model, error)
    same_history(m1, m2, ("student_loss", "teacher_loss", "influence_mean"), abs=2e-8)
