"""Head anatomy: what each head contributes, and how much its peers already know.

In layer l, head h produces O_lh (T x d_h) and contributes C_lh = O_lh W^O_lh (T x d) to the
attention output, where W^O_lh is the h-th block of d_h rows of the output projection.
In PyTorch's Linear (y = x W^T + b) that block is `output.dense.weight[:, h*d_h:(h+1)*d_h]^T`.

Everything about contributions on calibration data (similarities, R^2, and the peer merge
in `peers.py`) follows from one small matrix per layer: the Gram matrix G = O^T O of the
concatenated head outputs over the non-padding tokens, plus their sum for centring. So
`collect_stats` makes one pass over the data and keeps only D x D numbers per layer
(D = H * d_h), never the contributions themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .heads import layers, output_projection
from .train import to_device


def head_dim(model) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


class Capture:
    """Record, in every layer, the input (concatenated head outputs O) and the output
    (MHA_l = sum_h C_lh + b^O) of the attention output projection, during the forward
    pass that the model runs anyway.

        with Capture(model) as cap:
            model(**batch)
        cap.context[l], cap.output[l]   # (B, T, h*d_h), (B, T, d)
    """

    def __init__(self, model):
        self.model = model
        n_layers = len(layers(model))
        self.context: list = [None] * n_layers
        self.output: list = [None] * n_layers
        self._handles = []

    def __enter__(self):
        for l in range(len(self.context)):
            dense = output_projection(self.model, l)
            self._handles.append(dense.register_forward_hook(self._hook(l)))
        return self

    def _hook(self, layer):
        def save(module, inputs, output):
            self.context[layer] = inputs[0]
            self.output[layer] = output
        return save

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


def contributions(context: torch.Tensor, weight: torch.Tensor, d_h: int) -> torch.Tensor:
    """Per-head contributions C (B, T, h, d) from the concatenated head outputs
    (B, T, h*d_h) and the output projection's weight (d, h*d_h); without the bias."""
    return torch.einsum("bthk,dhk->bthd", context.unflatten(-1, (-1, d_h)),
                        weight.unflatten(1, (-1, d_h)))


def head_columns(heads, d_h: int) -> torch.Tensor:
    """Column indices of the given heads' outputs in the concatenated head outputs O."""
    return torch.cat([torch.arange(h * d_h, (h + 1) * d_h) for h in heads])


@dataclass
class LayerStats:
    """Second moments of one layer's head outputs over calibration tokens (float64)."""

    gram: torch.Tensor  # (D, D): sum over tokens of o o^T, o = concatenated head outputs
    total: torch.Tensor  # (D,): sum over tokens of o
    n_tokens: int
    weight: torch.Tensor  # (d, D): the output projection W^O as stored by nn.Linear
    d_h: int

    @property
    def n_heads(self) -> int:
        return self.gram.shape[0] // self.d_h

    def centred_gram(self) -> torch.Tensor:
        mean = self.total / self.n_tokens
        return self.gram - self.n_tokens * torch.outer(mean, mean)

    def block(self, heads) -> torch.Tensor:
        """Column indices of the given heads' outputs in O."""
        return head_columns(heads, self.d_h)


@torch.no_grad()
def collect_stats(model, loader, device=None) -> list[LayerStats]:
    """One pass over `loader`: per layer, the Gram matrix of the head outputs on the
    non-padding tokens. The model should be unpruned (all heads present)."""
    device = device or next(model.parameters()).device
    model.eval()
    d_h = head_dim(model)
    grams, totals, n = None, None, 0
    with Capture(model) as cap:
        for batch in loader:
            batch = to_device(batch, device)
            batch.pop("labels", None)
            model(**batch)
            keep = batch["attention_mask"].bool()
            rows = [c[keep].double() for c in cap.context]  # (tokens, D) per layer
            if grams is None:
                grams = [torch.zeros(r.shape[1], r.shape[1], dtype=torch.float64) for r in rows]
                totals = [torch.zeros(r.shape[1], dtype=torch.float64) for r in rows]
            for l, r in enumerate(rows):
                grams[l] += (r.T @ r).cpu()
                totals[l] += r.sum(0).cpu()
            n += int(keep.sum())
    return [LayerStats(g, t, n, output_projection(model, l).weight.detach().double().cpu(), d_h)
            for l, (g, t) in enumerate(zip(grams, totals))]


