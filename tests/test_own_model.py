"""Prune your own fine-tuned model: the folder is the teacher as it is."""
import hashlib
import json
from pathlib import Path

from peerprune.models import load_model, load_tokenizer, save_model


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def test_a_model_folder_is_pruned_as_it_is(shared_glue, tmp_results, monkeypatch):
    from peerprune.prune import PruneConfig, run_pruning
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    mine = tmp_results / "my-finetuned-bert"
    save_model(load_model("tiny", num_labels=2, seed=11), load_tokenizer("tiny"), mine)
    before = digest(mine)
    r = run_pruning(PruneConfig(task="rte", profile="smoke", teacher=str(mine), sparsity=0.5,
                                method="hisp", distill="kd"))
    assert digest(mine) == before, "the user's model was changed"
    assert not list((tmp_results / "results").rglob("dense-*.json")), "a teacher was trained"
    assert r["teacher_checkpoint"] == str(mine) and sum(r["heads_per_layer"]) == 4
    saved = json.loads((Path(r["checkpoint"]) / "config.json").read_text())
    assert saved["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert run_pruning(PruneConfig(task="rte", profile="smoke", teacher=str(mine), sparsity=0.5,
                                   method="hisp", distill="kd"))["wall_s"] == r["wall_s"]
