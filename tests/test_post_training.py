"""The post-training path: a head choice, a merge (or Kwon's rescaling), removal, no
fine-tuning; and Kwon et al.'s Fisher mask with its rearrangement."""

import pytest
import torch

from peerprune import anatomy, baselines, heads, peers
from peerprune.glue import task_data
from peerprune.locator import top_mask
from peerprune.models import load_model, load_tokenizer
from peerprune.train import make_loader


@pytest.fixture(scope="module")
def tiny(shared_glue):
    tok = load_tokenizer("tiny")
    train, evals = task_data("rte", tok, glue_dir=shared_glue, max_length=48,
                             train_examples=64, eval_examples=32)
    return load_model("tiny", seed=2), tok, make_loader(train, tok, 16, False)


def test_mask_tuning_lowers_every_layers_reconstruction_error(tiny):
    model, _, loader = tiny
    stats = anatomy.collect_stats(model, loader)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    kept = heads.kept_from_mask(mask)
    for s, k in zip(stats, kept):
        masked = peers.reconstruction_error(s, s.weight, k)
        tuned = peers.reconstruction_error(s, peers.rescale_weight(s, k, 1e-6), k)
        assert tuned < masked
        # one scale per kept head: the tuned columns are multiples of the original ones
        w = peers.rescale_weight(s, k, 1e-6)
        for h in k:
            cols = s.block([h])
            ratio = w[:, cols] / s.weight[:, cols]
            assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)


def test_kwon_mask_keeps_the_budget_and_rearranging_never_costs_more(tiny):
    model, _, loader = tiny
    fisher = baselines.fisher_information(model, loader)
    assert fisher.shape == (2, 4, 4) and torch.allclose(fisher, fisher.transpose(1, 2))
    first = top_mask(fisher.diagonal(dim1=1, dim2=2).float(), 3)
    mask = baselines.rearrange(first, fisher)
    assert mask.sum(1).tolist() == first.sum(1).tolist()  # counts per layer kept

    def cost(m):
        r = 1 - m.double()
        return sum(float(r[l] @ fisher[l] @ r[l]) for l in range(2))
    assert cost(mask) <= cost(first) + 1e-12
    chosen, record = baselines.kwon_mask(model, loader, 3)
    assert int(chosen.sum()) == 3 and len(record["fisher_diagonal"]) == 2


def test_post_training_run_has_no_epochs_and_its_model_reloads(shared_glue, tmp_results,
                                                                 monkeypatch):
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.train import evaluate
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    runs = {m: run_pruning(PruneConfig(task="rte", profile="smoke", method="kwon", epochs=0,
                                       merge=m, sparsity=0.5)) for m in ("none", "rescale")}
    r = runs["rescale"]
    assert r["variant"] == "post-rescale" and r["train"]["epochs"] == 0
    assert r["history"] == [{"epoch": 0, "scores": r["scores"]}] and "fine_tune_s" not in r["timings"]
    assert runs["none"]["choice"]["path"] == r["choice"]["path"]  # one choice, two recoveries
    err = r["reconstruction_error"]
    assert all(t < m for t, m in zip(err["rescale"], err["none"]) if m > 0)
    tok = load_tokenizer("tiny")
    _, evals = task_data("rte", tok, glue_dir=shared_glue, max_length=64, eval_examples=32)
    reloaded = load_model(r["checkpoint"])
    assert heads.heads_per_layer(reloaded) == r["heads_per_layer"]
    assert evaluate(reloaded, make_loader(evals["validation"], tok, 64, False), "rte") == r["scores"]
    with pytest.raises(ValueError, match="has no fine-tuning loss"):
        run_pruning(PruneConfig(task="rte", profile="smoke", epochs=0, distill="kd"))
    # an ablation on the post-training path keeps its name beside the recovery's, and its
    # own head choice: here no layer left empty with 2 of 8 heads kept
    from peerprune.prune import ablation
    spread = [run_pruning(ablation(PruneConfig(task="rte", profile="smoke", method="kwon",
                                               epochs=0, merge=m, keep=2), "one-per-layer"))
              for m in ("none", "joint")]
    assert [x["variant"] for x in spread] == ["post-none-one-per-layer", "post-joint-one-per-layer"]
    assert all(n >= 1 for n in spread[0]["heads_per_layer"]) and spread[0]["choice"]["path"] == \
        spread[1]["choice"]["path"] != r["choice"]["path"]
    from peerprune.report import post_training_table
    table = post_training_table("smoke")
    assert "| rte | 75% | kwon, one-per-layer |" in table and "| rte | 50% | kwon |" in table


def test_the_mergeable_choice_removes_a_head_its_peers_reproduce(shared_glue):
    """A head that is an exact copy of another in its layer costs the joint merge nothing:
    the choice made for the merge removes one of the two first, and keeps K* heads."""
    from peerprune import anatomy, heads, peers
    from peerprune.glue import task_data
    from peerprune.models import load_model, load_tokenizer
    from peerprune.train import make_loader
    tok = load_tokenizer("tiny")
    train, _ = task_data("rte", tok, glue_dir=shared_glue, max_length=48, train_examples=48,
                         eval_examples=16)
    model = load_model("tiny", seed=8)
    d = 8  # the tiny model's head size
    owner, names = heads.projections(model, 1)
    with torch.no_grad():  # head 2 of layer 1 becomes a copy of head 0
        for name in names:
            getattr(owner, name).weight[2 * d:3 * d] = getattr(owner, name).weight[:d]
            getattr(owner, name).bias[2 * d:3 * d] = getattr(owner, name).bias[:d]
    stats = anatomy.collect_stats(model, make_loader(train, tok, 16, False))
    mask, log = peers.mergeable_mask(stats, 5)
    assert int(mask.sum()) == 5 and len(log) == 3
    assert (log[0]["layer"], log[0]["head"]) in ((1, 0), (1, 2))
    assert log[0]["layer_error"] < 1e-3 * peers.merge_loss(stats[1], [], 1e-3)  # the ridge's bit
    assert mask[1, 0] + mask[1, 2] <= 1
    one, _ = peers.mergeable_mask(stats, 2, min_one_per_layer=True)
    assert one.sum(1).tolist() == [1.0, 1.0]
