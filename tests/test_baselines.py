"""Baselines on a tiny model: HISP's importance, exact budgets, L0's sweep."""
import copy

import pytest
import torch
import torch.nn.functional as F

from peerprune import heads
from peerprune.baselines import head_importance, hisp_mask, normalise_per_layer, random_mask
from peerprune.glue import task_data
from peerprune.locator import FixedPenalty, LocatorConfig, locate
from peerprune.models import load_model, load_tokenizer
from peerprune.train import make_loader


@pytest.fixture(scope="module")
def data(shared_glue):
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=32, train_examples=48,
                         eval_examples=8)
    return tok, train


def test_hisp_importance_is_the_mean_absolute_mask_gradient(data):
    tok, train = data
    model = load_model("tiny", seed=4)
    mask = torch.tensor([[1.0, 1, 0, 1], [1, 1, 1, 1]])
    got = head_importance(model, make_loader(train, tok, 16, False), mask)
    # independently: one example at a time, a plain (layers x heads) mask, mean |grad|
    expected = torch.zeros(2, 4)
    for example in make_loader(train, tok, 1, False):
        m = mask.clone().requires_grad_(True)
        logits = heads.masked(model, m, input_ids=example["input_ids"],
                              attention_mask=example["attention_mask"],
                              token_type_ids=example["token_type_ids"]).logits
        F.cross_entropy(logits, example["labels"]).backward()
        expected += m.grad.abs()
    expected /= len(train)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)
    norm = normalise_per_layer(got, mask)
    assert torch.allclose(norm.norm(dim=1), torch.ones(2), atol=1e-6) and norm[0, 2] == 0


def test_hisp_and_random_keep_exactly_the_budget(data):
    tok, train = data
    model = load_model("tiny", seed=5)
    mask, log = hisp_mask(model, make_loader(train, tok, 16, False), keep=3)
    assert int(mask.sum()) == 3 and (mask.sum(1) >= 1).all()
    assert [s["kept"] for s in log] == [7, 6, 5, 4, 3]  # 10% of 8 heads = 1 per step
    r = random_mask(2, 4, 5, seed=1)
    assert int(r.sum()) == 5 and torch.equal(r, random_mask(2, 4, 5, seed=1))
    seeds = {tuple(random_mask(2, 4, 5, seed=s).flatten().tolist()) for s in range(6)}
    assert len(seeds) > 1  # the seed changes the choice


def test_l0_penalty_never_keeps_more_heads_when_larger(data):
    """In this setting (tiny model, 30 steps, same seed) a larger fixed penalty keeps no
    more heads: the property the L0 baseline's search relies on."""
    tok, train = data
    teacher = load_model("tiny", seed=6)
    kept = []
    for lam in (0.0, 0.02, 0.2):
        cfg = LocatorConfig(epochs=10, lr=1e-3, lr_gates=0.2, batch_size=16, max_steps=30)
        _, gates, _ = locate(teacher, copy.deepcopy(teacher), train, tok, 4, cfg,
                             control=FixedPenalty.of(lam))
        kept.append(int((gates.open_probability() > 0.5).sum()))
    assert kept == sorted(kept, reverse=True) and kept[0] > kept[-1], kept


def test_locator_trains_the_weights_it_is_told_to_whatever_the_teacher_flags(data):
    """locate freezes the teacher; a student copied from a frozen teacher must still learn
    (L0's tries once inherited the freeze from the first try), and with train_weights off
    only the gates move, as in each of L0's tries."""
    tok, train = data
    teacher = load_model("tiny", seed=6).requires_grad_(False)
    moved = {}
    for train_weights in (True, False):
        cfg = LocatorConfig(epochs=1, lr=1e-3, lr_gates=0.2, batch_size=16, max_steps=3,
                            train_weights=train_weights)
        student = copy.deepcopy(teacher)
        _, gates, _ = locate(teacher, student, train, tok, 4, cfg, control=FixedPenalty.of(1e-5))
        moved[train_weights] = any(not torch.equal(a, b) for a, b in
                                   zip(student.parameters(), teacher.parameters()))
        assert not torch.equal(gates.log_alpha, torch.full_like(gates.log_alpha, 3.0))
    assert moved == {True: True, False: False}


def test_l0_tries_are_saved_once_and_shared_by_every_budget(data, tmp_path, monkeypatch):
    """A fixed-penalty try never sees the budget: read back from `tries_dir`, it gives the
    sweep, gates and mask a fresh search gives, and each penalty runs once."""
    from peerprune import baselines
    tok, train = data
    teacher = load_model("tiny", seed=6)
    cfg = LocatorConfig(epochs=10, lr=1e-3, lr_gates=0.2, batch_size=16, max_steps=30)
    search = dict(start=1e-5, factor=3.0, tries=3)  # 7, 2, then 0 heads open
    fresh_mask, fresh_sweep, fresh_gates = baselines.l0_mask(teacher, train, tok, 1, cfg, **search)
    assert len(fresh_sweep) >= 2 and not any(s["reused"] for s in fresh_sweep)
    ran = []
    of = FixedPenalty.of  # called once per try that runs (not for one read back)
    monkeypatch.setattr(FixedPenalty, "of", staticmethod(lambda lam: ran.append(lam) or of(lam)))
    _, first, _ = baselines.l0_mask(teacher, train, tok, 8, cfg, tries_dir=tmp_path, **search)
    assert len(first) == 1 and ran == [1e-5]  # all 8 heads kept: the first try reaches it
    mask, sweep, gates = baselines.l0_mask(teacher, train, tok, 1, cfg, tries_dir=tmp_path,
                                           **search)
    assert [s["reused"] for s in sweep] == [True] + [False] * (len(sweep) - 1)
    assert ran[1:] == [s["lambda"] for s in sweep[1:]]  # only the new penalties ran
    strip = [{k: v for k, v in s.items() if k != "reused"} for s in sweep]
    assert strip == [{k: v for k, v in s.items() if k != "reused"} for s in fresh_sweep]
    assert torch.equal(gates.log_alpha, fresh_gates.log_alpha) and torch.equal(mask, fresh_mask)
    ran.clear()
    again, sweep, _ = baselines.l0_mask(teacher, train, tok, 1, cfg, tries_dir=tmp_path, **search)
    assert ran == [] and all(s["reused"] for s in sweep) and torch.equal(again, fresh_mask)


