"""Head surgery: masks, gates, physical removal, and what a pruned model costs.

Head indices are always the *original* ones (0..H-1 in each layer of the unpruned
model), also after some heads have been removed: the config remembers which are gone
(`architecture.removed_heads`), and `kept_heads` maps the survivors back to their original
numbers. Where the heads live in each model family is `architecture.py`, which ships with
every pruned checkpoint.
"""
from __future__ import annotations

import torch
import transformers
from torch import nn

from .architecture import (PRUNED_KEY, EmptyAttention, EmptySelfAttention,  # noqa: F401
                           attention, encoder, layers, linear, output_projection, projections,
                           removed_heads, restore_empty_layers, set_head_count,
                           set_output_projection, unwrap)


def num_layers_heads(model) -> tuple[int, int]:
    config = unwrap(model).config
    return config.num_hidden_layers, config.num_attention_heads


def kept_heads(model) -> list[list[int]]:
    """Original indices of the heads still present, per layer."""
    n_layers, n_heads = num_layers_heads(model)
    pruned = {int(k): set(v) for k, v in removed_heads(model.config).items()}
    return [[h for h in range(n_heads) if h not in pruned.get(l, set())] for l in range(n_layers)]


def heads_per_layer(model) -> list[int]:
    return [len(k) for k in kept_heads(model)]


def mask_from_kept(kept: list[list[int]], n_heads: int) -> torch.Tensor:
    """A 0/1 (layers x heads) mask from lists of kept head indices."""
    mask = torch.zeros(len(kept), n_heads)
    for layer, heads in enumerate(kept):
        mask[layer, list(heads)] = 1.0
    return mask


def kept_from_mask(mask: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(row > 0).flatten().tolist() for row in mask]


class gated:
    """Gate every head through the model's own modules, without `head_mask`:

        with heads.gated(model, mask):
            model(**batch)

    A forward pre-hook on each layer's output projection scales head h's slice of its input
    by mask[l, h], which is m_lh * O_lh before W^O: the same as a head mask, and it works
    where `head_mask` is gone (transformers 5). `mask` is (layers x heads), or
    (layers x batch x heads) for one gate per example; it may require grad."""

    def __init__(self, model, mask: torch.Tensor):
        self.model, self.mask, self.handles = model, mask, []

    def __enter__(self):
        n_layers = num_layers_heads(self.model)[0]
        for l in range(n_layers):
            dense = output_projection(self.model, l)
            self.handles.append(dense.register_forward_pre_hook(self._hook(l)))
        return self

    def _hook(self, layer: int):
        config = unwrap(self.model).config
        d_h = config.hidden_size // config.num_attention_heads

        def scale(module, args):
            (x,) = args  # (batch, tokens, heads * d_h)
            m = self.mask[layer].to(x.dtype)
            n = m.shape[-1]
            if x.shape[-1] != n * d_h:
                raise ValueError(f"layer {layer} has {x.shape[-1] // d_h} heads, the mask "
                                 f"{n}: gate an unpruned model")
            gate = m[None, None, :, None] if m.dim() == 1 else m[:, None, :, None]
            return (x.unflatten(-1, (n, -1)) * gate).flatten(-2),
        return scale

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()


# transformers 5 removed `head_mask` (a mask passed there is ignored) and `prune_heads`
HEAD_MASK = int(transformers.__version__.split(".")[0]) < 5


def masked(model, mask: torch.Tensor, **inputs):
    """`model(**inputs)` with head h of layer l scaled by mask[l, h] ((layers x heads), or
    (layers x batch x heads): one gate per example). transformers 4 takes it as its
    `head_mask`, which the committed results were computed with; transformers 5 has none, so
    there `gated`'s hooks apply it (the same numbers to float rounding)."""
    if HEAD_MASK:
        m = mask if mask.dim() == 2 else mask[:, :, :, None, None]
        return model(**inputs, head_mask=m)
    with gated(model, mask):
        return model(**inputs)


