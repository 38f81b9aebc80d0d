"""Every reference solution in exercises/solutions/ passes its notebook's check."""
import importlib.util
from pathlib import Path

import pytest
import torch

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


def test_08_solutions_pass_their_checks(shared_glue, tmp_results, monkeypatch):
    """And a criterion registered here runs through the pipeline, the CLI's choices and the
    generated comparison table with no other edit."""
    import contextlib
    import io

    import torch

    from peerprune import heads, losses, selectors
    from peerprune.__main__ import main
    from peerprune.locator import top_mask
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.report import comparison_table
    from peerprune.teacher import load_teacher
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))

    @selectors.register("testnorm")
    def test_norm(teacher, inputs, keep, c):
        n_layers, n_heads = heads.num_layers_heads(teacher)
        w = torch.stack([heads.attention(teacher, l).output.dense.weight.detach()
                         .reshape(-1, n_heads, teacher.config.hidden_size // n_heads)
                         .norm(dim=(0, 2)) for l in range(n_layers)])
        return selectors.HeadChoice(top_mask(w, keep), {"scores": w.tolist()})

    try:
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
            main(["prune", "--help"])
        assert "testnorm" in help_text.getvalue()
        c = PruneConfig(task="rte", profile="smoke", method="testnorm", distill="kd", sparsity=0.5)
        result = run_pruning(c)
        assert result["method"] == "testnorm" and sum(result["heads_per_layer"]) == 4
        assert "testnorm (kd)" in comparison_table("smoke", tmp_results / "results", target=0.5)
        teacher, _, _ = load_teacher("rte", "smoke")
        s = solution("ex08_extend")
        assert exercises.check_08_qk_norm(s.qk_norm_scores, teacher, 4)[0]
        assert not exercises.check_08_qk_norm(lambda t: torch.rand(2, 4), teacher, 4)[0]
        ok, message = exercises.check_08_kd_prediction(s.PREDICTION, c, result["score"])
        assert ("without KD" in message) and ok == (s.PREDICTION in message)
        assert not exercises.check_08_registered_loss(None, result)[0]
        layer = s.layer_run("smoke", "rte", 0.5, method="testnorm")
        assert exercises.check_08_registered_loss(layer, result)[0]
        assert not exercises.check_08_registered_loss(result, result)[0]  # KD alone
    finally:
        selectors.SELECTORS.pop("testnorm", None)
        losses.FINE_TUNING_LOSSES.pop("kd-layer", None)


def test_04_solutions_pass_their_checks(shared_glue):
    from peerprune import anatomy, heads, peers
    from peerprune.glue import task_data
    from peerprune.models import load_model, load_tokenizer
    from peerprune.train import make_loader
    s = solution("ex04_peer_distillation")
    assert exercises.check_04_peer_target(s.peer_target)[0]
    assert not exercises.check_04_peer_target(lambda c_t, members: c_t[:, members[0]])[0]
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=48, train_examples=48,
                         eval_examples=16)
    stats = anatomy.collect_stats(load_model("tiny", seed=2), make_loader(train, tok, 16, False))
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 0, 1, 0]])
    assignment = peers.assign_peers(anatomy.similarity(stats), mask)
    kept = heads.kept_from_mask(mask)[1]
    assert exercises.check_04_ridge(s.PREDICTION, 1e3, stats[1], assignment[1], kept)[0]
    assert not exercises.check_04_ridge("default", 1e3, stats[1], assignment[1], kept)[0]


def test_02_solutions_pass_their_checks(shared_glue):
    from peerprune import anatomy, heads
    from peerprune.glue import task_data
    from peerprune.models import load_model, load_tokenizer
    from peerprune.train import make_loader
    s = solution("ex02_head_anatomy")
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=48, train_examples=16,
                         eval_examples=16)
    model = load_model("tiny", seed=2)
    loader = make_loader(train, tok, 16, False)
    stats = anatomy.collect_stats(model, loader)
    batch = next(iter(loader))
    with torch.no_grad(), anatomy.Capture(model) as cap:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    c = anatomy.contributions(cap.context[0], heads.attention(model, 0).output.dense.weight.detach(),
                              anatomy.head_dim(model))[batch["attention_mask"].bool()].double()
    assert exercises.check_02_cosine(s.head_cosine, c, stats[0])[0]
    assert not exercises.check_02_cosine(lambda c, a, b: 0.5, c, stats[0])[0]
    assert exercises.check_02_best_layer(s.best_layer(stats), stats)[0]
    assert not exercises.check_02_best_layer(1 - s.best_layer(stats), stats)[0]


