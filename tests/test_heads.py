"""Head surgery on a tiny random BERT: masking and removal agree, and survive a reload."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from peerprune import heads
from peerprune.models import load_model


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (4, 12), generator=g)
    attention = torch.ones(4, 12, dtype=torch.long)
    attention[1, 7:] = 0  # padding must not matter
    return {"input_ids": ids, "attention_mask": attention}


MASK = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])


def logits(model, batch, mask=None):
    """The model's logits, with its heads scaled by `mask` if given (`heads.masked`: the head
    mask on transformers 4, the gating hooks on 5)."""
    with torch.no_grad():
        return (model(**batch) if mask is None else heads.masked(model, mask, **batch)).logits


TRANSFORMERS_4 = pytest.mark.skipif(not heads.HEAD_MASK, reason="transformers 5 has no "
                                    "head_mask or pruned_heads to compare with")


def test_masking_equals_removal(batch):
    model = load_model("tiny")
    masked = logits(model, batch, MASK)
    assert (masked - logits(model, batch)).abs().max() > 1e-4  # the mask does something
    heads.prune(model, MASK)
    assert heads.kept_heads(model) == [[0, 2], [3]]
    assert (logits(model, batch) - masked).abs().max() < 1e-5


def test_pruning_twice_uses_original_indices(batch):
    model = load_model("tiny")
    first = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 1]])
    heads.prune(model, first)
    heads.prune(model, MASK)
    assert heads.kept_heads(model) == [[0, 2], [3]]
    reference = load_model("tiny")
    assert (logits(model, batch) - logits(reference, batch, MASK)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="already removed"):
        heads.prune(model, torch.ones(2, 4))


@TRANSFORMERS_4
def test_pruned_model_reloads_with_plain_transformers(batch, tmp_path):
    model = load_model("tiny")
    heads.prune(model, MASK)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert heads.heads_per_layer(loaded) == [2, 1]
    assert (logits(loaded, batch) - logits(model, batch)).abs().max() < 1e-5


def test_smaller_and_cheaper():
    model = load_model("tiny")
    p0, f0 = heads.count_params(model), heads.flops(model)
    heads.prune(model, MASK)
    d_h = 32 // 4
    # each removed head takes d_h rows of Q, K, V (weights and biases) and d_h columns of W^O
    removed = 5 * (3 * (32 * d_h + d_h) + d_h * 32)
    assert p0 - heads.count_params(model) == removed
    assert heads.flops(model) < f0


def test_emptied_layer_skips_attention_and_reloads(batch, tmp_path):
    """A layer that loses every head adds only its output bias, and the model reloads with
    `peerprune.models.load_model` (plain from_pretrained rebuilds it but cannot run it)."""
    model = load_model("tiny")
    empty = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 1]])
    masked = logits(model, batch, empty)
    heads.prune(model, empty)
    assert heads.heads_per_layer(model) == [0, 2]
    assert isinstance(heads.attention(model, 0).self, heads.EmptySelfAttention)
    assert (logits(model, batch) - masked).abs().max() < 1e-5
    model.save_pretrained(tmp_path)
    assert (logits(load_model(str(tmp_path)), batch) - masked).abs().max() < 1e-5
    if heads.HEAD_MASK:
        plain = AutoModelForSequenceClassification.from_pretrained(tmp_path)
        with pytest.raises(RuntimeError):
            plain(**batch)


def test_surgery_is_recorded_in_the_saved_config(batch, tmp_path):
    """peerprune's own record of the removed heads, and transformers 4's `pruned_heads`
    beside it on every version (a model pruned on 5 reloads on 4). A pruned model reloads
    with the same logits."""
    import json
    model = load_model("tiny")
    heads.prune(model, MASK)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved[heads.PRUNED_KEY] == {"0": [1, 3], "1": [0, 1, 2]}
    assert saved["pruned_heads"] == saved[heads.PRUNED_KEY]  # transformers 4 reads it
    again = load_model(str(tmp_path))
    assert heads.kept_heads(again) == [[0, 2], [3]]
    assert (logits(again, batch) - logits(model, batch)).abs().max() < 1e-6


def test_wrong_mask_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*\(2, 4\)"):
        heads.prune(load_model("tiny"), torch.ones(3, 4))


def test_models_do_not_share_config(tmp_path):
    a, b = load_model("tiny"), load_model("tiny")
    heads.prune(a, MASK)
    assert heads.removed_heads(b.config) == {} and heads.heads_per_layer(b) == [4, 4]
    a.save_pretrained(tmp_path)
    c, d = load_model(str(tmp_path)), load_model(str(tmp_path))
    assert c.config is not d.config
    heads.prune(c, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]))
    assert heads.heads_per_layer(d) == [2, 1]


@TRANSFORMERS_4
def test_gating_through_the_modules_equals_the_head_mask(batch):
    """heads.gated (a pre-hook scaling each head's slice before W^O) gives the head mask's
    numbers: a fixed mask, soft gates, one gate per example, and the gradients."""
    model = load_model("tiny")
    soft = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    for mask in (MASK, soft):
        with torch.no_grad(), heads.gated(model, mask):
            hooked = model(**batch).logits
        assert (hooked - model(**batch, head_mask=mask).logits).abs().max() < 1e-6
    b = batch["input_ids"].shape[0]
    per_example = torch.rand(2, b, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), heads.gated(model, per_example):
        hooked = model(**batch).logits
    reference = model(**batch, head_mask=per_example[:, :, :, None, None]).logits.detach()
    assert (hooked - reference).abs().max() < 1e-6
    g1 = soft.clone().requires_grad_(True)
    with heads.gated(model, g1):
        model(**batch).logits.sum().backward()
    g2 = soft.clone().requires_grad_(True)
    model(**batch, head_mask=g2).logits.sum().backward()
    assert torch.allclose(g1.grad, g2.grad, atol=1e-6)
    with torch.no_grad():  # the hooks are gone afterwards
        assert (model(**batch).logits - logits(model, batch)).abs().max() == 0


def test_gates_on_a_pruned_model_are_refused(batch):
    """The gates index the original heads: a pruned model's fewer heads are named, not
    silently mis-scaled."""
    model = load_model("tiny")
    heads.prune(model, MASK)
    with pytest.raises(ValueError, match="layer 0 has 2 heads, the mask 4"):
        with torch.no_grad(), heads.gated(model, torch.ones(2, 4)):
            model(**batch)