def check_mask(model, mask: torch.Tensor) -> None:
    """Refuse a mask of the wrong shape, naming the shape the model needs."""
    shape = tuple(num_layers_heads(model))
    if tuple(mask.shape) != shape:
        raise ValueError(f"head mask has shape {tuple(mask.shape)}, the model needs {shape} "
                         "(layers x heads)")


def prune(model, mask: torch.Tensor):
    """Physically remove the heads where `mask` is 0 (Q, K, V rows and W^O columns).

    `mask` is (layers x heads) over the original head indices; heads already removed
    must be 0 in it. A layer may lose all its heads: its attention is then skipped
    entirely (see `EmptySelfAttention`). Nothing is changed if the mask is refused.
    Returns the model.
    """
    check_mask(model, mask)
    present = mask_from_kept(kept_heads(model), mask.shape[1])
    revived = (mask > 0) & (present == 0)
    if revived.any():
        raise ValueError(f"the mask keeps heads that were already removed: "
                         f"{kept_from_mask(revived.float())}")
    to_prune = {l: [h for h in range(mask.shape[1]) if mask[l, h] == 0 and present[l, h] == 1]
                for l in range(mask.shape[0])}
    remove_heads(model, {l: hs for l, hs in to_prune.items() if hs})
    return restore_empty_layers(model)


def sliced(old: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `old` with only the rows (dim 0: outputs) or columns (dim 1: inputs)
    at `index`."""
    weight = old.weight.detach().index_select(dim, index).clone()
    bias = None if old.bias is None else (
        old.bias.detach().clone() if dim == 1 else old.bias.detach()[index].clone())
    new = linear(weight.shape[1], weight.shape[0], bias is not None, like=old)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def remove_heads(model, to_remove: dict[int, list[int]]):
    """Slice heads out of the model, without transformers' `prune_heads` (gone in 5):
    {layer: original head indices} loses its Q, K, V rows and its W^O columns, and the
    attention's head count shrinks. Recorded in the config under `PRUNED_KEY`, and as
    `pruned_heads`, which transformers 4 reads (its plain `from_pretrained` then rebuilds the
    pruned shapes, also of a model pruned on 5)."""
    d = model.config.hidden_size // model.config.num_attention_heads
    record = {int(k): sorted(v) for k, v in removed_heads(model.config).items()}
    for layer, gone in to_remove.items():
        present = kept_heads(model)[layer]
        keep = [i for i, h in enumerate(present) if h not in set(gone)]
        index = torch.tensor([i * d + j for i in keep for j in range(d)], dtype=torch.long)
        owner, names = projections(model, layer)
        for name in names:
            setattr(owner, name, sliced(getattr(owner, name), index, 0))
        set_output_projection(model, layer, sliced(output_projection(model, layer), index, 1))
        set_head_count(owner, len(keep), d)
        record[layer] = sorted(set(record.get(layer, [])) | set(gone))
        block = attention(model, layer)
        if hasattr(block, "pruned_heads"):  # transformers 4's own bookkeeping
            block.pruned_heads = block.pruned_heads | set(gone)
    setattr(model.config, PRUNED_KEY, dict(sorted(record.items())))
    model.config.pruned_heads = {l: list(hs) for l, hs in record.items()}  # what 4 reads
    return model


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def flops(model, seq_len: int = 128) -> int:
    """Multiply-add FLOPs (2 per MAC) of one sequence of `seq_len` tokens through the
    encoder, the pooler and the classifier (embeddings and softmax are not counted)."""
    cfg = model.config
    d, T = cfg.hidden_size, seq_len
    d_ff = getattr(cfg, "intermediate_size", None) or cfg.hidden_dim  # DistilBERT: hidden_dim
    d_h = d // cfg.num_attention_heads
    total = 0
    for h in heads_per_layer(model):
        inner = h * d_h
        total += 2 * T * d * 3 * inner  # Q, K, V projections
        total += 2 * 2 * T * T * inner  # scores and weighted sum of values
        total += 2 * T * inner * d  # output projection W^O
        total += 2 * 2 * T * d * d_ff  # feed-forward
    total += 2 * d * d + 2 * d * cfg.num_labels  # pooler, classifier
    return total
