"""Tables over seeds: real smoke runs that differ only in their seed."""
import statistics
from dataclasses import replace

from peerprune.prune import PruneConfig, run_pruning
from peerprune.report import (ablation_table, comparison_table, lossless_share, pruning_table,
                              seeds_table, sweep_rows, sweep_table)
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


def test_ablation_table_puts_each_variant_beside_the_default(shared_glue, tmp_results):
    from peerprune.prune import ablation
    train_teacher("rte", "smoke", lr=1e-3)
    base = PruneConfig(task="rte", profile="smoke", sparsity=0.5)
    default = [run_pruning(replace(base, seed=seed)) for seed in (1, 0)]
    no_merge = run_pruning(ablation(base, "no-merge"))
    run_pruning(ablation(replace(base, sparsity=0.75), "joint"))  # another sparsity: left out
    run_pruning(replace(base, variant="old-default"))  # not an ablation: left out
    # the learned multipliers' default and their no-merge: a row of their own
    old = run_pruning(ablation(base, "lagrangian"))
    old_no_merge = run_pruning(replace(ablation(base, "no-merge"), budget_control="lagrangian",
                                       variant="no-merge-lagrangian"))
    table = ablation_table("smoke", tmp_results / "results", target=0.5).splitlines()
    assert table[0] == ("| task | budget control | metric | dense | default, first seed | default "
                        "| no-merge |")
    scores = [default[1]["score"], default[0]["score"]]  # seeds 0, 1
    mean, std = statistics.mean(scores), statistics.stdev(scores)
    teacher = f"{default[0]['teacher_score']:.2f}"
    assert table[2] == (f"| rte | projection | accuracy | {teacher} | {scores[0]:.2f} | "
                        f"{mean:.2f} ± {std:.2f} (2) | {no_merge['score']:.2f} |")
    assert table[3] == (f"| rte | lagrangian | accuracy | {teacher} | {old['score']:.2f} | "
                        f"{old['score']:.2f} | {old_no_merge['score']:.2f} |")
    assert len(table) == 4
    assert "No ablation" in ablation_table("smoke", tmp_results / "results", target=0.25)


def _row(task, target, teacher, score):
    return {"task": task, "target_sparsity": target, "teacher": teacher,
            "scores": {"apd (peer)": (score, 1)}}


def test_lossless_share_stops_at_the_first_sparsity_that_falls_short():
    rows = [_row("a", 0.25, 80.0, 80.2), _row("a", 0.5, 80.0, 79.5),  # above, exactly 0.5 below
            _row("a", 0.75, 80.0, 79.4), _row("a", 0.92, 80.0, 80.0),  # short, then within again
            _row("b", 0.25, 50.0, 49.0), _row("c", 0.5, 10.0, 12.0),
            {"task": "d", "target_sparsity": 0.5, "teacher": 1.0, "scores": {"random (kd)": (1.0, 1)}}]
    assert lossless_share(rows) == {"a": 0.5, "b": None, "c": 0.5}
    assert lossless_share(rows, tolerance=1.0) == {"a": 0.92, "b": 0.25, "c": 0.5}


def test_sweep_table_has_a_row_per_sparsity_and_every_method(shared_glue, tmp_results):
    train_teacher("rte", "smoke", lr=1e-3)
    runs = {(m, s): run_pruning(PruneConfig(task="rte", method=m, profile="smoke", sparsity=s))
            for m in ("random", "hisp") for s in (0.5, 0.75)}
    run_pruning(PruneConfig(task="rte", method="random", profile="smoke", sparsity=0.5,
                            variant="other"))  # not a default variant: left out
    rows = sweep_rows("smoke", tmp_results / "results")
    assert [(r["task"], r["target_sparsity"]) for r in rows] == [("rte", 0.5), ("rte", 0.75)]
    for r in rows:
        assert r["heads_kept"] == round(8 * (1 - r["target_sparsity"]))  # 2 layers x 4 heads
        assert r["scores"] == {f"{m} (none)": (runs[(m, r["target_sparsity"])]["score"], 1)
                               for m in ("random", "hisp")}
    table = sweep_table("smoke", tmp_results / "results", column="hisp (none)").splitlines()
    assert table[0] == "| task | metric | heads removed | heads kept | dense | hisp (none) | random (none) |"
    assert table[3].startswith(f"| rte | accuracy | 75% | 2 | {rows[1]['teacher']:.2f} | "
                               f"{runs[('hisp', 0.75)]['score']:.2f} |")
    share = lossless_share(rows, "hisp (none)")["rte"]
    within = [f"{r['target_sparsity']:.0%}" for r in rows
              if runs[("hisp", r["target_sparsity"])]["score"] >= r["teacher"] - 0.5]
    assert table[-1] == ("- rte: `hisp (none)` is within 0.5 points of the teacher at "
                         + f"{', '.join(within) or 'none'} (of 50%, 75%); at every sparsity up to: "
                         + ("none" if share is None else f"**{share:.0%}**") + ".")


