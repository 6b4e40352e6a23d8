"""``--report-to tensorboard,mlflow,wandb``: one tiny run logs to all three, offline and inside
its output folder; a tracker that does not exist is refused in one line."""

from __future__ import annotations

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
    config = run_config(
        tiny_teacher_dir, tiny_data, out, report_to=chosen, epochs=1, method="online"
    )
    result = train.distill(config)
    steps = len([h for h in result.metrics["history"] if "student_loss" in h])

    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))

    from lgtm.trackers import tracking_uri

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri(out))
    assert (out / "mlflow.db").is_file()
    (experiment,) = [e for e in client.search_experiments() if e.name == "lgtm"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.data.params["method"] == "online"
    history = client.get_metric_history(logged.info.run_id, "distill/student_loss")
    assert len(history) == steps > 0

    runs = list((out / "wandb").rglob("offline-run-*"))
    assert runs and list(runs[0].glob("run-*.wandb"))


def test_an_unknown_tracker_is_one_line(capsys):
    line = one_line_error(capsys, "distill", "--report-to", "tensorboard,comet")
    assert "comet" in line and "report-to" in line
