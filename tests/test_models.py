"""The offline MiniLM is the real 6 x 12 BERT; unknown models are refused clearly."""
import pytest
import torch

from peerprune import heads
from peerprune.models import load_model, load_tokenizer, model_for_task


def test_minilm_offline():
    model = model_for_task("minilm", "stsb")
    assert heads.heads_per_layer(model) == [12] * 6
    assert model.config.hidden_size == 384
    assert model.num_labels == 1 and model.config.problem_type == "regression"
    encoder_params = heads.count_params(heads.encoder(model)) - heads.count_params(
        heads.encoder(model).pooler)
    assert 22_500_000 < encoder_params < 22_800_000  # the published 22.7M
    tok = load_tokenizer("minilm")
    batch = tok(["a test sentence", "another one"], ["pair", "pair"], padding=True,
                return_tensors="pt")
    mask = torch.ones(6, 12)
    mask[0, :11] = 0
    mask[3, 4:] = 0
    with torch.no_grad():
        masked = heads.masked(model, mask, **batch).logits
        heads.prune(model, mask)
        pruned = model(**batch).logits
    assert (masked - pruned).abs().max() < 1e-5


def test_unsupported_architecture_is_refused(tmp_path):
    from transformers import GPT2Config
    GPT2Config(n_layer=1, n_head=2, n_embd=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"model type 'gpt2' is not supported.*bert"):
        load_model(str(tmp_path))


def test_single_head_model_is_refused(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification
    BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                             num_attention_heads=1, intermediate_size=16)
                                  ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"1 attention head\(s\) per layer; head pruning needs multi-head"):
        load_model(str(tmp_path))
