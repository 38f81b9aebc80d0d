"""Every notebook, run in order through papermill with the smoke profile, writes what it
should (the way recommenders' tests/unit/examples run their notebooks)."""
import json
import subprocess
import sys
from pathlib import Path

import papermill as pm
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL = "peerprune"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def executed(shared_glue, tmp_path_factory, monkeypatch_module):
    """Run all notebooks once, in order, in a scratch work folder; keep each one's error."""
    monkeypatch_module.setenv("OMP_NUM_THREADS", "1")  # the kernels: tiny models, one core
    for quiet in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS"):  # as run_all.sh does
        monkeypatch_module.setenv(quiet, "1")
    work = tmp_path_factory.mktemp("work")
    (work / "README.md").write_text("<!-- table:comparison:smoke -->\n<!-- /table:comparison:smoke -->\n")
    # a real (tiny) speed benchmark, for the results notebook's latency figure
    speed = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    subprocess.run([sys.executable, str(speed), "--model", "tiny", "--sparsity", "0.25", "0.75",
                    "--batch-size", "1", "4", "--seq-len", "16", "--warmup", "1", "--repeats", "2",
                    "--out", str(work / "results" / "benchmark.json")], check=True,
                   capture_output=True)
    errors = {}
    for nb in NOTEBOOKS:
        out = work / "results" / "smoke" / "executed" / nb.name
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            pm.execute_notebook(str(nb), str(out), kernel_name=KERNEL, cwd=str(nb.parent),
                                parameters={"profile": "smoke", "task": "rte",
                                            "workdir": str(work), "glue_dir": str(shared_glue)},
                                progress_bar=False)
        except Exception as e:  # report per notebook below
            errors[nb.name] = e
    return work, errors


def test_notebooks_exist_in_order():
    names = [nb.name for nb in NOTEBOOKS]
    assert names[0].startswith("00_") and len(names) == 10
    assert [int(n[:2]) for n in names] == list(range(10))


@pytest.mark.parametrize("name", [nb.name for nb in NOTEBOOKS])
def test_notebook_runs(executed, name):
    work, errors = executed
    assert name not in errors, f"{name} failed: {errors.get(name)}"
    out = json.loads((work / "results" / "smoke" / "executed" / name).read_text())
    assert out["metadata"]["papermill"]["parameters"]["profile"] == "smoke"


@pytest.mark.parametrize("name", [nb.name for nb in NOTEBOOKS])
def test_figures_show_inline_and_exercises_run(executed, name):
    """What a student sees: every figure cell has an image, every exercise starter and check
    cell ran, and no cell writes to stderr (no warnings to learn to ignore)."""
    work, errors = executed
    if name in errors:
        pytest.skip(f"{name} failed (see test_notebook_runs)")
    cells = json.loads((work / "results" / "smoke" / "executed" / name).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    for c in code:
        tags = c["metadata"].get("tags", [])
        if "figure" in tags:
            assert any("image/png" in o.get("data", {}) for o in c["outputs"]), (
                f"{name}: a figure cell shows no image: {''.join(c['source'])[:80]}")
        if {"exercise", "check"} & set(tags):
            assert c["execution_count"] is not None
            assert not any(o["output_type"] == "error" for o in c["outputs"])
    if any("exercise" in c["metadata"].get("tags", []) for c in code):
        checks = [c for c in code if "check" in c["metadata"].get("tags", [])]
        assert 2 <= len(checks) <= 4, f"{name}: {len(checks)} exercises"
        assert all("not yet" in "".join(o.get("text", "")) for c in checks for o in c["outputs"]
                   if o.get("name") == "stdout" and "".join(o.get("text", "")).strip()), (
            "a starter must not pass its own check")
    frozen = [o for c in code for o in c["outputs"] if "it/s]" in str(o.get("data", o.get("text")))]
    assert not frozen, f"{name}: a progress bar saved as frozen text"
    stderr = [c for c in code if any(o.get("name") == "stderr" for o in c["outputs"])]
    assert not stderr, f"{name}: stderr in {len(stderr)} cells"


def test_outputs_written(executed):
    work, _ = executed
    res, fig = work / "results" / "smoke", work / "figures" / "smoke"
    data = json.loads((res / "notebooks" / "00_data_rte.json").read_text())
    assert data["train_used"] == 64 and data["max_tokens"] <= 64
    dense = json.loads(next((res / "tiny" / "rte").glob("dense-*.json")).read_text())
    assert dense["method"] == "dense"
    anatomy = json.loads((res / "notebooks" / "02_anatomy_rte.json").read_text())
    assert len(anatomy["r2"]) == 2 and all(0 <= x <= 1 for row in anatomy["r2"] for x in row)
    merge = json.loads((res / "notebooks" / "04_merge_rte.json").read_text())["reconstruction_error"]
    assert sum(merge["pairwise"]) < sum(merge["none"])
    paths = json.loads((res / "notebooks" / "04_post_training_rte.json").read_text())["rows"]
    # notebook 04's post-training paths train nothing, beside the method, which fine-tunes
    assert [(r["mask"], r["fine-tuning epochs"]) for r in paths[:-1]] == (
        [("apd", 0)] * 4 + [("kwon", 0)] * 2) and paths[-1]["fine-tuning epochs"] > 0
    assert [r["recovery"] for r in paths[:4]] == ["none", "rescale", "pairwise", "joint"]
    runs = [json.loads(p.read_text()) for p in (res / "tiny" / "rte").glob("*.json")]
    methods = {(r["method"], r["distill"]) for r in runs}
    assert {("apd", "peer"), ("random", "none"), ("random", "kd"), ("hisp", "kd"), ("l0", "none"),
            ("smp", "kd")} <= methods
    assert {r["variant"] for r in runs if r["method"] == "apd"} >= {"default", "no-merge", "uniform"}
    assert ("outnorm", "kd") in methods  # notebook 08's registered criterion, a method like any
    for name in ("anatomy_rte_cosine", "anatomy_rte_cka", "anatomy_rte_r2", "locator_rte",
                 "locator_gate_probability", "locator_temperature", "peer_distillation_rte",
                 "peers_rte", "score_vs_sparsity", "kept_heads", "cost_vs_sparsity",
                 "latency_vs_sparsity", "locator_run_rte_s0.50_seed0", "baselines_toy_masks",
                 "locator_run_rte_s0.75_seed0", "post_training_rte"):
        for ext in ("png", "pdf"):
            assert (fig / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    example = (res / "notebooks" / "09_example.csv").read_text().splitlines()
    assert example[0] == "text,text_pair,label" and len(example) > 40  # notebook 09's CSV
    table = (res / "tables" / "comparison.csv").read_text()
    assert table.startswith("task,metric,dense") and "apd (peer)" in table
    readme = (work / "README.md").read_text()
    assert "| rte |" in readme and "apd (peer)" in readme


def test_notebooks_committed_without_outputs():
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), nb.name
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and "profile: str" in "".join(tagged[0]["source"]), nb.name
