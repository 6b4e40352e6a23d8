"""``--report-to tensorboard,mlflow,wandb``: one tiny run of two stages (kd: the teacher's
fine-tuning, then the distillation) logs to all three, offline and inside its output folder,
every record at a step that never decreases (W&B drops the others); a tracker that does not
exist, or an empty list, is refused in one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import one_line_error, run_config, write_table

from lgtm import train

WORDS = "good great fine nice bad awful poor sad".split()


@pytest.fixture
def tiny_data(tmp_path):
    rows = [(" ".join(WORDS[(i + k) % 8] for k in range(3)), str(i % 2)) for i in range(40)]
    return write_table(tmp_path / "train.tsv", rows), write_table(tmp_path / "dev.tsv", rows[:12])


def test_one_run_logs_to_tensorboard_mlflow_and_wandb_offline(
    tiny_teacher_dir, tiny_data, tmp_path, monkeypatch
):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    from lgtm import config as cfg

    out = tmp_path / "run"
    chosen = cfg.parse_value("report_to", "tensorboard,mlflow,wandb")  # as --report-to gives it
    assert chosen == ["tensorboard", "mlflow", "wandb"]
    assert cfg.parse_value("report_to", "none") is None
    config = run_config(tiny_teacher_dir, tiny_data, out, report_to=chosen, epochs=1, method="kd")
    result = train.distill(config)
    steps = len([h for h in result.metrics["history"] if "student_loss" in h])
    assert list(result.metrics["steps"]) == ["teacher", "distill"]  # two stages

    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))

    from lgtm.trackers import tracking_uri

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri(out))
    assert (out / "mlflow.db").is_file()
    (experiment,) = [e for e in client.search_experiments() if e.name == "lgtm"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.data.params["method"] == "kd"
    history = client.get_metric_history(logged.info.run_id, "distill/student_loss")
    assert len(history) == steps > 0

    assert not (out / "wandb" / "wandb").exists()  # W&B adds wandb/ to the folder it is given
    (run,) = (out / "wandb").glob("offline-run-*")
    (file,) = run.glob("run-*.wandb")
    rows = wandb_history(file)
    run_steps = [row["_step"] for row in rows]
    assert run_steps == sorted(set(run_steps))  # strictly increasing: none dropped or merged
    # every record logged arrives: each stage's logged entries of metrics.json (its step-0
    # evaluation is not logged), in order, at their stage's step, with their values
    metrics = json.loads((out / "metrics.json").read_text())
    expected = [
        (stage, entry)
        for stage, key in (("teacher", "teacher_finetune_history"), ("distill", "history"))
        for entry in metrics[key]
        if entry["step"] > 0
    ]
    assert len(rows) == len(expected) == steps + metrics["steps"]["teacher"]
    for row, (stage, entry) in zip(rows, expected, strict=True):
        assert row[f"{stage}/step"] == entry["step"]
        loss = "teacher_loss" if stage == "teacher" else "student_loss"
        assert row[f"{stage}/{loss}"] == pytest.approx(entry[loss])


def wandb_history(path: Path) -> list[dict]:
    """The history rows (``wandb.log`` calls, ``_step`` included) of an offline W&B run file:
    LevelDB's log format (32 KiB blocks of records, each a 7-byte header: CRC, length, type
    FULL 1 / FIRST 2 / MIDDLE 3 / LAST 4) after W&B's 7-byte ``:W&B`` header, each record a
    ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending, rows = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
    return rows


def test_an_unknown_tracker_is_one_line(capsys):
    line = one_line_error(capsys, "distill", "--report-to", "tensorboard,comet")
    assert "comet" in line and "report-to" in line


@pytest.mark.parametrize("given", ["", " ", ","])
def test_an_empty_tracker_list_is_refused_as_an_empty_export_list(capsys, given):
    """Not a default run started with no tracker: refused before any model is loaded, in the
    words ``--export ""`` is refused with (an out-of-range setting after it: a broken parse
    fails at once rather than after a default run)."""
    line = one_line_error(capsys, "distill", "--report-to", given, "--selection-fraction", "2")
    assert line == (
        f"lgtm: error: argument --report-to: expected a comma-separated list of names, "
        f"got {given!r}"
    )
    assert one_line_error(capsys, "distill", "--export", given).endswith(f"got {given!r}")
