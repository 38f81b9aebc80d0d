"""The method on a tiny model: anatomy, locator, peer merge, peer loss, the entry point."""
import copy

import pytest
import torch

from peerprune import anatomy, heads, peers
from peerprune.anatomy import Capture
from peerprune.glue import task_data
from peerprune.locator import (LocatorConfig, budget_schedule, budget_shift, locate,
                               projected_logits, temperature, top_mask)
from peerprune.losses import peer_loss
from peerprune.models import load_model, load_tokenizer
from peerprune.train import make_loader


@pytest.fixture(scope="module")
def data(shared_glue):
    tok = load_tokenizer("tiny")
    train, evals = task_data("rte", tok, glue_dir=shared_glue, max_length=48,
                             train_examples=96, eval_examples=32)
    return tok, train, evals["validation"]


@pytest.fixture(scope="module")
def stats(data):
    tok, train, _ = data
    model = load_model("tiny", seed=1)
    return model, anatomy.collect_stats(model, make_loader(train, tok, 32, False))


def test_anatomy_from_gram_matches_explicit_contributions(data, stats):
    """Similarities from the Gram matrices equal those of contributions built token by token."""
    model, st = stats
    tok, train, _ = data
    rows = [[] for _ in range(2)]
    with torch.no_grad():
        for batch in make_loader(train, tok, 32, False):
            batch.pop("labels")
            with Capture(model) as cap:
                model(**batch)
            keep = batch["attention_mask"].bool()
            for l in range(2):
                w = heads.attention(model, l).output.dense.weight
                rows[l].append(anatomy.contributions(cap.context[l], w, 8)[keep].double())
    c = torch.cat(rows[1])  # (tokens, H, d)
    flat = c.transpose(0, 1).reshape(4, -1)
    cos = (flat @ flat.T) / torch.outer(flat.norm(dim=1), flat.norm(dim=1))
    assert torch.allclose(anatomy.cosine_similarity(st[1]), cos, atol=1e-8)
    centred = c - c.mean(0)
    def cka(x, y):
        return (y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm())
    assert float(anatomy.linear_cka(st[1])[0, 2]) == pytest.approx(float(cka(centred[:, 0], centred[:, 2])), rel=1e-6)
    r2 = anatomy.peer_r2(st[1])
    assert ((0 <= r2) & (r2 <= 1)).all()


def test_peer_merge_beats_plain_removal(data, stats):
    """On the same calibration data, folding pruned heads into their peers reconstructs
    the full attention output better than dropping them, measured on the real layer."""
    model, st = stats
    tok, train, _ = data
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    sim = anatomy.similarity(st)
    assignment = peers.assign_peers(sim, mask)
    assert all(assignment[l][p] in heads.kept_from_mask(mask)[l] for l in range(2) for p in assignment[l])
    kept = heads.kept_from_mask(mask)
    for merge in ("pairwise", "joint"):
        weights = peers.merged_weights(st, mask, assignment, merge, rho=1e-3)
        merged = peers.merge_and_prune(copy.deepcopy(model), weights, mask)
        removed = heads.prune(copy.deepcopy(model), mask)
        errors = {}
        for name, m in (("merged", merged), ("removed", removed)):
            err, ref = 0.0, 0.0
            for batch in make_loader(train, tok, 32, False):
                batch.pop("labels")
                keep = batch["attention_mask"].bool()
                with torch.no_grad(), Capture(model) as full, Capture(m) as cut:
                    model(**batch)
                    m(**batch)
                # layer 0 sees identical inputs in both models
                err += float(((full.output[0] - cut.output[0])[keep] ** 2).sum())
                ref += float(((full.output[0] - heads.attention(model, 0).output.dense.bias.detach())[keep] ** 2).sum())
            errors[name] = err / ref
        assert errors["merged"] < errors["removed"], (merge, errors)
        assert peers.reconstruction_error(st[0], weights[0], kept[0]) == pytest.approx(errors["merged"], rel=1e-3)


def _teacher_and_batch(data):
    """A tiny teacher, one batch of inputs (no labels) and its non-padding tokens."""
    tok, train, _ = data
    batch = next(iter(make_loader(train, tok, 8, False)))
    batch.pop("labels")
    return load_model("tiny", seed=2), batch, batch["attention_mask"].bool()


