"""GLUE metrics from scikit-learn and SciPy, in percent.

The same formulas as `evaluate`'s GLUE metric, computed locally; they are also an `evaluate`
metric module of the project's own, which works offline:

    evaluate.load(peerprune.metrics.EVALUATE_MODULE, "mrpc").compute(predictions=..., references=...)
"""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .glue import get_task

# the folder of the project's `evaluate` module (peerprune/evaluate_glue/evaluate_glue.py)
EVALUATE_MODULE = str(__import__("pathlib").Path(__file__).with_name("evaluate_glue"))


def _metric(name: str, predictions: np.ndarray, labels: np.ndarray) -> float:
    if name == "accuracy":
        return float(accuracy_score(labels, predictions))
    if name == "f1":
        return float(f1_score(labels, predictions))
    if name == "matthews_correlation":
        return float(matthews_corrcoef(labels, predictions))
    if name == "pearson":
        return float(pearsonr(predictions, labels)[0])
    if name == "spearmanr":
        return float(spearmanr(predictions, labels)[0])
    raise ValueError(f"unknown metric {name!r}")


def compute_metrics(task: str, logits, labels) -> dict[str, float]:
    """All of a task's metrics, in percent, from model outputs and gold labels.

    `logits` has shape (n, num_labels); for regression (n, 1) or (n,) scores.
    """
    spec = get_task(task)
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if spec.is_regression:
        predictions = logits.reshape(-1).astype(np.float64)
    else:
        predictions = logits.argmax(axis=-1)
    return {m: 100.0 * _metric(m, predictions, labels) for m in spec.metrics}


def glue_scores(task: str, predictions, references) -> dict[str, float]:
    """A task's metrics as fractions, from predicted classes (or scores, for STS-B) and gold
    labels: what `evaluate.load("glue", task).compute(...)` returns."""
    spec = get_task(task)
    predictions = np.asarray(predictions, dtype=np.float64 if spec.is_regression else np.int64)
    return {m: _metric(m, predictions, np.asarray(references)) for m in spec.metrics}


def primary_score(task: str, scores: dict[str, float]) -> float:
    """The task's headline number (CoLA MCC, MRPC F1, STS-B Spearman, else accuracy)."""
    return scores[get_task(task).primary_metric]
