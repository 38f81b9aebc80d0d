"""Committed results stay valid: every hash is recomputable, and the relabelling of the
learned-multiplier runs gives the hash a rerun of their configuration would."""
import json
from pathlib import Path

import pytest

from peerprune.migrations import (lagrangian_variant, recompute_hash, relabel_lagrangian,
                                  teacher_hashes)
from peerprune.prune import PruneConfig, ablation, run_identity
from peerprune.results import config_hash, load_results
from peerprune.train import TrainConfig

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture(scope="module")
def committed():
    return [r for r in load_results(RESULTS) if "options" in r or r["method"] == "dense"]


def test_every_committed_hash_is_its_configuration_today(committed):
    teachers = teacher_hashes(committed)
    runs = [r for r in committed if r["method"] != "dense"]
    assert len(runs) > 100
    wrong = [(r["task"], r["method"], r["variant"]) for r in runs
             if recompute_hash(r, teachers) != r["config_hash"]]
    assert not wrong


def test_a_relabelled_run_is_found_again_by_its_variant(committed):
    """The `lagrangian` ablation of today's config has the relabelled run's hash, so a
    rerun with `--ablation lagrangian` reuses it instead of training again."""
    teachers = teacher_hashes(committed)
    old = next(r for r in committed if r["method"] == "apd" and r["variant"] == "lagrangian"
               and r["profile"] == "full")
    fields = {k: v for k, v in old["options"].items() if k in PruneConfig.__dataclass_fields__}
    c = ablation(PruneConfig(**{**fields, "variant": "default", "budget_control": "projection"}),
                 "lagrangian")
    teacher = teachers[(old["profile"], old["task"], old["model"], old["teacher_lr"])]
    identity = run_identity(c.resolved(), sum(old["heads_per_layer"]),
                            TrainConfig(**old["train"]), teacher)
    assert config_hash(identity) == old["config_hash"]
    # today's default (the projection) is another run
    new = run_identity(replace_variant(c, "default"), sum(old["heads_per_layer"]),
                       TrainConfig(**old["train"]), teacher)
    assert config_hash(new) != old["config_hash"] and new["prune"]["budget_control"] == "projection"


def replace_variant(c, variant):
    from dataclasses import replace
    return replace(c, variant=variant, budget_control="projection").resolved()


def test_relabelling_an_old_record(committed, tmp_path):
    """A record made before `budget_control` existed (options without it, variant `default`)
    moves to `lagrangian` with the hash of that configuration; a second pass does nothing."""
    teachers = teacher_hashes(committed)
    now = next(r for r in committed if r["method"] == "apd" and r["variant"] == "lagrangian"
               and r["profile"] == "full")
    dense = next(r for r in committed if r["method"] == "dense" and r["task"] == now["task"]
                 and r["profile"] == "full" and r["lr"] == now["teacher_lr"])
    before = json.loads(json.dumps(now))
    before["options"] = {k: v for k, v in now["options"].items() if k != "budget_control"}
    before["options"]["variant"] = before["variant"] = "default"
    before["config_hash"] = recompute_hash(before, teachers)
    assert before["config_hash"] != now["config_hash"]
    root = tmp_path / "results"
    for r, name in ((before, "apd-peer-default"), (dense, "dense")):
        path = root / "full" / r["model"] / r["task"] / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    moved = relabel_lagrangian(root)
    assert [p.name for p in moved] == [f"apd-peer-lagrangian-s{now['target_sparsity']:.2f}-seed{now['seed']}.json"]
    again = json.loads(moved[0].read_text())
    assert again["config_hash"] == now["config_hash"] and again["variant"] == "lagrangian"
    assert relabel_lagrangian(root) == []
    assert lagrangian_variant("no-merge") == "no-merge-lagrangian"
    assert lagrangian_variant("uniform-lr-lambda-50") == "uniform-lr-lambda-50"


def test_todays_config_of_every_committed_run_has_its_hash(committed):
    """Rebuilt as today's PruneConfig (new fields at their defaults), each committed run of
    every method hashes as it did: the new options changed no finished run's identity."""
    teachers = teacher_hashes(committed)
    runs = [r for r in committed if r["method"] != "dense"]
    wrong = []
    for r in runs:
        fields = {k: v for k, v in r["options"].items() if k in PruneConfig.__dataclass_fields__}
        if r["method"] == "apd":  # migrated: every run of the method says its control
            assert "budget_control" in fields, (r["task"], r["variant"])
        c = PruneConfig(**fields).resolved()
        teacher = teachers[(r["profile"], r["task"], r["model"], r["teacher_lr"])]
        full = run_identity(c, sum(r["heads_per_layer"]), TrainConfig(**r["train"]), teacher)
        if config_hash(full) != r["config_hash"]:
            wrong.append((r["profile"], r["task"], r["method"], r["variant"]))
    assert not wrong


def test_rehashing_a_post_training_run_made_before_rho_counted(committed, tmp_path):
    from peerprune.migrations import rehash_post_training
    teachers = teacher_hashes(committed)
    post = next(r for r in committed if r["method"] not in ("apd", "dense")
                and r["train"]["epochs"] == 0)
    dense = next(r for r in committed if r["method"] == "dense" and r["task"] == post["task"]
                 and r["profile"] == post["profile"] and r["lr"] == post["teacher_lr"])
    old = json.loads(json.dumps(post))
    old["config_hash"] = config_hash(run_identity_of(old, teachers))
    root = tmp_path / "results"
    for r, name in ((old, "post"), (dense, "dense")):
        p = root / r["profile"] / r["model"] / r["task"] / f"{name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
    assert len(rehash_post_training(root)) == 1
    assert json.loads((root / post["profile"] / post["model"] / post["task"] / "post.json")
                      .read_text())["config_hash"] == post["config_hash"]
    assert rehash_post_training(root) == []


def run_identity_of(result, teachers):
    """The identity a post-training baseline had before rho counted: without rho."""
    from peerprune.profiles import get_profile
    from peerprune.prune import identity
    p = get_profile(result["profile"])
    prune = {k: v for k, v in identity(result["options"]).items() if k != "rho"}
    return {"prune": prune, "train": result["train"], "keep": sum(result["heads_per_layer"]),
            "teacher": teachers[(result["profile"], result["task"], result["model"],
                                 result["teacher_lr"])],
            "train_examples": p.train_examples, "eval_examples": p.eval_examples}