@pytest.mark.parametrize("method", ["random", "hisp", "l0", "smp"])
def test_each_baseline_through_the_entry_point(method, shared_glue, tmp_results):
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.teacher import train_teacher
    train_teacher("rte", "smoke", lr=1e-3)
    r = run_pruning(PruneConfig(task="rte", method=method, profile="smoke", keep=3,
                                locator_epochs=2, max_steps=6, l0_start=0.05, smp_steps=3,
                                smp_sentences=40))
    assert sum(r["heads_per_layer"]) == 3 and r["distill"] == "none"
    loaded = load_model(r["checkpoint"])  # runs even when a layer lost every head
    assert heads.heads_per_layer(loaded) == r["heads_per_layer"]
    x = torch.randint(1000, 2000, (2, 9))
    assert loaded(input_ids=x).logits.shape == (2, 2)
    kd = run_pruning(PruneConfig(task="rte", method=method, profile="smoke", keep=3,
                                 distill="kd", locator_epochs=2, max_steps=6, l0_start=0.05,
                                 smp_steps=3, smp_sentences=40))
    assert kd["distill"] == "kd" and kd["heads_per_layer"] == r["heads_per_layer"]
    if method == "l0":
        sweep = r["l0_sweep"]
        assert [s["lambda"] for s in sweep] == pytest.approx([0.05 * 3 ** i for i in range(len(sweep))])
        assert sweep[-1]["open_heads"] <= 3 or len(sweep) == 8  # reached the budget, or gave up
        assert all(s["open_heads"] > 3 for s in sweep[:-1])  # stopped at the first that did
    with pytest.raises(ValueError, match="peer distillation belongs to 'apd'"):
        run_pruning(PruneConfig(task="rte", method=method, profile="smoke", distill="peer"))


def test_smp_scorer_trains_on_other_tasks_and_keeps_equal_heads_per_layer(shared_glue, tmp_path):
    from peerprune.smp import SMPConfig, gumbel_topk_mask, meta_sentences, smp
    tok = load_tokenizer("tiny")
    sentences = meta_sentences("rte", tok, 60, shared_glue, max_length=32)
    assert len(sentences) == 60  # 12 from each of the five other offline tasks
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=32, train_examples=24,
                         eval_examples=8)
    pretrained = load_model("tiny", seed=7)
    cfg = SMPConfig(steps=4, batch_size=8, sentences=60, apply_examples=24, max_length=32)
    mask, info = smp(pretrained, "tiny", "rte", train, tok, 4, cfg, shared_glue, tmp_path)
    assert mask.sum(1).tolist() == [2, 2] and set(mask.flatten().tolist()) <= {0.0, 1.0}
    assert info["smp_meta_loss"] is not None and len(info["smp_meta_loss"]) == 4
    again, info2 = smp(load_model("tiny", seed=7), "tiny", "rte", train, tok, 4, cfg, shared_glue,
                       tmp_path)
    assert info2["smp_meta_loss"] is None and torch.equal(again, mask)  # the scorer was reused
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2]], requires_grad=True)
    m = gumbel_topk_mask(scores, [2], noise=False)
    assert m.tolist() == [[0, 1, 1, 0]]
    (m * torch.tensor([1.0, 2, 3, 4])).sum().backward()
    assert scores.grad.abs().sum() > 0  # gradients reach the scores through the relaxation


def test_a_method_says_what_its_fine_tuning_starts_from():
    from peerprune import selectors
    from peerprune.pipeline import start_model
    from peerprune.prune import PruneConfig
    assert selectors.START_OF["smp"] == "pretrained"  # as SMP's paper fine-tunes
    assert {selectors.START_OF[m] for m in selectors.SELECTORS if m != "smp"} == {"teacher"}
    with pytest.raises(ValueError, match="unknown start 'scratch'; valid: teacher, pretrained"):
        selectors.register("odd", start="scratch")
    assert "odd" not in selectors.SELECTORS
    teacher = load_model("tiny")
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(1.0)  # a teacher whose weights are not the pretrained model's
    name = lambda m: PruneConfig(task="rte", profile="smoke", method=m)  # noqa: E731
    w = lambda model: model.bert.encoder.layer[0].attention.self.query.weight  # noqa: E731
    from_teacher = start_model(name("hisp"), teacher, None, "tiny")
    from_pretrained = start_model(name("smp"), teacher, None, "tiny")
    assert from_teacher is not teacher and torch.equal(w(from_teacher), w(teacher))
    assert torch.equal(w(from_pretrained), w(load_model("tiny")))