def test_peer_loss_zero_at_target_and_positive_otherwise(data):
    teacher, batch, tokens = _teacher_and_batch(data)
    mask = torch.ones(2, 4)  # keep every head: each head's target is its own contribution
    groups = peers.peer_groups([{}, {}], mask)
    student = copy.deepcopy(teacher)
    with torch.no_grad(), Capture(teacher) as t, Capture(student) as s:
        teacher(**batch)
        student(**batch)
    assert float(peer_loss(s, t, student, teacher, groups, tokens, 8)) == pytest.approx(0, abs=1e-10)
    with torch.no_grad():
        heads.attention(student, 1).output.dense.weight.mul_(1.1)
        student(**batch)
    with torch.no_grad(), Capture(student) as s:
        student(**batch)
    assert float(peer_loss(s, t, student, teacher, groups, tokens, 8)) > 1e-4
    # a pruned head's contribution moves into its peer's target
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]])
    groups = peers.peer_groups([{}, {3: 0}], mask)
    merged = copy.deepcopy(teacher)
    w = heads.attention(merged, 1).output.dense.weight
    with torch.no_grad():
        w[:, 0:8] += w[:, 24:32]  # when O_0 == O_3 this merge would be exact; it is not here
        heads.prune(merged, mask)
    with torch.no_grad(), Capture(merged) as s:
        merged(**batch)
    assert float(peer_loss(s, t, merged, teacher, groups, tokens, 8)) > 0


def test_peer_loss_keeps_the_numbers_of_the_committed_runs(data):
    """The teacher's contributions are computed on the real tokens only; the loss and its
    gradient must be bit for bit those of the form the committed runs used (contributions of
    every position, padding dropped afterwards), on a batch that has padding."""
    from peerprune.losses import group_matrix
    teacher, batch, tokens = _teacher_and_batch(data)
    assert not tokens.all()  # the batch pads some sequences
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    groups = peers.peer_groups([{1: 0, 3: 2}, {0: 1, 3: 2}], mask)
    student = copy.deepcopy(teacher)
    heads.prune(student, mask)
    with torch.no_grad(), Capture(teacher) as t:
        teacher(**batch)

    def committed_form(s):
        total = 0.0
        for l, layer_groups in enumerate(groups):
            c_s = anatomy.contributions(s.context[l], heads.output_projection(student, l).weight, 8)
            c_t = anatomy.contributions(t.context[l], heads.output_projection(teacher, l).weight, 8)
            target = torch.einsum("nhd,hr->nrd", c_t[tokens], group_matrix(layer_groups, 4))
            err = ((c_s[tokens] - target) ** 2).sum(dim=(0, 2))
            total = total + (err / (target ** 2).sum(dim=(0, 2)).clamp_min(1e-12)).sum()
        return total

    results = []
    for loss in (committed_form, lambda s: peer_loss(s, t, student, teacher, groups, tokens, 8)):
        student.zero_grad()
        with Capture(student) as s:
            student(**batch)
        value = loss(s)
        value.backward()
        results.append((value.detach(), [p.grad.clone() for p in student.parameters()
                                         if p.grad is not None]))
    (v0, g0), (v1, g1) = results
    assert v0 > 0 and torch.equal(v0, v1)
    assert len(g0) == len(g1) > 0 and all(torch.equal(a, b) for a, b in zip(g0, g1))


