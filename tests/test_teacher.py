"""The dense teacher, smoke profile: a real (tiny) run, reused, deterministic, selected."""
import json
import subprocess
import sys

import pytest

from peerprune import teacher
from peerprune.models import load_model, load_tokenizer
from peerprune.results import load_results
from peerprune.glue import task_data
from peerprune.train import evaluate, make_loader

REQUIRED = {"task", "model", "profile", "method", "distill", "variant", "target_sparsity",
            "sparsity", "seed", "metric", "score", "scores", "heads_per_layer", "params",
            "flops", "wall_s", "config_hash"}


def test_teacher_run_writes_result_and_reloadable_checkpoint(shared_glue, tmp_results):
    r = teacher.train_teacher("rte", "smoke", lr=1e-3)
    assert REQUIRED <= set(r)
    assert r["method"] == "dense" and r["heads_per_layer"] == [4, 4] and r["train_size"] == 64
    [stored] = load_results(task="rte", profile="smoke")
    assert stored["score"] == r["score"] and stored["history"][-1]["score"] == r["score"]
    model, tok = load_model(r["checkpoint"]), load_tokenizer(r["checkpoint"])
    _, evals = task_data("rte", tok, max_length=64, eval_examples=32, seed=0)
    loader = make_loader(evals["validation"], tok, 16, False)
    assert evaluate(model, loader, "rte") == r["scores"]


def test_same_configuration_is_reused(shared_glue, tmp_results, monkeypatch):
    first = teacher.train_teacher("rte", "smoke", lr=1e-3)

    def fail(*a, **k):
        raise AssertionError("retrained a teacher that was already there")
    monkeypatch.setattr(teacher, "fine_tune", fail)
    assert teacher.train_teacher("rte", "smoke", lr=1e-3) == first
    with pytest.raises(AssertionError, match="retrained"):  # another lr is another run
        teacher.train_teacher("rte", "smoke", lr=5e-4)


def test_deterministic_on_cpu(shared_glue, tmp_path, monkeypatch):
    runs = []
    for name in ("a", "b"):  # two separate folders: the second run cannot reuse the first
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        runs.append(teacher.train_teacher("rte", "smoke", lr=1e-3))
    assert runs[0]["history"][0]["train_loss"] == runs[1]["history"][0]["train_loss"]
    assert runs[0]["scores"] == runs[1]["scores"]


def test_best_teacher_is_the_best_dev_score(shared_glue, tmp_results):
    rs = teacher.sweep_teacher("rte", "smoke", lrs=[1e-3, 1e-4])
    best = teacher.best_teacher("rte", "smoke")
    assert best["score"] == max(r["score"] for r in rs)
    with pytest.raises(LookupError, match="no dense teacher for task 'mrpc'"):
        teacher.best_teacher("mrpc", "smoke")


def test_cli_refuses_bad_task_with_exit_code(tmp_results):
    p = subprocess.run([sys.executable, "-m", "peerprune", "teacher", "--profile", "smoke",
                        "--task", "nope"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "unknown GLUE task 'nope'" in p.stderr and "rte" in p.stderr


def test_report_rewrites_only_its_section(shared_glue, tmp_results):
    from peerprune.report import update_documents
    teacher.train_teacher("rte", "smoke", lr=1e-3)
    readme = tmp_results / "README.md"
    readme.write_text("intro\n<!-- table:dense-teacher:smoke -->\nold\n"
                      "<!-- /table:dense-teacher:smoke -->\noutro\n")
    assert update_documents("smoke", None, tmp_results, ("README.md",)) == [readme]
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    score = json.loads(next(tmp_results.rglob("dense-*.json")).read_text())["score"]
    assert f"**{score:.2f}**" in text
