"""GLUE metrics against values worked out by hand."""
import math

import numpy as np
import pytest

from peerprune.metrics import compute_metrics, primary_score


def onehot(preds, n=2):
    return np.eye(n)[preds]


def test_accuracy_and_f1_by_hand():
    # preds 1 1 0 0 1, gold 1 0 0 1 1: TP=2 FP=1 FN=1 TN=1
    s = compute_metrics("mrpc", onehot([1, 1, 0, 0, 1]), [1, 0, 0, 1, 1])
    assert s["accuracy"] == pytest.approx(60.0)
    assert s["f1"] == pytest.approx(100 * 2 * 2 / (2 * 2 + 1 + 1))  # 2TP/(2TP+FP+FN)
    assert primary_score("mrpc", s) == s["f1"]


def test_matthews_by_hand():
    # TP=2 FP=1 FN=1 TN=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    s = compute_metrics("cola", onehot([1, 1, 0, 0, 1]), [1, 0, 0, 1, 1])
    assert s["matthews_correlation"] == pytest.approx(100 / 6)


def test_spearman_and_pearson_by_hand():
    preds = np.array([[1.0], [2.0], [3.0], [4.0]])
    gold = [1.0, 3.0, 2.0, 4.0]
    s = compute_metrics("stsb", preds, gold)
    # ranks differ by d = 0, 1, -1, 0: rho = 1 - 6*2/(4*15) = 0.8
    assert s["spearmanr"] == pytest.approx(80.0)
    # x and y both have mean 2.5 and squared deviations summing to 5; cross products: 4
    assert s["pearson"] == pytest.approx(100 * 4 / 5)


def test_mnli_three_classes():
    s = compute_metrics("mnli", onehot([0, 1, 2, 2], 3), [0, 1, 1, 2])
    assert s["accuracy"] == pytest.approx(75.0)
    assert not math.isnan(s["accuracy"])
