"""Sequential calibration: fit each layer's output projection on the model already pruned
below it, so that the layer's attention block gives what the teacher's gives.

`peers.py` fits layer l on the teacher's own head outputs O_l: each layer as if every layer
below it were still whole. Once the layers below are pruned, layer l sees other inputs, and
the residual stream that its attention output is added to has drifted too. The sequential
fit (Kwon et al. 2022 tune their per-head scales this way) goes up the layers; at layer l,
on the calibration tokens, with the layers below already fitted:

    O'_l   the student's head outputs at layer l         (T x D)
    r'_l   the student's input to layer l (the residual)  (T x d)
    y_l  = O_l W_l^T + r_l - r'_l                        (T x d), the teacher's block output
                                                          minus the student's residual
    min_X ||O'_lK X - y_l||^2 + ridge,   X -> the kept columns of the new W_l

so whatever the layers below lost, layer l makes up what it can. Everything comes from two
sums over the tokens, G' = O'^T O' and the cross term O'^T y (`DriftStats`). `joint` fits a
free (d_h x d) block per kept head; `rescale` (Kwon's mask tuning) one scale per kept head.
With nothing pruned below (O' = O, r' = r, so O'^T y = G W^T) they are `peers.py`'s
`joint_merge_weight` and `rescale_weight`: the teacher-fitted merges are the first layer's
case of these.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .anatomy import head_columns, head_dim
from .heads import kept_from_mask, layers, output_projection
from .peers import BIASES, _ridge_solve
from .train import to_device

SEQUENTIAL_MERGES = ("joint", "rescale")  # what the sequential fit can solve for


@dataclass
class DriftStats:
    """One layer's sums over the calibration tokens (float64), student against teacher."""

    gram: torch.Tensor  # (D, D): sum of o' o'^T, o' = the student's concatenated head outputs
    cross: torch.Tensor  # (D, d): sum of o' y^T, y = the target above
    target: float  # sum of ||y||^2
    weight: torch.Tensor  # (d, D): the teacher's output projection of the layer
    d_h: int
    o_sum: torch.Tensor  # (D,): sum of o'
    y_sum: torch.Tensor  # (d,): sum of y
    n_tokens: int

    def centred(self) -> "DriftStats":
        """The same sums about the means of o' and y: a fit on these reproduces how y varies
        about its mean, and `shift` puts the mean back through the bias."""
        n, mo, my = self.n_tokens, self.o_sum / self.n_tokens, self.y_sum / self.n_tokens
        return replace(self, gram=self.gram - n * torch.outer(mo, mo),
                       cross=self.cross - n * torch.outer(mo, my),
                       target=self.target - n * float(my @ my),
                       o_sum=torch.zeros_like(self.o_sum), y_sum=torch.zeros_like(self.y_sum))

    def shift(self, new_weight: torch.Tensor) -> torch.Tensor:
        """mean(y) - W' mean(o'), (d,): what the fitted layer (pruned columns zero) leaves
        of the target on average; the bias takes it."""
        return (self.y_sum - new_weight @ self.o_sum) / self.n_tokens

    def block(self, heads) -> torch.Tensor:
        """Column indices of the given heads' outputs in O'."""
        return head_columns(heads, self.d_h)


class _Reached(Exception):
    """Raised by a hook once the layer's inputs are seen: the layers above need not run."""


def layer_view(model, batch, layer: int):
    """(head outputs O, residual input r) of `layer` on a batch, (B, T, D) and (B, T, d),
    running the model only up to that layer's output projection."""
    x = LayerInput(model, batch)
    for below in range(layer):
        x.hidden = x.step(model, below)[1]
    return x.step(model, layer, heads_only=True)[0], x.hidden


def _pair(o_s, o_t, r_s, r_t, w, keep):
    """(O'_l, y_l) over a batch's real tokens, float64: y = O_l W_l^T + r_l - r'_l."""
    return o_s[keep].double(), o_t[keep].double() @ w.T + (r_t[keep] - r_s[keep]).double()


