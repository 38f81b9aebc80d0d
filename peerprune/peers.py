"""Peer distillation, steps 1-3: assign each pruned head a retained peer, fold the pruned
head into it in closed form, then remove the pruned heads.

Weights follow nn.Linear: the output projection's weight W is (d, H*d_h), and head h's
block W^O_h of the method's notation is W[:, h*d_h:(h+1)*d_h]^T (d_h x d).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .anatomy import LayerStats
from .heads import kept_from_mask, output_projection, prune


def assign_peers(similarity: torch.Tensor, mask: torch.Tensor) -> list[dict[int, int]]:
    """r(p) = argmax over retained r of sim(C_p, C_r), in each layer: {pruned: peer}."""
    peers = []
    for l, row in enumerate(mask):
        kept = torch.nonzero(row > 0).flatten()
        layer = {}
        for p in torch.nonzero(row == 0).flatten().tolist():
            if len(kept):
                layer[p] = int(kept[similarity[l, p, kept].argmax()])
        peers.append(layer)
    return peers


def peer_groups(peers: list[dict[int, int]], mask: torch.Tensor) -> list[dict[int, list[int]]]:
    """Per layer, each retained head r with the heads whose knowledge it carries: [r, p...]."""
    groups = []
    for l, kept in enumerate(kept_from_mask(mask)):
        g = {r: [r] for r in kept}
        for p, r in sorted(peers[l].items()):
            g[r].append(p)
        groups.append(g)
    return groups


def _ridge_solve(a: torch.Tensor, b: torch.Tensor, rho: float) -> torch.Tensor:
    """(a + rho * mean(diag a) * I)^-1 b: ridge relative to the scale of the features."""
    scale = a.diagonal().mean().clamp_min(1e-30)
    return torch.linalg.solve(a + rho * scale * torch.eye(a.shape[0], dtype=a.dtype), b)


def pairwise_merge_weight(stats: LayerStats, peers: dict[int, int], rho: float) -> torch.Tensor:
    """The layer's new W^O after folding each pruned head p into its peer r:
    M_p = argmin ||O_r M - O_p||^2 + ridge, then W^O_r += M_p W^O_p (pruned columns kept,
    they are removed afterwards)."""
    w = stats.weight.clone()
    for p, r in peers.items():
        cr, cp = stats.block([r]), stats.block([p])
        m = _ridge_solve(stats.gram[cr][:, cr], stats.gram[cr][:, cp], rho)  # (d_h, d_h)
        # block form W^O_r += M W^O_p is, in nn.Linear's layout, W[:, r] += W[:, p] M^T
        w[:, cr] += stats.weight[:, cp] @ m.T
    return w


def joint_merge_weight(stats: LayerStats, kept: list[int], rho: float) -> torch.Tensor:
    """The layer's new W^O whose retained columns reproduce the full sum_h C_h by ridge
    regression on the retained heads' outputs (pruned columns set to zero)."""
    if not kept:
        return torch.zeros_like(stats.weight)
    cols = stats.block(kept)
    g = stats.gram
    # least squares O_R X ~ O W^T: X = (G_RR + ridge)^-1 G_R: W^T, and W_R = X^T
    x = _ridge_solve(g[cols][:, cols], g[cols] @ stats.weight.T, rho)
    w = torch.zeros_like(stats.weight)
    w[:, cols] = x.T
    return w


def kept_columns(stats: LayerStats, new_weight: torch.Tensor, kept: list[int]) -> torch.Tensor:
    """`new_weight` with the pruned heads' columns set to zero: the layer once they are gone."""
    w_new = torch.zeros_like(stats.weight)
    if kept:
        cols = stats.block(kept)
        w_new[:, cols] = new_weight[:, cols]
    return w_new


def reconstruction_error(stats: LayerStats, new_weight: torch.Tensor, kept: list[int],
                         shift: torch.Tensor | None = None) -> float:
    """Relative squared error, over the calibration tokens, between the full attention
    output O W^T and the output of the retained heads alone under `new_weight`, plus
    `shift` (a bias change, `mean_shift`) when given: with D = W - W'_K,
    sum_t ||D o_t - s||^2 = tr(D G D^T) - 2 s^T D sum_t o_t + n ||s||^2."""
    diff = stats.weight - kept_columns(stats, new_weight, kept)
    err = torch.trace(diff @ stats.gram @ diff.T)
    if shift is not None:
        err = err - 2 * shift @ diff @ stats.total + stats.n_tokens * shift @ shift
    ref = torch.trace(stats.weight @ stats.gram @ stats.weight.T)
    return float(err / ref)


def rescale_weight(stats: LayerStats, kept: list[int], rho: float) -> torch.Tensor:
    """Kwon et al.'s mask tuning: one scale s_h per kept head, by least squares, so that
    sum_{h kept} s_h C_h reproduces the full sum_h C_h over the calibration tokens. With
    <C_h, C_g> = trace(W_h G_hg W_g^T), the scales solve a (K_l x K_l) system; the kept
    heads' columns of W^O are multiplied by them (pruned columns set to zero)."""
    w = torch.zeros_like(stats.weight)
    if not kept:
        return w
    n = stats.n_heads
    blocks = [stats.weight[:, stats.block([h])] for h in range(n)]
    inner = torch.stack([torch.stack([torch.trace(blocks[h] @ stats.gram[stats.block([h])][
        :, stats.block([g])] @ blocks[g].T) for g in range(n)]) for h in range(n)])
    a = inner[kept][:, kept]
    scales = _ridge_solve(a, inner[kept].sum(1, keepdim=True), rho)[:, 0]
    for s, h in zip(scales, kept):
        w[:, stats.block([h])] = s * blocks[h]
    return w


