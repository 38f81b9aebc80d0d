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


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "text_pair", "label"])
        w.writerows(rows)
    return path


def csv_rows(shared_glue, n=80):
    """RTE's first pairs, labelled by name, as a user's CSV would hold them."""
    from peerprune.glue import load_glue
    train = load_glue("rte", shared_glue, splits=("train",))["train"].select(range(n))
    names = train.features["label"].names
    return [(r["sentence1"], r["sentence2"], names[r["label"]]) for r in train]


def test_a_csv_gives_the_data(shared_glue, tmp_results, capsys):
    """`--data my.csv` is a task: text labels become the pruned model's label names, the
    file's content is in the run's identity, and the teacher is the folder as it is."""
    from peerprune.__main__ import main
    from peerprune.glue import TASKS
    mine = tmp_results / "my-model"
    save_model(load_model("tiny", num_labels=2, seed=5), load_tokenizer("tiny"), mine)
    before = digest(mine)
    data = write_csv(tmp_results / "My Pairs.csv", csv_rows(shared_glue))
    try:
        args = ["prune", "--profile", "smoke", "--data", str(data), "--teacher", str(mine),
                "--method", "hisp", "--distill", "kd", "--sparsity", "0.5"]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "data: my_pairs, 2 label(s) ['entailment', 'not_entailment']" in out
        assert "teacher: the folder" in out
        [result] = (tmp_results / "results").rglob("my_pairs/hisp-kd-*.json")
        r = json.loads(result.read_text())
        assert r["task"] == "my_pairs" and r["metric"] == "accuracy"
        assert digest(mine) == before
        saved = json.loads((Path(r["checkpoint"]) / "config.json").read_text())
        assert saved["id2label"] == {"0": "entailment", "1": "not_entailment"}
        # other content under the same name is another run
        rows = csv_rows(shared_glue)
        write_csv(data, rows[:-1])
        assert main(args) == 0
        hashes = {json.loads(f.read_text())["config_hash"]
                  for f in (tmp_results / "results").rglob("my_pairs/hisp-kd-*.json")}
        assert r["config_hash"] not in hashes, "a changed CSV reused the old run"
    finally:
        TASKS.pop("my_pairs", None)


def test_a_csv_is_checked(tmp_results):
    import pytest
    from peerprune.glue import TASKS, csv_task
    from peerprune.prune import PruneConfig, check_config
    bad = tmp_results / "bad.csv"
    bad.write_text("sentence,label\nhello,1\n")
    with pytest.raises(ValueError, match=r"needs columns text, label.*found columns \['sentence', 'label'\]"):
        csv_task(bad)
    good = tmp_results / "rte.csv"
    good.write_text("text,label\na,0\nb,1\nc,0\n")
    with pytest.raises(ValueError, match="GLUE task"):
        csv_task(good)
    scores = tmp_results / "scores.csv"
    scores.write_text("text,label\na,0.5\nb,1.25\nc,3\n")
    try:
        spec = csv_task(scores)
        assert spec.is_regression and spec.primary_metric == "spearmanr"
        with pytest.raises(ValueError, match="--teacher"):
            check_config(PruneConfig(task="scores", profile="smoke"))
    finally:
        TASKS.pop("scores", None)
