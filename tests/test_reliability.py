"""Interrupted runs lose nothing; the same seed gives the same numbers; bad input is refused."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from peerprune.locator import top_mask, uniform_counts
from peerprune.prune import PruneConfig, ablation, identity, run_pruning
from peerprune.teacher import train_teacher

CLI = [sys.executable, "-m", "peerprune", "prune", "--profile", "smoke", "--task", "rte",
       "--sparsity", "0.5", "0.75", "--ablation", "default", "no-merge"]


def scores(root: Path) -> dict:
    return {p.name: (json.loads(p.read_text())["score"], json.loads(p.read_text())["heads_per_layer"])
            for p in sorted(root.rglob("*.json"))}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_no_half_file_and_rerun_matches(sig, shared_glue, tmp_path):
    env = {**os.environ, "PEERPRUNE_GLUE_DIR": str(shared_glue), "OMP_NUM_THREADS": "1"}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir(), killed.mkdir()
    subprocess.run(CLI, cwd=clean, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(CLI, cwd=killed, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.rglob("apd-*.json"))) < 1:
        time.sleep(0.05)
    proc.send_signal(sig)  # midway: the teacher and one pruning run are done
    proc.wait()
    assert 1 <= len(list(killed.rglob("apd-*.json"))) < 4
    assert not list(killed.rglob("*.tmp")), "a half-written file was left behind"
    for p in killed.rglob("*.json"):
        json.loads(p.read_text())  # every result that exists is whole
    subprocess.run(CLI, cwd=killed, env=env, check=True, capture_output=True)
    assert scores(killed / "results") == scores(clean / "results")


def test_same_seed_same_numbers_and_masks(shared_glue, tmp_path, monkeypatch):
    out = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        train_teacher("rte", "smoke", lr=1e-3)
        r = run_pruning(PruneConfig(task="rte", profile="smoke", sparsity=0.5, locator_epochs=2,
                                    max_steps=6))
        out.append((r["scores"], r["kept_heads"], r["log_alpha"], r["history"][0]["train_loss"]))
    assert out[0] == out[1]


def test_runs_that_differ_after_the_mask_share_one_choice(shared_glue, tmp_path, monkeypatch):
    """The locator runs once for the ablations; reading its choice back (mask, log and the
    located weights for init-locator) gives exactly the numbers of computing it."""
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    base = PruneConfig(task="rte", profile="smoke", sparsity=0.5, locator_epochs=2, max_steps=6)
    out = {}
    for name, variants in (("fresh", ["init-locator"]), ("shared", ["default", "init-locator"])):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        train_teacher("rte", "smoke", lr=1e-3)
        runs = [run_pruning(ablation(base, v)) for v in variants]
        out[name] = runs[-1]
    fresh, shared = out["fresh"], out["shared"]
    assert not fresh["choice"]["reused"] and shared["choice"]["reused"]
    assert shared["choice"]["path"] == fresh["choice"]["path"]  # same options, same key
    assert shared["locator_log"] == fresh["locator_log"] and shared["kept_heads"] == fresh["kept_heads"]
    assert shared["history"][0]["train_loss"] == fresh["history"][0]["train_loss"]
    assert shared["scores"] == fresh["scores"]
    # a baseline with and without KD shares its mask too; another seed does not
    hisp = [run_pruning(replace(base, method="hisp", distill=d, seed=s))
            for d, s in (("none", 0), ("kd", 0), ("none", 1))]
    assert [r["choice"]["reused"] for r in hisp] == [False, True, False]
    assert hisp[0]["kept_heads"] == hisp[1]["kept_heads"]
    # an option only the method reads (the gates' final temperature) is no part of a
    # baseline's identity: the finished HISP run is found, not recomputed; the method's is new
    other = replace(base, final_temperature=base.final_temperature / 2)
    again = run_pruning(replace(other, method="hisp", distill="none"))
    assert again["config_hash"] == hisp[0]["config_hash"] and again["wall_s"] == hisp[0]["wall_s"]
    assert again["options"]["final_temperature"] == base.final_temperature  # the stored record
    apd = run_pruning(ablation(other, "default"))
    assert apd["options"]["final_temperature"] == other.final_temperature
    assert not apd["choice"]["reused"]
    # the multiplier rate means nothing to the projection: no part of its identity
    assert identity(asdict(replace(base, lr_lambda=9.0).resolved())) == identity(asdict(base.resolved()))
    assert "lr_lambda" in identity(asdict(ablation(base, "lagrangian").resolved()))
    # the peer loss weight (added after results were committed) leaves the identity of the
    # runs that do not set it unchanged, reuses the choice, and changes the fine-tuning
    assert "peer_beta" not in identity(asdict(base.resolved()))
    default = run_pruning(ablation(base, "default"))
    light = run_pruning(ablation(base, "peer-weight-0.1"))
    assert light["choice"]["reused"] and light["kept_heads"] == default["kept_heads"]
    assert light["options"]["peer_beta"] == 0.1 and light["config_hash"] != default["config_hash"]
    assert light["history"][0]["train_loss"] < default["history"][0]["train_loss"]
    # likewise the annealed peer loss (weight 1 decaying to 0 over the fine-tuning)
    assert "peer_schedule" not in identity(asdict(base.resolved()))
    anneal = run_pruning(ablation(base, "peer-anneal"))
    assert anneal["choice"]["reused"] and anneal["kept_heads"] == default["kept_heads"]
    assert anneal["options"]["peer_schedule"] == "linear"
    assert anneal["history"][0]["train_loss"] < default["history"][0]["train_loss"]
    # and the peer loss on the heads that absorbed a pruned peer only
    assert "peer_heads" not in identity(asdict(base.resolved()))
    absorbing = run_pruning(ablation(base, "peer-absorbing"))
    assert absorbing["choice"]["reused"] and absorbing["kept_heads"] == default["kept_heads"]
    assert absorbing["options"]["peer_heads"] == "absorbing"
    assert absorbing["history"][0]["train_loss"] < default["history"][0]["train_loss"]


@pytest.mark.parametrize("args,message", [
    (["prune", "--profile", "smoke", "--task", "qqq"], "unknown GLUE task 'qqq'"),
    (["prune", "--profile", "smoke", "--task", "rte", "--sparsity", "1.2"],
     "head sparsity must be in [0, 1), got 1.2"),
    (["prune", "--profile", "smoke", "--task", "rte", "--method", "magic"], "unknown method 'magic'"),
    (["prune", "--profile", "smoke", "--task", "rte", "--ablation", "nothing"], "unknown ablation"),
    (["prune", "--profile", "smoke", "--task", "rte", "--distill", "kd", "soft"],
     "unknown distill 'soft'; valid: none, kd, peer"),
    (["prune", "--profile", "smoke", "--task", "rte", "--method", "hisp", "--distill", "peer"],
     "peer distillation belongs to 'apd'"),
    (["teacher", "--profile", "smoke", "--task", "rte", "--model", "gpt2-like-but-missing"],
     "cannot load model 'gpt2-like-but-missing': it is not an alias (minilm, tiny)"),
    # refused before any teacher is trained
    (["prune", "--profile", "smoke", "--task", "rte", "--keep", "99"], "keep must be in [1, 8], got 99"),
    (["prune", "--profile", "smoke", "--task", "rte", "--model", "/nonexistent"],
     "cannot load model '/nonexistent': there is no folder at /nonexistent"),
    (["teacher", "--profile", "smoke", "--task", "rte", "--model", "./nowhere"],
     "there is no folder at nowhere"),
])
def test_cli_errors_name_the_bad_value(args, message, shared_glue, tmp_path):
    env = {**os.environ, "PEERPRUNE_GLUE_DIR": str(shared_glue), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "peerprune", *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr[-2000:]
    assert message in p.stderr
    assert not list(tmp_path.rglob("*.json")), "nothing is written for a refused run"


def test_cli_refuses_unknown_profile(tmp_path):
    p = subprocess.run([sys.executable, "-m", "peerprune", "prune", "--profile", "huge"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 2 and "invalid choice: 'huge'" in p.stderr


def test_budget_the_per_layer_rule_cannot_meet():
    with pytest.raises(ValueError, match="uniform allocation of 4 heads over 6 layers"):
        uniform_counts(4, 6, 12)
    import torch
    with pytest.raises(ValueError, match="at least one head per layer needs keep >= 6, got 3"):
        top_mask(torch.randn(6, 12), 3, min_one_per_layer=True)


def test_checkpoint_of_another_task_is_refused(tmp_path):
    from peerprune.models import load_model, model_for_task
    model = load_model("tiny")
    model.config.finetuning_task = "mrpc"
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="fine-tuned on 'mrpc', not on 'rte'"):
        model_for_task(str(tmp_path), "rte")
    assert model_for_task(str(tmp_path), "mrpc").num_labels == 2


def test_cli_runs_with_the_profiles_options_like_the_notebooks(shared_glue, tmp_path):
    """The command line and the notebooks build the same configuration, so a run made by
    one is reused by the other (the smoke profile overrides smp_steps and max_steps)."""
    env = {**os.environ, "PEERPRUNE_GLUE_DIR": str(shared_glue), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "peerprune", "prune", "--profile", "smoke", "--task",
                    "rte", "--method", "random", "hisp", "--sparsity", "0.5"], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    from peerprune.profiles import get_profile
    from peerprune.results import load_results
    runs = [r for r in load_results(tmp_path / "results") if r["method"] != "dense"]
    assert sorted(r["method"] for r in runs) == ["hisp", "random"], "one run per method"
    for r in runs:
        assert r["options"]["smp_steps"] == 3 and r["options"]["max_steps"] == 8
        assert r["options"] == {**r["options"], **get_profile("smoke").prune_options}


def test_cli_help_names_every_method_and_ablation():
    from peerprune.prune import ABLATIONS, METHODS
    p = subprocess.run([sys.executable, "-m", "peerprune", "prune", "--help"],
                       env={**os.environ, "COLUMNS": "1000"},  # argparse wraps at hyphens
                       capture_output=True, text=True, check=True)
    text = p.stdout
    for name in [*METHODS, *ABLATIONS]:
        assert name in text, f"`prune --help` does not name {name!r}"


def test_task_names_are_normalised_before_they_name_anything(shared_glue, tmp_path, monkeypatch):
    """`MRPC` and `mrpc` are one task: one teacher, one result file, one hash."""
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    monkeypatch.chdir(tmp_path)
    train_teacher("RTE", "smoke", lr=1e-3)
    base = PruneConfig(task="rte", profile="smoke", sparsity=0.5, max_steps=2)
    lower = run_pruning(base)
    upper = run_pruning(replace(base, task="RTE"))
    assert upper["config_hash"] == lower["config_hash"] and upper["wall_s"] == lower["wall_s"]
    assert sorted(p.parent.name for p in (tmp_path / "results").rglob("*.json")) == ["rte"] * 2


def test_an_empty_training_file_is_named(tmp_path):
    from peerprune.glue import get_task, read_local_split
    folder = tmp_path / "RTE"
    folder.mkdir()
    (folder / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(ValueError, match=r"train.tsv: no examples"):
        read_local_split(get_task("rte"), tmp_path, "train")
