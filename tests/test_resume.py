"""A fine-tuning killed between epochs resumes from its last finished epoch and ends with the
numbers of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = r'''
import json, sys, time
import torch
from peerprune.glue import task_data
from peerprune.models import load_model, load_tokenizer
from peerprune.train import TrainConfig, default_loss, fine_tune

glue, out, resume, delay = sys.argv[1], sys.argv[2], sys.argv[3] or None, float(sys.argv[4])
tok = load_tokenizer("tiny")
train, evals = task_data("rte", tok, glue_dir=glue, max_length=48, train_examples=64,
                         eval_examples=16)
model = load_model("tiny", num_labels=2, seed=5)

def slow_loss(m, batch):  # the test's own pace, so that it can kill between epochs
    time.sleep(delay)
    return default_loss(m, batch)

history = fine_tune(model, "rte", train, evals["validation"], tok,
                    TrainConfig(lr=1e-3, batch_size=16, epochs=4, seed=3),
                    loss_fn=slow_loss, resume_dir=resume)
total = sum(p.double().sum().item() for p in model.parameters())
json.dump({"history": [{k: v for k, v in h.items() if k != "seconds"} for h in history],
           "weights": total}, open(out, "w"))
'''


def run(tmp_path, shared_glue, out, resume="", delay=0.0, wait=True):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(shared_glue), str(out), str(resume), str(delay)]
    if wait:
        subprocess.run(args, env=env, check=True, capture_output=True)
        return json.loads(Path(out).read_text())
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_between_epochs_resumes_with_the_same_numbers(shared_glue, tmp_path):
    clean = run(tmp_path, shared_glue, tmp_path / "clean.json")
    resume = tmp_path / "resume"
    proc = run(tmp_path, shared_glue, tmp_path / "killed.json", resume, delay=0.3, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and not (resume / "epoch.pt").is_file():
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.json").exists(), "the run finished before it was killed"
    assert (resume / "epoch.pt").is_file() and not list(resume.glob("*.tmp"))
    resumed = run(tmp_path, shared_glue, tmp_path / "killed.json", resume)
    assert resumed["history"] == clean["history"]
    assert resumed["weights"] == clean["weights"]


def test_finished_runs_leave_no_epoch_checkpoint(shared_glue, tmp_results, monkeypatch):
    from peerprune.prune import PruneConfig, run_pruning
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    r = run_pruning(PruneConfig(task="rte", profile="smoke", sparsity=0.5, max_steps=2))
    assert Path(r["checkpoint"]).is_dir()
    assert not list((tmp_results / "checkpoints").rglob("*.resume"))
    assert not list((tmp_results / "checkpoints").rglob("epoch.pt"))