def _block_sum(m: torch.Tensor, n_heads: int, d_h: int) -> torch.Tensor:
    """Sum a (D, D) matrix over its (d_h x d_h) head blocks: (H, H)."""
    return m.reshape(n_heads, d_h, n_heads, d_h).sum(dim=(1, 3))


def contribution_inner(stats: LayerStats, centred: bool = False) -> torch.Tensor:
    """(H, H) inner products <C_a, C_b> of flattened contributions over the tokens:
    sum_{i in a, j in b} G_ij (W_i . W_j), with W_i the i-th column of the weight."""
    g = stats.centred_gram() if centred else stats.gram
    k = stats.weight.T @ stats.weight  # (D, D)
    return _block_sum(g * k, stats.n_heads, stats.d_h)


def cosine_similarity(stats: LayerStats) -> torch.Tensor:
    """(H, H) cosine of the heads' flattened contributions over non-padding tokens."""
    inner = contribution_inner(stats)
    norm = inner.diagonal().clamp_min(1e-30).sqrt()
    return inner / torch.outer(norm, norm)


def linear_cka(stats: LayerStats) -> torch.Tensor:
    """(H, H) linear CKA of the heads' contributions (tokens x d, centred):
    ||C_b^T C_a||_F^2 / (||C_a^T C_a||_F ||C_b^T C_b||_F), from the centred Gram."""
    g, d_h, n = stats.centred_gram(), stats.d_h, stats.n_heads
    w = [stats.weight[:, h * d_h:(h + 1) * d_h].T for h in range(n)]  # (d_h, d) blocks
    k = [wi @ wi.T for wi in w]  # (d_h, d_h)
    cross = torch.empty(n, n, dtype=torch.float64)
    for a in range(n):
        for b in range(n):
            g_ab = g[a * d_h:(a + 1) * d_h, b * d_h:(b + 1) * d_h]
            cross[a, b] = torch.trace(g_ab @ k[b] @ g_ab.T @ k[a])
    norm = cross.diagonal().clamp_min(1e-30).sqrt()
    return cross / torch.outer(norm, norm)


def peer_r2(stats: LayerStats, ridge: float = 1e-6) -> torch.Tensor:
    """(H,) R^2 with which each head's contribution C_h is predicted by a least-squares
    fit (with intercept) on the other heads' outputs O_{-h} of the same layer."""
    g, n = stats.centred_gram(), stats.n_heads
    out = torch.empty(n, dtype=torch.float64)
    for h in range(n):
        own = stats.block([h])
        rest = stats.block([o for o in range(n) if o != h])
        w = stats.weight[:, own].T  # (d_h, d)
        g_rr = g[rest][:, rest]
        g_rr = g_rr + ridge * g_rr.diagonal().mean() * torch.eye(len(rest), dtype=g.dtype)
        g_rh = g[rest][:, own]
        total = torch.trace(w.T @ g[own][:, own] @ w)
        explained = torch.trace(w.T @ g_rh.T @ torch.linalg.solve(g_rr, g_rh) @ w)
        out[h] = explained / total.clamp_min(1e-30)
    return out


def similarity(stats: list[LayerStats], kind: str = "cosine") -> torch.Tensor:
    """(L, H, H) head similarity in every layer: `cosine` or `cka`."""
    fns = {"cosine": cosine_similarity, "cka": linear_cka}
    if kind not in fns:
        raise ValueError(f"unknown similarity {kind!r}; valid: {', '.join(fns)}")
    return torch.stack([fns[kind](s) for s in stats])
