"""The mean bias: a merge fitted about the head outputs' mean, the bias taking the mean back."""
import copy

import pytest
import torch

from peerprune import anatomy, heads, peers, sequential
from peerprune.train import to_device

MASK = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 0]])  # the second layer loses every head


@torch.no_grad()
def block_outputs(model, loader, layer: int) -> torch.Tensor:
    """(tokens, d): the attention block's output of `layer` before its LayerNorm, the
    output projection's (bias included) plus the residual, over the real tokens."""
    out = []
    for batch in loader:
        batch = to_device(batch, "cpu")
        batch.pop("labels", None)
        o, r = sequential.layer_view(model, batch, layer)
        keep = batch["attention_mask"].bool()
        out.append((heads.output_projection(model, layer)(o) + r)[keep].double())
    return torch.cat(out)


def merged(teacher, loader, merge: str, bias: str, mask=MASK):
    stats = anatomy.collect_stats(teacher, loader)
    assignment = peers.assign_peers(anatomy.similarity(stats), mask)
    w = peers.merged_weights(stats, mask, assignment, merge, 1e-8, bias)
    shifts = peers.mean_shifts(stats, w, mask) if bias == "mean" else None
    return peers.merge_and_prune(copy.deepcopy(teacher), w, mask, shifts)


@pytest.mark.parametrize("merge", peers.MERGES)
def test_with_the_mean_bias_the_first_pruned_layer_keeps_the_teachers_mean(tiny_rte, merge):
    """The first layer sees the teacher's inputs in both models: there, with the mean bias,
    the pruned block's mean output over the calibration tokens is the teacher's; kept as it
    is, the bias loses the removed heads' mean (with no merge). And the fit about the mean
    is at least as close."""
    teacher, loader = tiny_rte
    want = block_outputs(teacher, loader, 0)
    got = {b: block_outputs(merged(teacher, loader, merge, b), loader, 0) for b in peers.BIASES}
    assert torch.allclose(got["mean"].mean(0), want.mean(0), atol=1e-5)
    if merge == "none":
        assert (got["keep"].mean(0) - want.mean(0)).abs().max() > 1e-3
    err = {b: float(((g - want) ** 2).sum()) for b, g in got.items()}
    if merge != "pairwise":  # the pairwise fits are head by head, not of the layer's output
        assert err["mean"] <= err["keep"] * (1 + 1e-6)


def test_a_layer_that_loses_every_head_keeps_its_mean_attention_output(tiny_rte):
    """With no head left, the merges can only drop the layer's attention output; with the
    mean bias the pruned model's emptied layer still adds, to every token, its mean over the
    calibration tokens (on the teacher's inputs), and with the bias kept only b^O."""
    teacher, loader = tiny_rte
    stats = anatomy.collect_stats(teacher, loader)
    mean = stats[1].weight @ (stats[1].total / stats[1].n_tokens)  # (W mu): the mean output
    b = heads.output_projection(teacher, 1).bias.detach().double()
    for bias, want in (("keep", b), ("mean", b + mean)):
        student = merged(teacher, loader, "joint", bias)
        assert heads.heads_per_layer(student)[1] == 0
        for batch in loader:
            batch = to_device(batch, "cpu")
            batch.pop("labels", None)
            o, _ = sequential.layer_view(student, batch, 1)
            out = heads.output_projection(student, 1)(o)[batch["attention_mask"].bool()]
            assert torch.allclose(out.double(), want.expand_as(out), atol=1e-5), bias
    assert mean.abs().max() > 1e-3  # the two differ


