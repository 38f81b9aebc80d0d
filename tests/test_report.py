"""Tables over seeds: real smoke runs that differ only in their seed."""
import statistics

from peerprune.prune import PruneConfig, run_pruning
from peerprune.report import comparison_table, pruning_table, seeds_table
from peerprune.teacher import train_teacher


def test_seeds_are_averaged_and_their_spread_shown(shared_glue, tmp_results):
    train_teacher("rte", "smoke", lr=1e-3)
    runs = [run_pruning(PruneConfig(task="rte", method="random", profile="smoke", sparsity=0.58,
                                    seed=seed)) for seed in (0, 1, 2)]
    single = run_pruning(PruneConfig(task="rte", method="random", profile="smoke", sparsity=0.58,
                                     distill="kd"))
    scores = [r["score"] for r in runs]
    assert len({tuple(r["heads_per_layer"]) for r in runs}) > 1 or len(set(scores)) > 1  # seeds differ
    mean, std = statistics.mean(scores), statistics.stdev(scores)

    table = seeds_table("smoke", tmp_results / "results").splitlines()
    assert len(table) == 3  # header, rule, and only the group with three seeds (kd has one)
    row = table[2]
    assert "| random | none |" in row
    assert f"0: {scores[0]:.2f}, 1: {scores[1]:.2f}, 2: {scores[2]:.2f}" in row
    assert f"**{mean:.2f}** | {std:.2f} |" in row

    comparison = comparison_table("smoke", tmp_results / "results")
    assert f"{mean:.2f} ± {std:.2f} (3)" in comparison
    assert f"| {single['score']:.2f} |" in comparison  # one seed: the plain score
    assert f"**{mean:.2f}**" in pruning_table("smoke", tmp_results / "results")