def _sums(pairs, w: torch.Tensor, d_h: int) -> DriftStats:
    """`DriftStats` from (O', y) pairs, one a batch."""
    gram = cross = o_sum = y_sum = None
    target, n = 0.0, 0
    for o_s, y in pairs:
        if gram is None:
            gram = torch.zeros(o_s.shape[1], o_s.shape[1], dtype=torch.float64)
            cross = torch.zeros(o_s.shape[1], y.shape[1], dtype=torch.float64)
            o_sum = torch.zeros(o_s.shape[1], dtype=torch.float64)
            y_sum = torch.zeros(y.shape[1], dtype=torch.float64)
        gram += (o_s.T @ o_s).cpu()
        cross += (o_s.T @ y).cpu()
        target += float((y * y).sum())
        o_sum += o_s.sum(0).cpu()
        y_sum += y.sum(0).cpu()
        n += o_s.shape[0]
    return DriftStats(gram, cross, target, w.cpu(), d_h, o_sum, y_sum, n)


def _batches(loader, device):
    for batch in loader:
        batch = to_device(batch, device)
        batch.pop("labels", None)
        yield batch


@torch.no_grad()
def drift_stats(student, teacher, loader, layer: int, device=None) -> DriftStats:
    """`DriftStats` of `layer` in one pass over `loader` (both models unpruned: the student's
    pruned heads have zero columns in their output projection). This is the definition;
    `sequential_weights` gets the same sums without rerunning the layers below."""
    device = device or next(teacher.parameters()).device
    student.eval()
    teacher.eval()
    w = output_projection(teacher, layer).weight.detach().double()

    def pairs():
        for batch in _batches(loader, device):
            o_t, r_t = layer_view(teacher, batch, layer)
            o_s, r_s = layer_view(student, batch, layer)
            yield _pair(o_s, o_t, r_s, r_t, w, batch["attention_mask"].bool())
    return _sums(pairs(), w, head_dim(teacher))


class LayerInput:
    """A batch as an encoder layer receives it: the hidden states, and the other arguments
    the encoder passes every layer (the attention mask, in whatever form the layer takes);
    `keep` marks the real tokens. `step` moves it up one layer."""

    def __init__(self, model, batch):
        seen = {}

        def first(module, args, kwargs):
            seen["args"], seen["kwargs"] = args, kwargs
            raise _Reached
        hook = layers(model)[0].register_forward_pre_hook(first, with_kwargs=True)
        try:
            model(**batch)
        except _Reached:
            pass
        finally:
            hook.remove()
        args, self.kwargs = seen["args"], dict(seen["kwargs"])
        if args:
            self.hidden, self.args = args[0], args[1:]
        else:
            self.hidden, self.args = self.kwargs.pop("hidden_states"), ()
        self.keep = batch["attention_mask"].bool()

    def step(self, model, layer: int, heads_only: bool = False):
        """Run `layer` of `model` on these hidden states: (its head outputs O, its output),
        the output None when `heads_only` stops it at the output projection."""
        seen = {}

        def heads_out(module, inputs, output):
            seen["o"] = inputs[0]
            if heads_only:
                raise _Reached
        hook = output_projection(model, layer).register_forward_hook(heads_out)
        try:
            out = layers(model)[layer](self.hidden, *self.args, **self.kwargs)
        except _Reached:
            out = None
        finally:
            hook.remove()
        if isinstance(out, tuple):
            out = out[0]
        return seen["o"], out


def fit_joint(stats: DriftStats, kept: list[int], rho: float) -> torch.Tensor:
    """The new W whose kept columns X^T solve min ||O'_K X - y||^2 + ridge (others zero)."""
    w = torch.zeros_like(stats.weight)
    if kept:
        cols = stats.block(kept)
        w[:, cols] = _ridge_solve(stats.gram[cols][:, cols], stats.cross[cols], rho).T
    return w


def fit_rescale(stats: DriftStats, kept: list[int], rho: float) -> torch.Tensor:
    """One scale s_h per kept head: min ||sum_h s_h O'_h W_h^T - y||^2 + ridge, with
    <O'_h W_h^T, O'_g W_g^T> = trace(W_h G'_hg W_g^T) and <O'_h W_h^T, y> = trace(W_h X_h),
    X_h the head's rows of the cross term; the kept columns of W are scaled (others zero)."""
    w = torch.zeros_like(stats.weight)
    if not kept:
        return w
    blocks = [stats.block([h]) for h in kept]
    a = torch.stack([torch.stack([torch.trace(stats.weight[:, bh] @ stats.gram[bh][:, bg]
                                              @ stats.weight[:, bg].T) for bg in blocks])
                     for bh in blocks])
    b = torch.stack([torch.trace(stats.weight[:, bh] @ stats.cross[bh]) for bh in blocks])
    scales = _ridge_solve(a, b[:, None], rho)[:, 0]
    for s, bh in zip(scales, blocks):
        w[:, bh] = s * stats.weight[:, bh]
    return w


