"""The runs of notebooks 05 and 06 as configurations, and which of them are still to run."""
from dataclasses import replace

import pytest

from peerprune import grid
from peerprune.profiles import get_profile
from peerprune.prune import ABLATIONS
from peerprune.report import seeds_to_run_table, to_run_table
from peerprune.results import write_json

SMOKE = get_profile("smoke")


def test_the_comparison_runs_every_method_with_its_losses_at_every_sparsity_of_a_sweep_task():
    runs = grid.comparison_runs(SMOKE)
    assert SMOKE.tasks == SMOKE.sweep_tasks == ("rte",)
    pairs = {(m, d) for m in SMOKE.methods for d in grid.losses_of(m)}
    assert ("apd", "peer") in pairs and ("hisp", "kd") in pairs and ("apd", "kd") not in pairs
    assert sorted((c.method, c.distill, c.sparsity) for c in runs) == sorted(
        (m, d, s) for m, d in pairs for s in SMOKE.sparsities)
    assert {c.seed for c in runs} == {SMOKE.seeds[0]}
    assert len(grid.comparison_runs(get_profile("full"), n_seeds=3, tasks=("wnli",))) == 27


def test_the_ablations_are_every_entry_at_58_when_the_profile_names_none():
    runs = grid.ablation_runs(SMOKE)
    assert [c.variant for c in runs] == list(ABLATIONS) and {c.sparsity for c in runs} == {0.58}
    assert [c.variant for c in grid.ablation_runs(get_profile("quick"))] == list(
        get_profile("quick").ablations)


def _finish(c, root, wall_s):
    r = c.resolved()
    write_json(grid.expected_path(c, root), {
        "task": r.task, "profile": r.profile, "model": "tiny", "method": r.method,
        "distill": r.distill, "variant": r.variant, "target_sparsity": r.sparsity,
        "seed": r.seed, "wall_s": wall_s, "train": {"epochs": 1}, "score": 50.0})


def test_missing_drops_the_runs_with_a_results_file_and_counts_each_run_once(tmp_path):
    runs = grid.comparison_runs(SMOKE)
    assert len(grid.missing(runs + runs, tmp_path)) == len(runs)
    _finish(runs[0], tmp_path, 60.0)
    left = grid.missing(runs, tmp_path)
    assert len(left) == len(runs) - 1 and runs[0].resolved() not in left


def test_the_to_run_table_lists_the_missing_runs_with_an_estimate_from_finished_ones(tmp_path):
    runs = grid.comparison_runs(SMOKE) + grid.ablation_runs(SMOKE)
    random_none = [c for c in runs if c.method == "random" and c.distill == "none"]
    _finish(random_none[0], tmp_path, 7200.0)  # the task's only finished run: two hours
    table = to_run_table("smoke", tmp_path)
    n = len(grid.missing(runs, tmp_path))
    assert f"{n} runs, about {2 * n} hours" in table
    assert "| rte | random | none | default | 75% | 0 | 1 | 2.0 |" in table  # 50% is done
    assert "| rte | apd | peer | no-merge | 58% | 0 | 1 | 2.0 |" in table
    for c in runs:
        _finish(c, tmp_path, 1.0)
    assert "has its results file" in to_run_table("smoke", tmp_path)


def test_the_seeds_to_run_are_the_comparison_over_the_other_seeds_of_the_profile(tmp_path):
    full = get_profile("full")
    assert len(full.seeds) == 3
    wnli = grid.comparison_runs(full, n_seeds=3, tasks=("wnli",))
    for c in wnli:
        if c.seed != 2 or c.method != "hisp":  # all but HISP's seed 2 are done
            _finish(c, tmp_path, 360.0)
    table = seeds_to_run_table("full", tmp_path)
    assert "| wnli | hisp | kd | default | 58% | 2 | 1 | 0.1 |" in table
    assert "| wnli | hisp | none | default | 58% | 2 | 1 | 0.1 |" in table
    assert "| wnli | random |" not in table and "| wnli | hisp | kd | default | 58% | 1" not in table


def test_a_real_runs_results_file_is_where_missing_looks(shared_glue, tmp_results):
    from peerprune.prune import run_pruning
    from peerprune.teacher import train_teacher
    train_teacher("rte", "smoke", lr=1e-3)
    runs = grid.comparison_runs(SMOKE)
    random_none = next(c for c in runs if c.method == "random" and c.distill == "none")
    run_pruning(random_none)
    left = grid.missing(runs)
    assert len(left) == len(runs) - 1 and random_none.resolved() not in left


def test_the_methods_default_run_of_both_notebooks_is_counted_once(tmp_path):
    full = get_profile("full")
    runs = grid.comparison_runs(full, tasks=("mrpc",)) + grid.ablation_runs(full)
    default = [c for c in runs if c.task == "mrpc" and c.method == "apd"
               and c.variant == "default" and c.sparsity == 0.58]
    assert len(default) == 2  # notebook 05's and notebook 06's ...
    left = grid.missing(runs, tmp_path)
    assert len(left) == len(runs) - 1  # ... are one run
    assert sum(c.task == "mrpc" and c.method == "apd" and c.variant == "default"
               and c.sparsity == 0.58 for c in left) == 1


def test_a_grid_run_names_its_sparsity():
    c = grid.comparison_runs(SMOKE)[0]
    with pytest.raises(ValueError, match="keep=3"):
        grid.expected_path(replace(c, keep=3))
