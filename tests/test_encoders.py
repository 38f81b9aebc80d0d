"""Other BERT-family encoders go through masking, pruning, saving and reloading; others
are refused with a clear error."""
import pytest
import torch
from transformers import (AutoModelForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, ElectraConfig,
                          ElectraForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification)

from peerprune import heads
from peerprune.models import load_model

SMALL = dict(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=64)


@pytest.mark.parametrize("cls,config", [
    (RobertaForSequenceClassification, RobertaConfig(**SMALL, pad_token_id=1)),
    (ElectraForSequenceClassification, ElectraConfig(**SMALL, embedding_size=32)),
])
def test_mask_prune_save_reload(cls, config, tmp_path):
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path / "base")
    model = load_model(str(tmp_path / "base"))
    ids = torch.randint(3, 200, (2, 10))
    mask = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    with torch.no_grad():
        masked = heads.masked(model, mask, input_ids=ids).logits
        heads.prune(model, mask)
        pruned = model(input_ids=ids).logits
    assert (masked - pruned).abs().max() < 1e-5
    model.save_pretrained(tmp_path / "pruned")
    loaded = [load_model(str(tmp_path / "pruned"))]
    if heads.HEAD_MASK:  # transformers 4: plain from_pretrained rebuilds the pruned shapes too
        loaded.append(AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned").eval())
    for again in loaded:
        assert heads.heads_per_layer(again) == [2, 1]
        with torch.no_grad():
            assert (again(input_ids=ids).logits - pruned).abs().max() < 1e-5


def test_distilbert_is_refused(tmp_path):
    DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=32, n_layers=1,
                                                         n_heads=2, hidden_dim=64)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"model type 'distilbert' is not supported.*bert, roberta, electra"):
        load_model(str(tmp_path))