def test_run_all_records_its_cost_and_the_table_reads_it(tmp_path):
    from peerprune.report import run_all_table
    from peerprune.results import record_run_all, write_json
    assert "No `./run_all.sh --profile quick`" in run_all_table("quick", tmp_path)
    write_json(tmp_path / "quick" / "minilm" / "mrpc" / "dense-none.json", {"task": "mrpc"})
    r = record_run_all("quick", "mrpc", 1000, 1000 + 45 * 60 + 20, 0, root=tmp_path)
    assert (r["seconds"], r["runs_before"], r["runs_after"]) == (2720, 0, 1)
    assert r["torch_threads"] >= 1 and r["cores"] >= 1
    row = run_all_table("quick", tmp_path).splitlines()[-1].split(" | ")
    assert row[2:3] == ["45"] and row[5:7] == ["0", "1"]


def test_post_training_summary_counts_what_the_rows_say():
    from peerprune.report import post_training_summary
    def row(seconds, **scores):
        return {"teacher": 86.0, "scores": scores, "seconds": dict.fromkeys(scores, seconds)}
    rows = {("mrpc", 0.58, "kwon", 0, 512): row(50, none=80.0, rescale=85.0, pairwise=85.7,
                                                joint=84.0),
            ("mrpc", 0.75, "kwon", 0, 512): row(50, none=81.0, rescale=81.0, pairwise=81.0,
                                                joint=81.0),
            ("mrpc", 0.75, "hisp", 0, 512): row(300, rescale=84.0, joint=85.2)}
    lines = post_training_summary(rows)
    # HISP's 75% path is within 1 point but took 300 s: not among the two-minute paths
    assert lines[0] == ("- mrpc: the best post-training path is within 0.5 points of the teacher "
                        "at 58%, within 1 point at 58%, 75% (of 58%, 75%); in at most 120 s, "
                        "head choice included, within 0.5 at 58%, within 1 at 58%.")
    # a tie (an emptied layer) is not ahead; a row behind is named
    assert lines[-1].endswith("in 2 of 3 rows, level in 1, behind in 0.")
    rows[("mrpc", 0.83, "apd", 0, 512)] = row(50, rescale=83.0, joint=82.0)
    assert post_training_summary(rows)[-1].endswith(
        "in 2 of 4 rows, level in 1, behind in 1 (mrpc 83% apd).")


def test_a_head_choice_read_back_costs_what_it_cost_where_it_was_made():
    from peerprune.report import choice_seconds, path_seconds
    made = {"wall_s": 330.0, "timings": {"locate_s": 300.0}, "choice": {"path": "c", "reused": False}}
    read = {"wall_s": 40.0, "timings": {"locate_s": 0.5}, "choice": {"path": "c", "reused": True}}
    seconds = choice_seconds([made, read])
    assert seconds == {"c": 300.0}
    assert path_seconds(made, seconds) == 330.0 and path_seconds(read, seconds) == 339.5


def test_head_choices_keep_one_row_per_choice_and_name_what_changed_it():
    import pandas as pd

    from peerprune.prune import PruneConfig
    from peerprune.report import head_choices

    def run(heads, seed=0, **fields):
        c = PruneConfig(task="mrpc", profile="full", seed=seed, **fields).resolved()
        opts = {k: getattr(c, k) for k in c.__dataclass_fields__}
        return {"task": "mrpc", "method": c.method, "seed": seed, "target_sparsity": c.sparsity,
                "options": opts, "heads_per_layer": heads}
    frame = pd.DataFrame([
        run([3, 2], method="hisp", epochs=0, merge="joint"),  # the post-training path ...
        run([3, 2], method="hisp", epochs=0, merge="rescale"),  # ... shares its choice
        run([3, 2], method="hisp", distill="kd"),  # so does a fine-tuned run
        run([1, 4], method="hisp", seed=1),  # another seed: not drawn
        run([2, 3], method="apd", allocation="uniform"),  # an ablation that changes the choice
        run([4, 1], method="kwon", calib_examples=128),  # an option away from its default
        run([5, 5], method="kwon", hisp_step=0.5),  # an option kwon does not read: no name
        {"task": "mrpc", "method": "dense", "seed": 0, "target_sparsity": 0.0,
         "options": {}, "heads_per_layer": [12, 12]}])
    assert head_choices(frame) == {"mrpc apd (uniform) 58%": [2, 3], "mrpc hisp 58%": [3, 2],
                                   "mrpc kwon (calib_examples=128) 58%": [4, 1],
                                   "mrpc kwon 58%": [5, 5]}


