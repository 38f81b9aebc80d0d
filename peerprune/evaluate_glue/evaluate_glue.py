"""GLUE as an `evaluate` metric module of peerprune's own: the formulas of
`peerprune.metrics` (scikit-learn and SciPy), loaded from this folder, so no Hub is needed.

    import evaluate
    from peerprune.metrics import EVALUATE_MODULE
    metric = evaluate.load(EVALUATE_MODULE, "mrpc")
    metric.compute(predictions=[1, 0, 1], references=[1, 1, 1])  # {'accuracy': ..., 'f1': ...}
"""
import datasets
import evaluate

from peerprune.glue import TASKS, get_task
from peerprune.metrics import glue_scores


class EvaluateGlue(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"unknown GLUE task {self.config_name!r}; valid: {', '.join(TASKS)}")
        kind = "float32" if get_task(self.config_name).is_regression else "int64"
        return evaluate.MetricInfo(
            description="GLUE metrics computed by peerprune.metrics (scikit-learn, SciPy)",
            citation="", inputs_description="predictions: classes (scores for stsb); "
                                            "references: gold labels",
            features=datasets.Features({"predictions": datasets.Value(kind),
                                        "references": datasets.Value(kind)}))

    def _compute(self, predictions, references):
        return glue_scores(self.config_name, predictions, references)
