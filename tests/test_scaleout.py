"""Data parallelism through Hugging Face Accelerate: two processes on the CPU."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_two_processes_finish_write_once_and_stay_synchronised(shared_glue, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the pinned packages"
    env = {**os.environ, "PEERPRUNE_GLUE_DIR": str(shared_glue), "OMP_NUM_THREADS": "1"}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "peerprune", "prune", "--profile", "smoke", "--task", "rte", "--sparsity", "0.5"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    files = sorted((tmp_path / "results").rglob("*.json"))
    assert [f.name for f in files] == ["apd-peer-default-s0.50-seed0.json",
                                       "dense-none-lr0.001-s0.00-seed0.json"]
    assert not list(tmp_path.rglob("*.tmp"))
    for f in files:
        history = json.loads(f.read_text())["history"]
        # gradients were synchronised: after training, both processes hold the same weights
        assert all(h["processes"] == 2 and h["weights_agree"] for h in history), f.name
    locator = json.loads(files[0].read_text())["locator_log"][-1]  # the locator too (gates included)
    assert locator["processes"] == 2 and locator["weights_agree"]


def test_a_cpu_launch_that_starts_one_process_says_so(monkeypatch, capsys):
    """accelerate launch --cpu --num_processes 2 runs one process (its --cpu ignores the
    count); the command line says so and names the flag that works."""
    from peerprune.__main__ import main
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "--multi_gpu --num_processes N" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # a real multi-process launch: no note
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "note:" not in capsys.readouterr().err
