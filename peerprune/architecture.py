"""Where the heads live in a BERT-family model, and model classes that rebuild a pruned
checkpoint from its config alone.

This file imports torch and transformers and nothing of peerprune: `models.save_model`
copies it beside every pruned checkpoint and names its class in the config's `auto_map`,
so that plain transformers loads the pruned model on any version, 5 included (which lost
`prune_heads` and with it the rebuilding of pruned shapes):

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

Head indices are always the original ones (0..H-1 of the unpruned layer); the config
records the removed ones under `PRUNED_KEY`.
"""
from __future__ import annotations

import warnings

import transformers
from torch import nn

PRUNED_KEY = "peerprune_pruned_heads"  # the saved config's record of the removed heads


def unwrap(model):
    """The model itself, also when a data-parallel wrapper (Accelerate/DDP) holds it."""
    return getattr(model, "module", model)


def encoder(model):
    """The BERT encoder under a task head (`model.bert`) or the bare `BertModel`."""
    model = unwrap(model)
    return getattr(model, model.base_model_prefix, model)


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


def set_output_projection(model, layer: int, linear: nn.Linear) -> None:
    block = attention(model, layer)
    if hasattr(block, "out_lin"):
        block.out_lin = linear
    else:
        block.output.dense = linear


def head_count(owner) -> int:
    """How many heads the module holding Q, K, V computes (0 once a layer is emptied)."""
    return getattr(owner, "n_heads", getattr(owner, "num_attention_heads", 0))


def set_head_count(owner, n: int, d_head: int) -> None:
    if hasattr(owner, "n_heads"):  # DistilBERT
        owner.n_heads, owner.dim = n, n * d_head
    else:
        owner.num_attention_heads, owner.all_head_size = n, n * d_head


def removed_heads(config) -> dict:
    """{layer: original indices of its removed heads}: peerprune's own record, else
    transformers 4's `pruned_heads` (checkpoints saved before the record existed)."""
    return getattr(config, PRUNED_KEY, None) or getattr(config, "pruned_heads", None) or {}


def linear(n_in: int, n_out: int, bias: bool, like: nn.Linear | None = None) -> nn.Linear:
    """An nn.Linear (on `like`'s device and dtype); an emptied layer's has zero size."""
    where = {} if like is None else {"device": like.weight.device, "dtype": like.weight.dtype}
    with warnings.catch_warnings():  # an emptied layer's zero-size Linear says so, harmlessly
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        return nn.Linear(n_in, n_out, bias=bias, **where)


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
    (`EmptySelfAttention`; DistilBERT: `EmptyAttention`): transformers' own attention
    cannot run a layer of zero heads."""
    config = unwrap(model).config
    for layer, gone in removed_heads(config).items():
        block = attention(model, int(layer))
        if len(gone) < config.num_attention_heads or isinstance(block, EmptyAttention):
            continue
        if hasattr(block, "out_lin"):
            layers(model)[int(layer)].attention = EmptyAttention(block.out_lin)
        else:
            block.self = EmptySelfAttention()
    return model


def shape_pruned(model):
    """A model built from a pruned checkpoint's config, given the shapes of its kept heads:
    Q, K and V with d_h rows per kept head, W^O with as many columns, the head count to
    match, and an emptied layer an attention that computes nothing. The weights are
    placeholders for `from_pretrained` to fill; a layer that has its shapes already
    (transformers 4 prunes from `config.pruned_heads` as it builds) is left as it is."""
    config = unwrap(model).config
    d = config.hidden_size // config.num_attention_heads
    for layer, gone in removed_heads(config).items():
        layer, keep = int(layer), config.num_attention_heads - len(gone)
        owner, names = projections(model, layer)
        if head_count(owner) == keep:
            continue
        for name in names:
            old = getattr(owner, name)
            setattr(owner, name, linear(old.in_features, keep * d, old.bias is not None, old))
        old = output_projection(model, layer)
        set_output_projection(model, layer,
                              linear(keep * d, old.out_features, old.bias is not None, old))
        set_head_count(owner, keep, d)
    return restore_empty_layers(model)


class RebuildsPruned:
    """Put before a transformers class: its `__init__` builds the whole architecture from
    the config, then `shape_pruned` cuts it to the pruned shapes the weights were saved in."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        shape_pruned(self)


# Each named as the transformers class it rebuilds, so that what checks a model's class by
# name (a `pipeline`'s task check) takes it as that class.
class BertForSequenceClassification(RebuildsPruned, transformers.BertForSequenceClassification):
    pass


class RobertaForSequenceClassification(RebuildsPruned,
                                       transformers.RobertaForSequenceClassification):
    pass


class ElectraForSequenceClassification(RebuildsPruned,
                                       transformers.ElectraForSequenceClassification):
    pass


class DistilBertForSequenceClassification(RebuildsPruned,
                                          transformers.DistilBertForSequenceClassification):
    pass


PRUNED_CLASSES = (BertForSequenceClassification, RobertaForSequenceClassification,
                  ElectraForSequenceClassification, DistilBertForSequenceClassification)


def pruned_class(model_or_class):
    """The class above that rebuilds a pruned model of this kind (or None): the one whose
    transformers class the model is."""
    cls = model_or_class if isinstance(model_or_class, type) else type(unwrap(model_or_class))
    return next((p for p in PRUNED_CLASSES if issubclass(cls, p.__bases__[1])), None)
