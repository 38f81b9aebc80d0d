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


def test_mask_quality_scores_every_saved_choice(shared_glue, tmp_path, monkeypatch):
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.teacher import train_teacher
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    teacher = train_teacher("rte", "smoke", lr=1e-3)
    for method in ("random", "apd"):
        run_pruning(PruneConfig(task="rte", profile="smoke", method=method, sparsity=0.5,
                                locator_epochs=2, max_steps=4))
    script = SCRIPT.parent / "mask_quality.py"
    p = subprocess.run([sys.executable, str(script), "--profile", "smoke", "--task", "rte",
                        "--calib-examples", "32"], cwd=tmp_path, capture_output=True, text=True,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "results/smoke/mask_quality/rte.json").read_text())
    assert rows[0]["teacher"] == round(teacher["score"], 2)  # the dense row is the teacher's score
    choices = rows[1:]
    assert sorted(c["choice"].split("-")[1] for c in choices) == ["apd", "random"]
    assert all(sum(c["heads_per_layer"]) == 4 for c in choices)  # 2 x 4 heads, half kept
    assert [("located_masked" in c) for c in choices] == [c["choice"].startswith("choice-apd") for c in choices]
    assert all(len(c["runs"]) == 1 for c in choices)


def test_locator_probe_rows_reach_the_readme_table(shared_glue, tmp_path, monkeypatch):
    from peerprune.report import locator_probe_table
    from peerprune.teacher import train_teacher
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    teacher = train_teacher("rte", "smoke", lr=1e-3)
    script = SCRIPT.parent / "locator_probe.py"
    p = subprocess.run([sys.executable, str(script), "--profile", "smoke", "--task", "rte",
                        "--budget", "projection", "lagrangian", "--lr-lambda", "50", "3"],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "results/smoke/locator_probe/rte.json").read_text())
    assert [(r["budget"], r["lr_lambda"]) for r in rows] == [
        ("projection", 3.0), ("lagrangian", 50.0), ("lagrangian", 3.0)]
    assert all(sum(r["heads_per_layer"]) == r["keep"] for r in rows)
    assert all(r["teacher_score"] == teacher["score"] for r in rows)
    assert abs(rows[0]["final_expected"] - rows[0]["keep"]) <= 0.5  # the projection's budget
    table = locator_probe_table("smoke", tmp_path / "results").splitlines()
    assert len(table) == 2 + len(rows)  # header, rule, one line per setting
    assert table[2].startswith("| rte | 58% | 0 | lagrangian, rate 50 |")
    assert f"{rows[1]['located_student_score']:.2f}" in table[2]
    assert any(line.startswith("| rte | 58% | 0 | projection, final T 0.1 |") for line in table)


def test_pipeline_benchmark_times_both_runs_from_nothing(tmp_path, shared_glue, monkeypatch):
    """A run or a head choice already on disk is never read back instead of timed."""
    script = SCRIPT.with_name("pipeline.py")
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    out = tmp_path / "pipeline.json"
    other = {"profile": "quick", "task": "rte", "sparsity": 0.5}  # a row of the one-row format
    out.write_text(json.dumps(other))
    rows = []
    for attempt in range(2):
        p = subprocess.run([sys.executable, str(script), "--profile", "smoke", "--task", "rte",
                            "--sparsity", "0.5", "--out", str(out)], capture_output=True,
                           text=True, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        kept, row = json.loads(out.read_text())  # the other profile's row stays; ours replaced
        assert kept == other and row["profile"] == "smoke" and row["torch_threads"] >= 1
        rows.append(row)
    for row in rows:  # the second time too, the locator searched and the teacher trained
        assert row["method_choice_reused"] is False and row["method_timings"]["locate_s"] > 0
    assert rows[0]["method_score"] == rows[1]["method_score"]  # and the seed fixes the result
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "results").exists()


def test_post_training_timing_runs_the_path_it_names(shared_glue, tmp_path, monkeypatch):
    """The timed command is the post-training path of the results files: from the trained
    teacher's folder, in a scratch folder, it scores what the ordinary run scores."""
    from peerprune.prune import PruneConfig, run_pruning
    from peerprune.report import post_training_speed_table
    from peerprune.teacher import train_teacher
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PEERPRUNE_GLUE_DIR", str(shared_glue))
    train_teacher("rte", "smoke", lr=1e-3)
    ordinary = {c: run_pruning(PruneConfig(task="rte", profile="smoke", method="kwon", epochs=0,
                                           sparsity=0.5, merge="joint", calibration=c))
                for c in ("teacher", "sequential")}
    before = sorted(tmp_path.glob("results/smoke/**/*.json"))
    script = SCRIPT.parent / "post_training.py"
    args = ["--profile", "smoke", "--task", "rte", "--sparsity", "0.5", "--method", "kwon",
            "--merge", "joint", "pairwise", "--calibration", "teacher", "sequential",
            "--threads", "1"]
    p = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "results/post_training_speed.json").read_text())
    # pairwise has no sequential fit: three paths, each timed once
    assert sorted((r["merge"], r["calibration"]) for r in rows) == [
        ("joint", "sequential"), ("joint", "teacher"), ("pairwise", "teacher")]
    for r in rows:
        assert r["threads"] == r["torch_threads"] == 1
        assert r["command_s"] > r["wall_s"] > 0 and not r["choice_reused"]  # chosen in the run
        if r["merge"] == "joint":
            assert r["score"] == ordinary[r["calibration"]]["score"]
    assert sorted(tmp_path.glob("results/smoke/**/*.json")) == before  # it wrote in its scratch
    p = subprocess.run([sys.executable, str(script), *args[:-8], "--merge", "joint",
                        "--calib-examples", "64", "32", "--threads", "1"], cwd=tmp_path,
                       capture_output=True, text=True)
    rows = json.loads((tmp_path / "results/post_training_speed.json").read_text())
    # 64 is the smoke profile's own sample: that row is replaced, the 32-example one added
    assert p.returncode == 0 and len(rows) == 4
    assert sorted(r["calib_examples"] for r in rows) == [32, 64, 64, 64]
    table = post_training_speed_table(tmp_path / "results")
    assert table.count("| rte | 50% | kwon | joint | 64 | 1 (") == 1
    assert table.count("| rte | 50% | kwon | joint | 32 | 1 (") == 1
    p = subprocess.run([sys.executable, str(script), *args[:-8], "--merge", "joint",
                        "--bias", "mean", "--threads", "1"], cwd=tmp_path, capture_output=True,
                       text=True)
    rows = json.loads((tmp_path / "results/post_training_speed.json").read_text())
    assert p.returncode == 0 and len(rows) == 5  # the bias is part of a row's key
    [mean] = [r for r in rows if r["bias"] == "mean"]
    assert mean["score"] == run_pruning(PruneConfig(task="rte", profile="smoke", method="kwon",
                                                    epochs=0, sparsity=0.5, merge="joint",
                                                    bias="mean"))["score"]
    assert "| rte | 50% | kwon | joint, mean bias | 64 | 1 (" in (
        post_training_speed_table(tmp_path / "results"))
