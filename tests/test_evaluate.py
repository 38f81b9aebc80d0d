"""The GLUE metrics as an `evaluate` module of the project's own, offline; and, where the Hub
answers, the same numbers as `evaluate.load("glue", task)`."""
import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

from peerprune.glue import hub_reachable  # noqa: E402
from peerprune.metrics import EVALUATE_MODULE, compute_metrics, glue_scores  # noqa: E402

RNG = np.random.default_rng(0)
CASES = {"mrpc": (RNG.integers(0, 2, 50), RNG.integers(0, 2, 50)),
         "cola": (RNG.integers(0, 2, 50), RNG.integers(0, 2, 50)),
         "stsb": (RNG.uniform(0, 5, 50), RNG.uniform(0, 5, 50)),
         "rte": (RNG.integers(0, 2, 50), RNG.integers(0, 2, 50))}


@pytest.mark.parametrize("task", sorted(CASES))
def test_local_module_gives_the_package_numbers(task):
    predictions, references = CASES[task]
    got = evaluate.load(EVALUATE_MODULE, task).compute(predictions=predictions,
                                                      references=references)
    assert got == pytest.approx(glue_scores(task, predictions, references))
    if task != "stsb":  # from logits, in percent, as the training loop computes them
        logits = np.eye(2)[predictions]
        assert compute_metrics(task, logits, references) == pytest.approx(
            {k: 100 * v for k, v in got.items()})


def test_unknown_task_is_refused():
    with pytest.raises(KeyError, match="unknown GLUE task 'mrcp'"):
        evaluate.load(EVALUATE_MODULE, "mrcp")


@pytest.mark.parametrize("task", sorted(CASES))
def test_same_numbers_as_the_hubs_glue_metric(task):
    if not hub_reachable():
        pytest.skip("the Hugging Face Hub is not reachable: evaluate.load('glue') needs it")
    predictions, references = CASES[task]
    hub = evaluate.load("glue", task).compute(predictions=predictions, references=references)
    assert glue_scores(task, predictions, references) == pytest.approx(hub)