def test_absorbing_only_peer_loss_ignores_heads_without_a_pruned_peer(data):
    teacher, batch, tokens = _teacher_and_batch(data)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]])
    groups = peers.peer_groups([{}, {3: 0}], mask)  # only head 0 of layer 1 absorbs a peer
    student = copy.deepcopy(teacher)
    heads.prune(student, mask)

    def losses(model):
        with torch.no_grad(), Capture(teacher) as t, Capture(model) as s:
            teacher(**batch)
            model(**batch)
        return [float(peer_loss(s, t, model, teacher, groups, tokens, 8, absorbing_only=a))
                for a in (False, True)]

    every, absorbing = losses(student)
    assert absorbing > 1e-4  # head 0 misses its peer's contribution
    assert every == pytest.approx(absorbing, rel=1e-5)  # the other heads are on target
    with torch.no_grad():  # move a head that absorbed nothing (layer 0, head 2) off target
        heads.attention(student, 0).output.dense.weight[:, 16:24].mul_(1.5)
    every2, absorbing2 = losses(student)
    assert every2 > every + 1e-4
    # layer 1's inputs moved with layer 0, so head 0's term changed; it is the whole loss:
    # ||C^S_0 - (C^T_0 + C^T_3)||^2 / ||C^T_0 + C^T_3||^2 over the tokens, computed here
    with torch.no_grad(), Capture(teacher) as t, Capture(student) as s:
        teacher(**batch)
        student(**batch)
    w_s = heads.attention(student, 1).output.dense.weight
    w_t = heads.attention(teacher, 1).output.dense.weight
    c_s0 = s.context[1][..., 0:8] @ w_s[:, 0:8].T
    target = t.context[1][..., 0:8] @ w_t[:, 0:8].T + t.context[1][..., 24:32] @ w_t[:, 24:32].T
    expected = ((c_s0 - target)[tokens] ** 2).sum() / (target[tokens] ** 2).sum()
    assert absorbing2 == pytest.approx(float(expected), rel=1e-4)
    from peerprune.prune import PruneConfig, check_config
    with pytest.raises(ValueError, match="peer_heads 'absorbing'"):
        check_config(PruneConfig(task="rte", peer_heads="absorbing", peer_loss="joint").resolved())
    with pytest.raises(ValueError, match="this run has distill 'kd'"):  # no peer loss at all
        check_config(PruneConfig(task="rte", peer_heads="absorbing", distill="kd").resolved())