@pytest.mark.parametrize("merge", sequential.SEQUENTIAL_MERGES)
def test_the_sequential_fit_with_the_mean_bias_keeps_every_blocks_mean(tiny_rte, merge):
    """Up the layers, each block of the fitted student gives, on average over the
    calibration tokens, the teacher's block output: its bias takes up what the layers below
    moved, and what its own bias was moved by (a student of the locator's trains it too);
    its fit error (about the mean) is at most the first layer's error without it."""
    teacher, loader = tiny_rte
    fits = {}
    for bias in peers.BIASES:
        student = copy.deepcopy(teacher)
        torch.manual_seed(0)
        with torch.no_grad():
            for l in range(MASK.shape[0]):
                out = heads.output_projection(student, l).bias
                out.add_(0.1 * torch.randn_like(out))
        w, errors = sequential.sequential_weights(student, teacher, MASK, loader, merge,
                                                  rho=1e-8, bias=bias)
        fits[bias] = (student, errors)
    student = fits["mean"][0]
    for layer in range(MASK.shape[0]):
        want, got = block_outputs(teacher, loader, layer), block_outputs(student, loader, layer)
        assert torch.allclose(got.mean(0), want.mean(0), atol=1e-4), layer
    assert fits["mean"][1][0] <= fits["keep"][1][0] * (1 + 1e-6)
    assert fits["mean"][1][1] < 1.0 == fits["keep"][1][1]  # the emptied layer keeps its mean


def test_an_unknown_bias_is_refused_with_the_valid_ones(tiny_rte):
    teacher, loader = tiny_rte
    stats = anatomy.collect_stats(teacher, loader)
    with pytest.raises(ValueError, match="unknown bias 'median'; valid: keep, mean"):
        peers.merged_weights(stats, MASK, None, "joint", 1e-3, "median")
    with pytest.raises(ValueError, match="unknown bias 'median'; valid: keep, mean"):
        sequential.sequential_weights(copy.deepcopy(teacher), teacher, MASK, loader, "joint",
                                      bias="median")


def test_the_recorded_error_with_a_shift_is_the_error_of_the_shifted_layer(tiny_rte):
    """`reconstruction_error` with a bias change, from the Gram sums, against the same error
    computed on the head outputs themselves; the mean shift lowers it for every merge."""
    teacher, loader = tiny_rte
    stats = anatomy.collect_stats(teacher, loader)
    outputs = []
    for batch in loader:
        batch = to_device(batch, "cpu")
        batch.pop("labels", None)
        with torch.no_grad(), anatomy.Capture(teacher) as cap:
            teacher(**batch)
        outputs.append(cap.context[0][batch["attention_mask"].bool()].double())
    o = torch.cat(outputs)
    kept = heads.kept_from_mask(MASK)[0]
    for merge in peers.MERGES:
        w = peers.merged_weights(stats, MASK, None if merge != "pairwise" else
                                 peers.assign_peers(anatomy.similarity(stats), MASK),
                                 merge, 1e-3, "mean")[0]
        shift = peers.mean_shift(stats[0], w, kept)
        full, pruned = o @ stats[0].weight.T, o @ peers.kept_columns(stats[0], w, kept).T + shift
        direct = float(((full - pruned) ** 2).sum() / (full ** 2).sum())
        assert peers.reconstruction_error(stats[0], w, kept, shift) == pytest.approx(direct,
                                                                                     rel=1e-6)
        assert direct < peers.reconstruction_error(stats[0], w, kept), merge


def test_a_post_training_run_with_the_mean_bias_and_no_merge_moves_the_bias(tmp_results,
                                                                           shared_glue,
                                                                           monkeypatch):
    """`--merge none --bias mean` is a run of its own that uses the teacher's statistics: its
    recorded error, with the shift, is below the masked model's in every pruned layer."""
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.teacher import train_teacher
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    train_teacher("rte", "smoke", lr=1e-3)
    runs = {b: run_pruning(PruneConfig(task="rte", profile="smoke", method="kwon", epochs=0,
                                       sparsity=0.5, merge="none", bias=b))
            for b in peers.BIASES}
    assert runs["mean"]["variant"] == "post-none-mean-bias"
    assert runs["mean"]["config_hash"] != runs["keep"]["config_hash"]
    errors = runs["mean"]["reconstruction_error"]
    assert set(errors) == {"none", "none, mean bias"}
    assert "reconstruction_error" not in runs["keep"]  # it needs no statistics
    for l, n_kept in enumerate(runs["mean"]["heads_per_layer"]):
        if n_kept < 4:
            assert errors["none, mean bias"][l] < errors["none"][l], l