def fit_error(stats: DriftStats, new_weight: torch.Tensor, kept: list[int]) -> float:
    """||O'_K W'_K^T - y||^2 / ||y||^2 over the calibration tokens."""
    if not kept or stats.target == 0:
        return 1.0
    cols = stats.block(kept)
    x = new_weight[:, cols].T  # (D_K, d)
    err = (stats.target - 2 * torch.trace(x.T @ stats.cross[cols])
           + torch.trace(x.T @ stats.gram[cols][:, cols] @ x))
    return float(err / stats.target)


FITS = {"joint": fit_joint, "rescale": fit_rescale}


@torch.no_grad()
def sequential_weights(student, teacher, mask: torch.Tensor, loader, merge: str,
                       rho: float = 1e-3, device=None,
                       bias: str = "keep") -> tuple[list[torch.Tensor], list[float]]:
    """Fit the output projections of `student` (unpruned, a copy of the teacher or the
    locator's weights) layer by layer from the bottom, writing each into it before the next
    layer's statistics are taken; with `bias` "mean" each layer is fitted about the means
    and its bias in `student` takes `DriftStats.shift`. Returns the weights (pruned columns
    zero, for `peers.merge_and_prune`) and each layer's relative fit error."""
    if merge not in FITS:
        raise ValueError(f"the sequential fit solves merge {' or '.join(FITS)}, not {merge!r}")
    if bias not in BIASES:
        raise ValueError(f"unknown bias {bias!r}; valid: {', '.join(BIASES)}")
    device = device or next(teacher.parameters()).device
    student.eval()
    teacher.eval()
    # each model's hidden states are carried up one layer at a time: every layer runs
    # once for the teacher and twice for the student (before and after its fit)
    t_in = [LayerInput(teacher, b) for b in _batches(loader, device)]
    s_in = [LayerInput(student, b) for b in _batches(loader, device)]
    weights, errors = [], []
    for l, kept in enumerate(kept_from_mask(mask)):
        w_t = output_projection(teacher, l).weight.detach().double()
        above = []

        def pairs():
            for t, s in zip(t_in, s_in):
                o_t, out = t.step(teacher, l)
                above.append(out)
                o_s, _ = s.step(student, l, heads_only=True)
                yield _pair(o_s, o_t, s.hidden, t.hidden, w_t, t.keep)
        stats = _sums(pairs(), w_t, head_dim(teacher))
        fit_on = stats.centred() if bias == "mean" else stats
        w = FITS[merge](fit_on, kept, rho)
        dense = output_projection(student, l)
        dense.weight.copy_(w.to(dense.weight.dtype))
        if bias == "mean":  # y leaves the biases out: a student's own (the locator's) differs
            b_t = output_projection(teacher, l).bias.detach().double()
            shift = stats.shift(w) + b_t - dense.bias.detach().double()
            dense.bias.add_(shift.to(dense.bias.dtype))
            # about the means: what is left once the bias has taken the shift
            error = (fit_error(fit_on, w, kept) * fit_on.target / stats.target
                     if stats.target else 1.0)
        else:
            error = fit_error(stats, w, kept)
        weights.append(w)
        errors.append(error)
        for t, s, out in zip(t_in, s_in, above):
            t.hidden, s.hidden = out, s.step(student, l)[1]
    return weights, errors


@torch.no_grad()
def output_drift(student, teacher, loader, device=None) -> float:
    """||h' - h||^2 / ||h||^2 of the encoders' last hidden states over the calibration
    tokens: how far the pruned model's output is from the teacher's (0: the same)."""
    device = device or next(teacher.parameters()).device
    student.eval()
    teacher.eval()
    err = ref = 0.0
    for batch in loader:
        batch = to_device(batch, device)
        batch.pop("labels", None)
        keep = batch["attention_mask"].bool()
        want = teacher(**batch, output_hidden_states=True).hidden_states[-1][keep].double()
        got = student(**batch, output_hidden_states=True).hidden_states[-1][keep].double()
        err += float(((got - want) ** 2).sum())
        ref += float((want ** 2).sum())
    return err / ref