def test_locator_keeps_exactly_the_budget_and_lambda_tracks_violation(data):
    tok, train, _ = data
    teacher = load_model("tiny", seed=3)
    student = copy.deepcopy(teacher)
    cfg = LocatorConfig(epochs=10, lr=1e-3, lr_gates=0.2, lr_lambda=1.0, batch_size=16, seed=0,
                        min_one_per_layer=True, budget_control="lagrangian")
    mask, gates, log = locate(teacher, student, train, tok, keep=3, config=cfg)
    assert int(mask.sum()) == 3 and (mask.sum(1) >= 1).all()
    assert log[0]["k_t"] == 8 and log[-1]["k_t"] == 3
    assert log[len(log) // 2]["k_t"] == pytest.approx(3)
    grew = [b["lambda1"][0] > a["lambda1"][0] for a, b in zip(log, log[1:])
            if b["expected_heads"] > b["k_t"] + 1e-6]
    assert grew and all(grew)
    assert log[-1]["expected_heads"] < log[0]["expected_heads"] - 1  # the constraint bites
    uniform = top_mask(gates.log_alpha.detach(), 4, "uniform")
    assert uniform.sum(1).tolist() == [2, 2]


def test_budget_schedule_and_top_mask():
    assert budget_schedule(0, 100, 72, 30) == 72
    assert budget_schedule(25, 100, 72, 30) == pytest.approx(51)
    assert budget_schedule(80, 100, 72, 30) == 30
    scores = torch.tensor([[5.0, 4, 3], [-1, -2, -3]])
    assert top_mask(scores, 2).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert top_mask(scores, 2, min_one_per_layer=True).tolist() == [[1, 0, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="allocation 'even'"):
        top_mask(scores, 2, "even")


def test_entry_point_end_to_end(shared_glue, tmp_results):
    from dataclasses import replace
    from peerprune.prune import PruneConfig, ablation, run_pruning
    from peerprune.teacher import train_teacher
    train_teacher("rte", "smoke", lr=1e-3)
    cfg = PruneConfig(task="rte", profile="smoke", sparsity=0.5, locator_epochs=3, max_steps=8)
    r = run_pruning(cfg)
    assert sum(r["heads_per_layer"]) == 4 and r["sparsity"] == 0.5
    assert r["method"] == "apd" and r["distill"] == "peer" and len(r["locator_log"]) == 8
    assert r["versions"]["torch_threads"] == torch.get_num_threads()
    dense = load_model("tiny")
    assert r["params"] < heads.count_params(dense)
    reloaded = load_model(r["checkpoint"])
    assert heads.heads_per_layer(reloaded) == r["heads_per_layer"]
    assert heads.count_params(reloaded) == r["params"]
    assert sum(r["reconstruction_error"]["pairwise"]) < sum(r["reconstruction_error"]["none"])
    again = run_pruning(cfg)  # reused, not rerun
    assert again["wall_s"] == r["wall_s"]
    other = run_pruning(ablation(cfg, "no-peer-loss"))
    assert other["distill"] == "kd" and other["variant"] == "no-peer-loss"
    one = run_pruning(ablation(PruneConfig(task="rte", profile="smoke", keep=2, locator_epochs=3,
                                           max_steps=8), "one-per-layer"))
    assert one["heads_per_layer"] == [1, 1] and one["variant"] == "one-per-layer"
    with pytest.raises(ValueError, match="at least one head per layer needs keep >= 2, got 1"):
        run_pruning(ablation(replace(cfg, keep=1), "one-per-layer"))  # before any training
    with pytest.raises(ValueError, match=r"head sparsity must be in \[0, 1\), got 1.0"):
        run_pruning(PruneConfig(task="rte", profile="smoke", sparsity=1.0))
    with pytest.raises(ValueError, match="unknown merge 'avg'"):
        run_pruning(PruneConfig(task="rte", profile="smoke", merge="avg"))



def test_annealed_peer_weight_decays_to_zero_and_counts_training_steps_only(data):
    from dataclasses import replace
    from peerprune.losses import peer_weight
    from peerprune.pipeline import distillation_loss
    from peerprune.prune import PruneConfig, ablation
    base = PruneConfig(task="rte", profile="smoke").resolved()
    anneal = ablation(base, "peer-anneal")
    assert [peer_weight(base, s, 4) for s in range(5)] == [1.0] * 5
    assert [peer_weight(anneal, s, 4) for s in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert peer_weight(replace(anneal, peer_beta=0.1), 2, 4) == pytest.approx(0.05)
    # the loss is CE + KD + weight * peer loss, the weight advancing on training calls only
    tok, train, _ = data
    teacher, student = load_model("tiny", seed=2), load_model("tiny", seed=3)
    for m in (*teacher.modules(), *student.modules()):
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # the same batch gives the same loss in train and eval mode
    batch = next(iter(make_loader(train, tok, 8, False)))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    groups = peers.peer_groups([{}, {}], torch.ones(2, 4))
    with torch.no_grad(), Capture(teacher) as t, Capture(student) as s:
        teacher(**inputs)
        student(**inputs)
        peer = float(peer_loss(s, t, student, teacher, groups, inputs["attention_mask"].bool(), 8))
        ce_kd = float(distillation_loss(teacher, replace(base, distill="kd"))(student, batch))
    assert peer > 0
    loss_fn = distillation_loss(teacher, anneal, groups, 8, total_steps=4)
    seen = []
    for training in (True, False, True, True):
        student.train(training)
        with torch.no_grad():
            seen.append(float(loss_fn(student, batch)))
    assert seen == pytest.approx([ce_kd + w * peer for w in (1.0, 0.75, 0.75, 0.5)], rel=1e-5)


def test_budget_shift_and_its_implicit_gradient():
    """The shift puts E exactly on the target; through it, E does not move with any logit,
    so a head's gradient pushes the others the opposite way."""
    torch.manual_seed(0)
    log_alpha = torch.randn(3, 4, requires_grad=True)
    offset = 1.6
    c = budget_shift(log_alpha, 5.0, offset)
    assert float(torch.sigmoid(log_alpha.detach() + c + offset).sum()) == pytest.approx(5.0, abs=1e-6)
    a = projected_logits(log_alpha, 5.0, 0.5, offset)
    p = torch.sigmoid(a + offset)
    assert p.sum().item() == pytest.approx(5.0, abs=1e-6)
    grad, = torch.autograd.grad(p.sum(), log_alpha, retain_graph=True)
    assert grad.abs().max() < 1e-6  # E is pinned: no logit can change it
    grad, = torch.autograd.grad(p[0, 0], log_alpha)
    assert grad[0, 0] > 0 and (grad.flatten()[1:] <= 0).all()
    rows = projected_logits(log_alpha, [1.0, 2.0, 3.0], 1.0, offset)  # one target per layer
    assert torch.sigmoid(rows + offset).sum(1).tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)


def test_temperature_is_one_then_falls_to_its_final_value():
    assert temperature(0, 100, 0.1) == temperature(49, 100, 0.1) == 1.0
    assert temperature(99, 100, 0.1) == pytest.approx(0.1)
    assert 0.1 < temperature(75, 100, 0.1) < 1.0


@pytest.mark.parametrize("allocation", ["auto", "uniform"])
def test_projected_locator_follows_the_budget_and_ends_decisive(data, allocation):
    """After the ramp E stays within one head of K_t, ends within half a head of K*, and the
    kept heads are open (P >= 0.9) and the others shut (P <= 0.1) at the end."""
    tok, train, _ = data
    teacher = load_model("tiny", seed=3)
    cfg = LocatorConfig(epochs=5, lr=1e-3, lr_gates=0.2, batch_size=16, seed=0,
                        allocation=allocation)
    mask, gates, log = locate(teacher, copy.deepcopy(teacher), train, tok, keep=4, config=cfg)
    assert len(log) == 30 and int(mask.sum()) == 4
    second_half = log[len(log) // 2:]
    assert max(abs(e["expected_heads"] - e["k_t"]) for e in second_half) <= 1.0
    assert abs(log[-1]["expected_heads"] - 4) <= 0.5
    p = torch.tensor(log[-1]["open_probability"])
    assert (p[mask > 0] >= 0.9).all() and (p[mask == 0] <= 0.1).all()
    if allocation == "uniform":
        assert mask.sum(1).tolist() == [2, 2]
        assert p.sum(1).tolist() == pytest.approx([2, 2], abs=0.5)
    assert {"shift", "temperature", "k_t", "expected_heads", "open_per_layer"} <= set(log[-1])


def test_a_short_pass_is_repeated_up_to_the_projection_s_fewest_steps(shared_glue):
    """A training split shorter than `min_steps` batches is passed over again, so the
    temperature has the steps to decide the gates; the multipliers' search is left as it was."""
    from peerprune.glue import task_data
    from peerprune.locator import LocatorConfig, locate
    from peerprune.models import load_model, load_tokenizer
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=32, train_examples=32,
                         eval_examples=16)
    teacher = load_model("tiny", seed=2)
    steps = {}
    for control in ("projection", "lagrangian"):
        cfg = LocatorConfig(epochs=1, batch_size=16, lr=1e-3, min_steps=6, budget_control=control)
        _, _, log = locate(teacher, copy.deepcopy(teacher), train, tok, 4, cfg)
        steps[control] = len(log)
    assert steps == {"projection": 6, "lagrangian": 2}


def test_a_registered_fine_tuning_loss_runs_through_the_cli_results_and_tables(
        shared_glue, tmp_results, monkeypatch):
    """A fine-tuning loss is one registered function: `--distill NAME` offers it, a run
    calls it at every training step, and its runs get their own results and table column."""
    import contextlib
    import io
    from dataclasses import replace

    from peerprune import losses
    from peerprune.__main__ import main
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.report import comparison_table
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    monkeypatch.setenv("COLUMNS", "400")  # argparse would wrap a name at its hyphen
    seen = []

    @losses.register_loss("kd-layer")
    def layer_term(s):  # the attention outputs against the teacher's, as the locator's L_layer
        seen.append((s.step, s.student.training))
        return s.config.beta * losses.layer_loss(s.student_cap.output, s.teacher_cap.output,
                                                 s.tokens)

    @losses.register_loss("needs-peers", needs_peers=True)
    def peers_only(s):
        return s.student_out.loss * 0
    try:
        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
            main(["prune", "--help"])
        assert "kd-layer" in help_text.getvalue()
        base = PruneConfig(task="rte", profile="smoke", method="hisp", sparsity=0.5)
        kd = run_pruning(replace(base, distill="kd"))
        layer = run_pruning(replace(base, distill="kd-layer"))
        assert layer["distill"] == "kd-layer" and layer["config_hash"] != kd["config_hash"]
        trained = [step for step, training in seen if training]
        assert trained == list(range(len(trained))) and trained  # one call per training step
        assert layer["heads_per_layer"] == kd["heads_per_layer"]  # one head choice, shared
        table = comparison_table("smoke", tmp_results / "results", target=0.5)
        assert "hisp (kd-layer)" in table and "hisp (kd)" in table
        with pytest.raises(ValueError, match="needs no peers"):
            run_pruning(replace(base, distill="needs-peers"))
    finally:
        losses.FINE_TUNING_LOSSES.pop("kd-layer", None)
        losses.FINE_TUNING_LOSSES.pop("needs-peers", None)