def merge_loss(stats: LayerStats, kept: list[int], rho: float) -> float:
    """The layer's squared error over the calibration tokens, sum over tokens of
    ||O W^T - O_K W_K'^T||^2, left after the joint merge onto the kept heads K."""
    diff = stats.weight - joint_merge_weight(stats, kept, rho)
    return float(torch.trace(diff @ stats.gram @ diff.T))


def mergeable_mask(stats: list[LayerStats], keep: int, rho: float = 1e-3,
                   min_one_per_layer: bool = False) -> tuple[torch.Tensor, list[dict]]:
    """A head choice made for the merge: starting from every head, remove one at a time the
    head, in any layer, whose removal adds the least to its layer's error after the joint
    merge (`merge_loss`): the heads the other heads of their layer reproduce best go first.
    Returns the mask and, per removal, the head and its layer's error."""
    n_layers, n_heads = len(stats), stats[0].n_heads
    kept = [list(range(n_heads)) for _ in range(n_layers)]
    error = [0.0] * n_layers
    log = []
    while sum(map(len, kept)) > keep:
        best = None
        for l, layer in enumerate(kept):
            if min_one_per_layer and len(layer) <= 1:
                continue
            for h in layer:
                e = merge_loss(stats[l], [k for k in layer if k != h], rho)
                if best is None or e - error[l] < best[0]:
                    best = (e - error[l], l, h, e)
        if best is None:
            raise ValueError(f"cannot keep {keep} heads with at least one per layer")
        _, l, h, error[l] = best
        kept[l].remove(h)
        log.append({"layer": l, "head": h, "layer_error": error[l]})
    mask = torch.zeros(n_layers, n_heads)
    for l, layer in enumerate(kept):
        mask[l, layer] = 1.0
    return mask, log


def centred(stats: LayerStats) -> LayerStats:
    """The layer with its head outputs' mean taken out, O - 1 mu^T (mu = total / n_tokens):
    a merge fitted on these reproduces how the layer's output varies about its mean, and
    `mean_shift` of the original stats puts the mean back through the bias (of these, with
    their total zero, it is zero)."""
    return replace(stats, gram=stats.centred_gram(), total=torch.zeros_like(stats.total))


def mean_shift(stats: LayerStats, new_weight: torch.Tensor, kept: list[int]) -> torch.Tensor:
    """(W - W'_K) mu, (d,): what the layer's output loses on average over the calibration
    tokens once only the kept heads remain under `new_weight`. Added to the output
    projection's bias b^O, the pruned layer gives the teacher's mean output; a head removed
    with no merge at all then takes away only its variation."""
    mean = stats.total / stats.n_tokens
    return (stats.weight - kept_columns(stats, new_weight, kept)) @ mean


MERGES = ("pairwise", "joint", "rescale", "none")
# what happens to the output projection's bias b^O: kept as it is, or (mean) every merge is
# fitted on the centred head outputs (`centred`) and b^O takes the mean back (`mean_shift`)
BIASES = ("keep", "mean")


def merged_weights(stats: list[LayerStats], mask: torch.Tensor, peers, merge: str = "pairwise",
                   rho: float = 1e-3, bias: str = "keep") -> list[torch.Tensor]:
    """Every layer's output projection after the merge (`pairwise`, `joint`, `rescale` or
    `none`), fitted on the head outputs as they are or (`bias` "mean") centred; with "mean",
    `mean_shifts` gives what the biases take."""
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}; valid: {', '.join(MERGES)}")
    if bias not in BIASES:
        raise ValueError(f"unknown bias {bias!r}; valid: {', '.join(BIASES)}")
    if bias == "mean":
        stats = [centred(s) for s in stats]
    out = []
    for l, kept in enumerate(kept_from_mask(mask)):
        if merge == "pairwise":
            out.append(pairwise_merge_weight(stats[l], peers[l], rho))
        elif merge == "joint":
            out.append(joint_merge_weight(stats[l], kept, rho))
        elif merge == "rescale":
            out.append(rescale_weight(stats[l], kept, rho))
        else:
            out.append(stats[l].weight)
    return out


def mean_shifts(stats: list[LayerStats], weights: list[torch.Tensor],
                mask: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's `mean_shift` under the merged `weights`."""
    return [mean_shift(s, w, k) for s, w, k in zip(stats, weights, kept_from_mask(mask))]


@torch.no_grad()
def merge_and_prune(model, weights: list[torch.Tensor], mask: torch.Tensor, shifts=None):
    """Write the merged output projections into an unpruned model, add `shifts` (if given)
    to their biases, then remove the pruned heads physically. Returns the model."""
    for l, w in enumerate(weights):
        dense = output_projection(model, l)
        dense.weight.copy_(w.to(dense.weight.dtype))
        if shifts is not None:
            dense.bias.add_(shifts[l].to(dense.bias.dtype))
    return prune(model, mask)
