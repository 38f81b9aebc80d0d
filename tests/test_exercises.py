"""Every reference solution in exercises/solutions/ passes its notebook's check."""
import importlib.util
from pathlib import Path

import pytest

from peerprune import exercises

SOLUTIONS = Path(__file__).resolve().parents[1] / "exercises" / "solutions"


def solution(name: str):
    spec = importlib.util.spec_from_file_location(name, SOLUTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_03_solutions_pass_their_checks(shared_glue):
    from peerprune.glue import task_data
    from peerprune.models import load_model, load_tokenizer
    s = solution("ex03_automatic_locator")
    assert exercises.check_03_expected_open(s.expected_open)[0]
    assert exercises.check_03_newton_shift(s.newton_shift)[0]
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=48, train_examples=96,
                         eval_examples=16)
    teacher = load_model("tiny", seed=3)
    assert exercises.check_03_prediction(s.PREDICTION, s.FINAL_TEMPERATURE, teacher, train,
                                         tok, 4)[0]
    # and a wrong answer is told so
    assert not exercises.check_03_prediction(not s.PREDICTION, s.FINAL_TEMPERATURE, teacher,
                                             train, tok, 4)[0]


@pytest.mark.parametrize("wrong", [lambda logits, shift: logits.sum() * 0,
                                   lambda logits, shift: (logits + shift).sigmoid().sum()])
def test_03_check_refuses_a_wrong_expected_open(wrong):
    assert not exercises.check_03_expected_open(wrong)[0]
