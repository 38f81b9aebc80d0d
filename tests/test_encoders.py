"""Other BERT-family encoders go through masking, pruning, saving and reloading; others
are refused with a clear error."""
import copy

import pytest
import torch
from transformers import (AlbertConfig, AlbertForSequenceClassification,
                          AutoModelForSequenceClassification, BertConfig,
                          BertForSequenceClassification, DistilBertConfig,
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


DISTILBERT = DistilBertConfig(vocab_size=200, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=64, initializer_range=0.3)


def test_distilbert_masks_prunes_empties_a_layer_and_reloads(tmp_path):
    """DistilBERT's attention (q_lin, k_lin, v_lin, out_lin side by side) like BERT's: the
    masked model equals the pruned one, a layer may lose every head, and it reloads."""
    torch.manual_seed(0)
    DistilBertForSequenceClassification(DISTILBERT).save_pretrained(tmp_path / "base")
    model = load_model(str(tmp_path / "base"))
    ids = torch.randint(3, 200, (2, 10))
    mask = torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 1]])
    with torch.no_grad():
        full = model(input_ids=ids).logits
        masked = heads.masked(model, mask, input_ids=ids).logits
        heads.prune(model, mask)
        pruned = model(input_ids=ids).logits
    assert (masked - full).abs().max() > 1e-4
    assert (masked - pruned).abs().max() < 1e-5
    assert heads.heads_per_layer(model) == [0, 2]
    assert heads.count_params(model) < heads.count_params(load_model(str(tmp_path / "base")))
    model.save_pretrained(tmp_path / "pruned")
    again = load_model(str(tmp_path / "pruned"))
    assert heads.kept_heads(again) == [[], [1, 3]]
    with torch.no_grad():
        assert (again(input_ids=ids).logits - pruned).abs().max() < 1e-5


def test_distilbert_locator_and_merge(tmp_path):
    """The method's own steps on DistilBERT: head statistics, the locator's search under
    the budget, the peer merge and removal."""
    from peerprune import anatomy, peers
    from peerprune.locator import LocatorConfig, locate
    torch.manual_seed(1)
    DistilBertForSequenceClassification(DISTILBERT).save_pretrained(tmp_path / "base")
    teacher = load_model(str(tmp_path / "base"))
    ids = torch.randint(3, 200, (32, 12))
    data = [{"input_ids": row.tolist(), "attention_mask": [1] * 12, "labels": int(row[0] % 2)}
            for row in ids]
    import datasets
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(load_tokenizer_path())
    train = datasets.Dataset.from_list(data)
    mask, _, log = locate(teacher, copy.deepcopy(teacher), train, tokenizer, 3,
                          LocatorConfig(epochs=1, max_steps=8, batch_size=8, lr=1e-3))
    assert int(mask.sum()) == 3 and abs(log[-1]["expected_heads"] - 3) < 0.5
    from peerprune.train import make_loader
    stats = anatomy.collect_stats(teacher, make_loader(train, tokenizer, 8, False))
    assignment = peers.assign_peers(anatomy.similarity(stats), mask)
    student = copy.deepcopy(teacher)
    peers.merge_and_prune(student, peers.merged_weights(stats, mask, assignment, "pairwise",
                                                        1e-3), mask)
    assert heads.heads_per_layer(student) == [int(x) for x in mask.sum(1)]
    with torch.no_grad():
        assert student(input_ids=ids[:2]).logits.shape == (2, 2)


def load_tokenizer_path():
    from peerprune.models import resolve
    return resolve("minilm")


def test_an_architecture_without_per_layer_heads_is_refused(tmp_path):
    """ALBERT shares one attention block across its layers: there is no layer's head to
    remove on its own."""
    AlbertForSequenceClassification(AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32,
                                                 num_hidden_layers=2, num_attention_heads=2,
                                                 intermediate_size=64)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"model type 'albert' is not supported.*bert, roberta, "
                                         r"electra, distilbert"):
        load_model(str(tmp_path))


PLAIN_RELOAD = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification
ids = torch.tensor(json.loads(sys.argv[2]))
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True)
with torch.no_grad():
    logits = model.eval()(input_ids=ids).logits
kind = type(model)
print(json.dumps({"class": kind.__name__, "module": kind.__module__.rsplit(".", 1)[-1],
                  "params": sum(p.numel() for p in model.parameters()),
                  "logits": logits.tolist()}))
"""


@pytest.mark.parametrize("cls,config", [
    (BertForSequenceClassification, BertConfig(**SMALL)),
    (RobertaForSequenceClassification, RobertaConfig(**SMALL, pad_token_id=1)),
    (ElectraForSequenceClassification, ElectraConfig(**SMALL, embedding_size=32)),
    (DistilBertForSequenceClassification, DISTILBERT),
])
def test_a_saved_pruned_model_loads_in_plain_transformers(cls, config, tmp_path):
    """`save_model` ships `architecture.py` with a pruned model, named in the config's
    `auto_map`: plain `from_pretrained(..., trust_remote_code=True)` rebuilds the pruned
    shapes, an emptied layer included, on transformers 4 and 5, with the same logits. (In a
    process of its own: loading remote code registers its class for the config's type.)"""
    import json
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from peerprune.models import save_model
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path / "base")
    model = load_model(str(tmp_path / "base"))
    ids = torch.randint(3, 200, (2, 10))
    heads.prune(model, torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 1]]))
    with torch.no_grad():
        pruned = model(input_ids=ids).logits
    save_model(model, AutoTokenizer.from_pretrained(load_tokenizer_path()), tmp_path / "pruned")
    assert (tmp_path / "pruned" / "architecture.py").is_file()
    out = subprocess.run([sys.executable, "-c", PLAIN_RELOAD, str(tmp_path / "pruned"),
                          json.dumps(ids.tolist())], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    plain = json.loads(out.stdout.strip().splitlines()[-1])
    assert (plain["module"], plain["class"]) == ("architecture", cls.__name__)
    assert plain["params"] == heads.count_params(model)  # the emptied layer has no Q, K, V
    assert (torch.tensor(plain["logits"]) - pruned).abs().max() < 1e-5