def test_05_solutions_pass_their_checks(shared_glue):
    from peerprune.glue import task_data
    from peerprune.models import load_model, load_tokenizer
    from peerprune.train import make_loader
    s = solution("ex05_baselines")
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=48, train_examples=40,
                         eval_examples=16)
    model = load_model("tiny", seed=4)
    loader = make_loader(train, tok, 16, False)
    assert exercises.check_05_importance(s.importance, model, loader)[0]
    assert not exercises.check_05_importance(lambda g: torch.cat(g, 1).mean(1).abs(), model,
                                             loader)[0]
    assert exercises.check_05_fisher_diagonal(s.fisher_diagonal, model, loader)[0]
    assert not exercises.check_05_fisher_diagonal(s.importance, model, loader)[0]
    assert exercises.check_05_overlap(s.overlap)[0]
    assert not exercises.check_05_overlap(lambda a, b: float((a * b).sum() / 12))[0]


def test_00_solutions_pass_their_checks(shared_glue):
    from peerprune.glue import load_glue
    from peerprune.models import load_tokenizer
    s = solution("ex00_setup_and_data")
    raw = load_glue("rte", shared_glue)
    assert exercises.check_00_majority(s.majority_score, raw, "rte")[0]
    assert not exercises.check_00_majority(lambda raw, task: 50.0, raw, "rte")[0]
    tok = load_tokenizer("tiny")
    train = raw["train"].select(range(200))
    assert exercises.check_00_truncated(s.truncated_share, train, tok, "rte", 64)[0]
    assert not exercises.check_00_truncated(lambda *a: 0.0, train, tok, "rte", 64)[0]


def test_01_06_07_solutions_pass_their_checks(shared_glue, tmp_results, monkeypatch):
    from peerprune.glue import task_data
    from peerprune.prune import PruneConfig
    from peerprune.report import sweep_rows
    from peerprune.teacher import load_teacher, sweep_teacher
    from peerprune.train import make_loader
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    teacher, tok, record = load_teacher("rte", "smoke")
    _, evals = task_data("rte", tok, glue_dir=shared_glue, max_length=64, train_examples=64,
                         eval_examples=32)
    s = solution("ex01_dense_teacher")
    loader = make_loader(evals["validation"], tok, 16, False)
    assert exercises.check_01_score(s.score(teacher, loader, "rte"), record)[0]
    assert not exercises.check_01_score(record["score"] - 1, record)[0]
    sweep = sweep_teacher("rte", "smoke")
    assert exercises.check_01_best_lr(s.best_lr, sweep, record)[0]
    s = solution("ex06_ablations")
    base = PruneConfig(task="rte", profile="smoke")
    assert exercises.check_06_ablation(s.uniform(base), base)[0]
    assert not exercises.check_06_ablation(base, base)[0]
    assert exercises.check_06_new_choice(s.NEW_CHOICE)[0]
    assert not exercises.check_06_new_choice(["uniform"])[0]
    s = solution("ex07_results")
    import numpy as np
    assert exercises.check_07_spread(s.spread)[0]
    assert not exercises.check_07_spread(lambda x: (np.mean(x), np.std(x)))[0]
    assert exercises.check_07_lossless(s.lossless_up_to, sweep_rows("smoke"))[0]
    assert not exercises.check_07_lossless(lambda rows, task: 0.92, sweep_rows("smoke"))[0]


def test_09_solutions_pass_their_checks(shared_glue, tmp_results, monkeypatch):
    from peerprune.models import load_model, load_tokenizer, save_model
    from peerprune.prune import PruneConfig, run_pruning
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    mine = tmp_results / "mine"
    save_model(load_model("tiny", num_labels=2, seed=6), load_tokenizer("tiny"), mine)
    c = PruneConfig(task="rte", profile="smoke", teacher=str(mine), method="hisp", epochs=0,
                    sparsity=0.5)
    first = run_pruning(c)
    s = solution("ex09_prune_your_model")
    assert exercises.check_09_compare(first, s.other_method(c))[0]
    assert not exercises.check_09_compare(first, first)[0]
    teacher, pruned = load_model(str(mine)), load_model(first["checkpoint"])
    assert exercises.check_09_params(s.removed(teacher, pruned), teacher, pruned)[0]
    assert not exercises.check_09_params(0, teacher, pruned)[0]
