"""The speed benchmark runs end to end and writes the rows the README table reads."""
import json
import subprocess
import sys
from pathlib import Path

from peerprune.report import benchmark_table

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
KEYS = {"sparsity", "batch_size", "seq_len", "device", "dense_ms", "pruned_ms", "speedup",
        "flops_speedup"}


def test_benchmark_writes_rows(tmp_path):
    out = tmp_path / "results" / "benchmark.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--sparsity", "0.5", "0.9",
                        "--batch-size", "2", "--seq-len", "16", "--warmup", "1", "--repeats", "2",
                        "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and KEYS <= set(rows[0])
    assert rows[0]["flops_speedup"] > 1 and rows[1]["flops_speedup"] > rows[0]["flops_speedup"]
    assert all(r["dense_ms"] > 0 and r["pruned_ms"] > 0 for r in rows)
    assert rows[1]["heads_kept"] == 1  # round(8 * 0.1)
    table = benchmark_table(tmp_path / "results")
    assert "| 50% | 4 | 2 | 16 | cpu |" in table


def test_benchmark_refuses_bad_sparsity(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--sparsity", "1.0",
                        "--out", str(tmp_path / "b.json")], capture_output=True, text=True)
    assert p.returncode == 2 and "--sparsity 1.0 is outside [0, 1)" in p.stderr


def test_benchmark_refuses_a_missing_gpu(tmp_path):
    import torch
    if torch.cuda.is_available():
        import pytest
        pytest.skip("a GPU is visible: the refusal cannot be provoked")
    p = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--device", "cuda",
                        "--out", str(tmp_path / "b.json")], capture_output=True, text=True)
    assert p.returncode == 2 and "no CUDA device is visible here" in p.stderr
    assert not (tmp_path / "b.json").exists()
