"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lgtm.data import TASKS, custom_task
from lgtm.metrics import compute_metrics, predictions


def logits_for(preds: list[int], num_labels: int = 2) -> np.ndarray:
    """One-hot-ish logits whose argmax is ``preds``."""
    out = np.zeros((len(preds), num_labels), dtype=np.float32)
    out[np.arange(len(preds)), preds] = 3.0
    return out


def test_accuracy_sst2():
    labels = np.array([1, 0, 1, 1, 0])
    result = compute_metrics(TASKS["sst2"], logits_for([1, 0, 0, 1, 1]), labels)
    assert result == {"accuracy": pytest.approx(3 / 5)}


def test_mrpc_f1_and_accuracy():
    # labels 1 1 1 0 0 0 ; preds 1 1 0 1 0 0 -> TP=2 FP=1 FN=1 ; F1 = 2*2/(2*2+1+1) = 2/3
    labels = np.array([1, 1, 1, 0, 0, 0])
    result = compute_metrics(TASKS["mrpc"], logits_for([1, 1, 0, 1, 0, 0]), labels)
    assert list(result) == ["f1", "accuracy"]  # main metric first
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(4 / 6)


def test_f1_without_positive_predictions_is_zero():
    result = compute_metrics(TASKS["qqp"], logits_for([0, 0, 0]), np.array([1, 0, 0]))
    assert result["f1"] == 0.0 and result["accuracy"] == pytest.approx(2 / 3)


def test_matthews_cola():
    # TP=2 TN=1 FP=1 FN=0: (2*1 - 1*0) / sqrt(3*2*2*1) = 2 / sqrt(12)
    labels = np.array([1, 1, 0, 0])
    result = compute_metrics(TASKS["cola"], logits_for([1, 1, 1, 0]), labels)
    assert result["matthews_correlation"] == pytest.approx(2 / math.sqrt(12))
    why: dict[str, str] = {}
    constant = compute_metrics(TASKS["cola"], logits_for([1, 1, 1, 1]), labels, why)
    assert constant["matthews_correlation"] is None  # 0 / 0: undefined, not 0.0
    assert why == {"matthews_correlation": "every prediction is the same"}
    one_class = compute_metrics(TASKS["cola"], logits_for([1, 0, 1, 0]), np.array([1, 1, 1, 1]))
    assert one_class["matthews_correlation"] is None


def test_mnli_three_classes():
    labels = np.array([0, 1, 2, 2])
    result = compute_metrics(TASKS["mnli"], logits_for([0, 1, 1, 2], 3), labels)
    assert result == {"accuracy": pytest.approx(0.75)}


def test_stsb_pearson_spearman():
    preds = np.array([[1.0], [2.0], [3.0], [5.0]])
    labels = np.array([1.0, 3.0, 2.0, 4.0])
    result = compute_metrics(TASKS["stsb"], preds, labels)
    # pearson by hand: x-mean = -1.75,-0.75,0.25,2.25 ; y-mean = -1.5,0.5,-0.5,1.5
    # cov = 2.625-0.375-0.125+3.375 = 5.5 ; sxx = 3.0625+0.5625+0.0625+5.0625 = 8.75 ; syy = 5
    assert result["pearson"] == pytest.approx(5.5 / math.sqrt(8.75 * 5))
    # ranks 1 2 3 4 vs 1 3 2 4: d^2 = 0+1+1+0 = 2 ; rho = 1 - 6*2/(4*15) = 0.8
    assert result["spearmanr"] == pytest.approx(0.8)
    assert list(result) == ["pearson", "spearmanr"]


def test_regression_accepts_flat_predictions_and_constant_is_undefined():
    labels = np.array([1.0, 2.0, 3.0])
    assert compute_metrics(TASKS["stsb"], np.array([1.0, 2.0, 3.0]), labels)["pearson"] == (
        pytest.approx(1.0)
    )
    constant = compute_metrics(TASKS["stsb"], np.array([[2.0], [2.0], [2.0]]), labels)
    assert constant == {"pearson": None, "spearmanr": None}


@pytest.mark.parametrize(
    "preds, labels, why",
    [
        ([[2.5]], [3.0], "1 row: a correlation needs 2"),  # a one-row evaluation set
        ([[1.0], [2.0], [3.0]], [4.0, 4.0, 4.0], "every label is the same"),
    ],
)
def test_correlations_undefined_on_their_data_are_none(preds, labels, why):
    reasons: dict[str, str] = {}
    result = compute_metrics(TASKS["stsb"], np.array(preds), np.array(labels), reasons)
    assert result == {"pearson": None, "spearmanr": None}
    assert reasons == {"pearson": why, "spearmanr": why}


def test_f1_without_any_positive_is_undefined():
    result = compute_metrics(TASKS["mrpc"], logits_for([0, 0]), np.array([0, 0]))
    assert result == {"f1": None, "accuracy": 1.0}


def test_custom_task_metrics_and_predictions():
    task = custom_task("c", ["t"], ["a", "b", "c"], metrics=["accuracy", "matthews_correlation"])
    result = compute_metrics(task, logits_for([0, 1, 2], 3), np.array([0, 1, 2]))
    assert result == {"accuracy": 1.0, "matthews_correlation": pytest.approx(1.0)}
    assert predictions(TASKS["sst2"], np.array([[0.1, 0.9], [2.0, -1.0]])).tolist() == [1, 0]


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError):
        compute_metrics(TASKS["sst2"], logits_for([1, 0]), np.array([1]))
    with pytest.raises(ValueError):
        compute_metrics(TASKS["sst2"], logits_for([]), np.array([]))