def test_choice_label_names_only_options_a_run_has_when_it_sets_them():
    from peerprune.profiles import get_profile
    from peerprune.report import choice_label

    def options(task, **fields):
        c = PruneConfig.for_profile("full", task, method="l0", **fields).resolved()
        return {k: getattr(c, k) for k in c.__dataclass_fields__}
    own = get_profile("full").for_task("sst2").prune_options["max_steps"]  # SST-2's own cap
    assert choice_label(options("sst2"), "l0") == []  # the profile's own for the task
    assert choice_label(options("sst2", max_steps=None), "l0") == []  # the field's default
    assert choice_label(options("sst2", max_steps=own + 1), "l0") == [f"max_steps={own + 1}"]
    assert choice_label(options("mrpc", max_steps=own), "l0") == [f"max_steps={own}"]


def test_post_training_rows_part_masks_made_under_other_choice_options(tmp_path):
    from peerprune.report import post_training_table
    from peerprune.results import write_json

    def save(name, score, **fields):
        c = PruneConfig(task="mrpc", profile="full", epochs=0, sparsity=0.75,
                        **fields).resolved()
        write_json(tmp_path / "full" / "minilm" / "mrpc" / f"{name}.json", {
            "task": "mrpc", "profile": "full", "model": "minilm", "method": c.method,
            "distill": c.distill, "variant": c.variant, "target_sparsity": 0.75, "seed": 0,
            "score": score, "teacher_score": 86.87, "metric": "f1", "wall_s": 60.0,
            "timings": {"locate_s": 30.0}, "choice": {"path": name, "reused": False},
            "train": {"epochs": 0}, "options": {k: getattr(c, k) for k in c.__dataclass_fields__}})
    save("a", 85.0, method="hisp", merge="joint")
    save("b", 84.0, method="hisp", merge="joint", hisp_step=0.25)  # another choice: its own row
    save("c", 83.0, method="kwon", merge="joint", calib_examples=128)  # its size has a column
    rows = [line for line in post_training_table("full", tmp_path).splitlines()
            if line.startswith("| mrpc")]
    assert len(rows) == 3
    assert "| hisp | 0 | 512 | 86.87 |" in rows[0] and "| 85.00 |" in rows[0]
    assert "| hisp, hisp_step=0.25 | 0 | 512 |" in rows[1] and "| 84.00 |" in rows[1]
    assert "| kwon | 0 | 128 |" in rows[2]


def test_a_mean_bias_is_a_recovery_of_the_same_mask_and_is_counted_against_the_bias_kept(
        tmp_path):
    from peerprune.report import post_training_summary, post_training_table
    from peerprune.results import write_json

    def save(name, score, **fields):
        c = PruneConfig(task="mrpc", profile="full", epochs=0, sparsity=0.92, method="kwon",
                        **fields).resolved()
        write_json(tmp_path / "full" / "minilm" / "mrpc" / f"{name}.json", {
            "task": "mrpc", "profile": "full", "model": "minilm", "method": c.method,
            "distill": c.distill, "variant": c.variant, "target_sparsity": 0.92, "seed": 0,
            "score": score, "teacher_score": 86.87, "metric": "f1", "wall_s": 60.0,
            "timings": {"locate_s": 30.0}, "choice": {"path": "kwon", "reused": False},
            "train": {"epochs": 0}, "options": {k: getattr(c, k) for k in c.__dataclass_fields__}})
    save("a", 81.22, merge="joint")
    save("b", 83.5, merge="joint", bias="mean")
    save("c", 81.22, merge="rescale")
    save("d", 84.0, merge="rescale", bias="mean")  # Kwon's scales with the mean bias: theirs
    save("e", 85.0, merge="none", bias="mean")  # no merge, however high: neither ours nor theirs
    table = post_training_table("full", tmp_path).splitlines()
    head = [c.strip() for c in table[0].split("|")]
    [row] = [[c.strip() for c in line.split("|")] for line in table if line.startswith("| mrpc")]
    assert row[head.index("joint, mean bias")] == "83.50" and row[head.index("joint")] == "81.22"
    assert "pairwise, mean bias" not in head  # a recovery's column only where it was run
    summary = [line for line in table if line.startswith("- ")]
    # the best of ours (83.50) is behind the best rescaling, the one with the mean bias (84.00)
    assert summary[-2].endswith("in 0 of 1 rows, level in 0, behind in 1 (mrpc 92% kwon).")
    assert summary[-1] == ("- The mean bias against the bias kept, same mask and recovery: "
                           "higher in 2 of 2, level in 0, lower in 0; the change goes from "
                           "+2.28 (mrpc 92% kwon, joint, mean bias) to +2.78 (mrpc 92% kwon, "
                           "rescale, mean bias).")
    assert not any("mean bias" in line for line in post_training_summary(
        {("mrpc", 0.58, "kwon", 0, 512): {"teacher": 86.0, "scores": {"joint": 85.0},
                                           "seconds": {"joint": 10}}}))
