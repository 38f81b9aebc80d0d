"""Head surgery: masks, gates, physical removal, and what a pruned model costs.

Head indices are always the *original* ones (0..H-1 in each layer of the unpruned
model), also after some heads have been removed: `config.pruned_heads` remembers which
are gone, and `kept_heads` maps the survivors back to their original numbers.
"""
from __future__ import annotations

import warnings

import torch
import transformers
from torch import nn


def unwrap(model):
    """The model itself, also when a data-parallel wrapper (Accelerate/DDP) holds it."""
    return getattr(model, "module", model)


def encoder(model):
    """The BERT encoder under a task head (`model.bert`) or the bare `BertModel`."""
    model = unwrap(model)
    return getattr(model, model.base_model_prefix, model)


def num_layers_heads(model) -> tuple[int, int]:
    config = unwrap(model).config
    return config.num_hidden_layers, config.num_attention_heads


def layers(model):
    """The transformer layers: `encoder.layer` (BERT, RoBERTa, ELECTRA) or
    `transformer.layer` (DistilBERT)."""
    base = encoder(model)
    return base.encoder.layer if hasattr(base, "encoder") else base.transformer.layer


def attention(model, layer: int):
    """One layer's attention block: BERT's (`self` = Q, K, V; `output.dense` = W^O) or
    DistilBERT's (`q_lin`, `k_lin`, `v_lin`, `out_lin` side by side)."""
    return layers(model)[layer].attention


def projections(model, layer: int):
    """(the module holding Q, K, V, their attribute names) of one layer."""
    block = attention(model, layer)
    if hasattr(block, "out_lin"):
        return block, ("q_lin", "k_lin", "v_lin")
    return block.self, ("query", "key", "value")


def output_projection(model, layer: int) -> nn.Linear:
    """W^O of one layer: its input is the heads' concatenated outputs O_l1 ... O_lH."""
    block = attention(model, layer)
    return block.out_lin if hasattr(block, "out_lin") else block.output.dense


def _set_output_projection(model, layer: int, linear: nn.Linear) -> None:
    block = attention(model, layer)
    if hasattr(block, "out_lin"):
        block.out_lin = linear
    else:
        block.output.dense = linear


def kept_heads(model) -> list[list[int]]:
    """Original indices of the heads still present, per layer."""
    n_layers, n_heads = num_layers_heads(model)
    pruned = {int(k): set(v) for k, v in removed_heads(model.config).items()}
    return [[h for h in range(n_heads) if h not in pruned.get(l, set())] for l in range(n_layers)]


PRUNED_KEY = "peerprune_pruned_heads"  # the saved config's record of the removed heads


def removed_heads(config) -> dict:
    """{layer: original indices of its removed heads}: peerprune's own record, else
    transformers 4's `pruned_heads` (checkpoints saved before the record existed)."""
    return getattr(config, PRUNED_KEY, None) or getattr(config, "pruned_heads", None) or {}


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


class EmptySelfAttention(nn.Module):
    """The self-attention of a layer whose heads are all removed: it computes nothing
    and hands the output projection an empty (B, T, 0) input, so the attention block
    adds only the projection's bias before its residual connection and LayerNorm."""

    def forward(self, hidden_states, *args, **kwargs):
        batch, length, _ = hidden_states.shape
        return hidden_states.new_zeros(batch, length, 0), None


class EmptyAttention(nn.Module):
    """DistilBERT's attention block with every head removed: only W^O's bias is left (kept
    as the zero-input `out_lin`, so the checkpoint's keys stay), added to every token."""

    def __init__(self, out_lin: nn.Linear):
        super().__init__()
        self.out_lin = out_lin

    def forward(self, *args, **kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("query"))
        return self.out_lin(x.new_zeros(*x.shape[:-1], 0)), None


def restore_empty_layers(model):
    """Give every layer that has no heads left an attention that computes nothing
    (`EmptySelfAttention`; DistilBERT: `EmptyAttention`).

    `prune` does this itself; a model *loaded* from a checkpoint with an emptied layer
    needs it once (`peerprune.models.load_model` calls it): plain `from_pretrained`
    rebuilds the zero-head layer but transformers' attention cannot run it."""
    for layer, kept in enumerate(kept_heads(model)):
        block = attention(model, layer)
        if kept or isinstance(block, EmptyAttention):
            continue
        if hasattr(block, "out_lin"):
            layers(model)[layer].attention = EmptyAttention(block.out_lin)
        else:
            block.self = EmptySelfAttention()
    return model


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


def sliced(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` with only the rows (dim 0: outputs) or columns (dim 1: inputs)
    at `index`."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = None if linear.bias is None else (
        linear.bias.detach().clone() if dim == 1 else linear.bias.detach()[index].clone())
    with warnings.catch_warnings():  # an emptied layer's zero-size Linear says so, harmlessly
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                        device=weight.device, dtype=weight.dtype)
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
        _set_output_projection(model, layer, sliced(output_projection(model, layer), index, 1))
        if hasattr(owner, "n_heads"):  # DistilBERT
            owner.n_heads, owner.dim = len(keep), len(keep) * d
        else:
            owner.num_attention_heads, owner.all_head_size = len(keep), len(keep) * d
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
