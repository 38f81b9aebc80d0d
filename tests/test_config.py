"""A config field declares its role once; the run's identity, the head choice's key and
validation follow from it."""
from dataclasses import asdict, dataclass, fields, replace

import pytest

from peerprune.prune import (AFTER_THE_CHOICE, METHOD_OPTIONS, PruneConfig, check_config,
                             choice_options, identity, option, valid_values)


@dataclass
class WithNewOptions(PruneConfig):
    """Today's config plus three options, each declared with its role."""
    polish: float = option(0.0, "acts after the choice", "fine-tuning", after_choice=True)
    hisp_rounds: int = option(1, "a HISP-only knob", "hisp", methods=("hisp",))
    gate_noise: str = option("logistic", "a knob of the choice, added after results existed",
                             "locator", choices=("logistic", "gauss"), omit_at="logistic")


def keys(c):
    c = c.resolved()
    ident = identity(asdict(c), type(c))
    return ident, choice_options(ident, type(c))


def test_a_new_field_changes_the_keys_where_it_should_and_only_there():
    base = WithNewOptions(task="rte", profile="smoke")
    ident, choice = keys(base)
    # at their defaults the new options leave the identity of today's runs as it was
    assert keys(base)[0] == {**keys(PruneConfig(task="rte", profile="smoke"))[0], "polish": 0.0}
    assert "gate_noise" not in ident and "hisp_rounds" not in ident
    # after the choice: a new run, the same head choice
    polished = keys(replace(base, polish=0.5))
    assert polished[0] != ident and polished[1] == choice
    # a HISP knob: nothing for the method, a new run and a new choice for HISP
    assert keys(replace(base, hisp_rounds=3)) == (ident, choice)
    hisp = replace(base, method="hisp")
    assert keys(replace(hisp, hisp_rounds=3))[1] != keys(hisp)[1]
    # a knob of the choice: a new run and a new choice; its values are validated
    noisy = keys(replace(base, gate_noise="gauss"))
    assert noisy[0] != ident and noisy[1] != choice
    with pytest.raises(ValueError, match="unknown gate_noise 'cauchy'; valid: logistic, gauss"):
        check_config(replace(base, gate_noise="cauchy").resolved())


def test_the_derived_tables_cover_every_field_once():
    names = {f.name for f in fields(PruneConfig)}
    assert set(AFTER_THE_CHOICE) <= names
    assert {k for ks in METHOD_OPTIONS.values() for k in ks} <= names
    assert set(METHOD_OPTIONS) == {"apd", "hisp", "l0", "smp"}
    assert valid_values("method") == ("apd", "random", "hisp", "l0", "smp", "kwon", "mergeable")
    assert "variant" in AFTER_THE_CHOICE and "seed" not in AFTER_THE_CHOICE


def test_a_baseline_on_the_post_training_path_is_identified_by_its_merge_and_ridge():
    base = PruneConfig(task="rte", profile="smoke", method="hisp")
    assert {"merge", "rho"}.isdisjoint(keys(base)[0])  # a fine-tuned baseline: no merge
    post = replace(base, epochs=0, merge="pairwise")
    assert {"merge", "rho"} <= set(keys(post)[0])
    assert keys(replace(post, rho=0.1))[0] != keys(post)[0]
    with pytest.raises(ValueError, match="final_temperature must be in"):
        check_config(replace(base, final_temperature=0.0).resolved())


def test_every_profile_names_only_ablations_that_exist():
    from peerprune.profiles import PROFILES
    from peerprune.prune import ABLATIONS
    for p in PROFILES.values():
        assert set(p.ablations) <= set(ABLATIONS), (p.name, set(p.ablations) - set(ABLATIONS))
        assert not p.ablations or "default" in p.ablations  # the row the others are read against


def test_a_task_override_applies_to_its_task_and_its_teacher_only():
    from dataclasses import fields as dc_fields

    from peerprune.profiles import PROFILES, get_profile
    from peerprune.teacher import teacher_config
    full = get_profile("full")
    sst2, mrpc = full.for_task("sst2"), full.for_task("mrpc")
    assert mrpc == full and sst2 != full
    assert sst2.epochs == full.task_overrides["sst2"]["epochs"] != full.epochs
    assert len(sst2.teacher_lrs) >= 2  # the sweep of at least two rates
    assert teacher_config("sst2", "full", 1e-4)["train"]["epochs"] == sst2.epochs
    assert teacher_config("SST2", "full", 1e-4) == teacher_config("sst2", "full", 1e-4)
    assert teacher_config("mrpc", "full", 1e-4)["train"]["epochs"] == full.epochs
    from dataclasses import replace

    from peerprune.profiles import TASK_FIELDS
    assert set(TASK_FIELDS) <= {f.name for f in dc_fields(full)}
    for p in PROFILES.values():  # every override is one the readers honour
        for task in p.task_overrides:
            p.for_task(task)
    odd = replace(full, task_overrides={"rte": {"max_length": 64}})
    with pytest.raises(ValueError, match="a task may set only epochs, teacher_lrs"):
        odd.for_task("rte")


def test_a_task_s_prune_options_add_to_the_profile_s_and_reach_its_runs_only():
    from dataclasses import replace

    from peerprune.profiles import get_profile
    from peerprune.prune import PruneConfig
    full = get_profile("full")
    cap = full.for_task("sst2").prune_options["max_steps"]
    assert PruneConfig.for_profile("full", "SST-2").max_steps == cap
    assert PruneConfig.for_profile("full", "sst2").locator_config(1e-4, 32).max_steps == cap
    assert PruneConfig.for_profile("full", "mrpc").max_steps is None
    assert PruneConfig.for_profile("full", "my-csv-task").max_steps is None  # own data
    # a task's options are added to the profile's, not put in their place
    both = replace(full, prune_options=dict(smp_steps=7),
                   task_overrides={"rte": dict(prune_options=dict(max_steps=9))})
    rte = PruneConfig.for_profile(both, "rte")
    assert (rte.smp_steps, rte.max_steps) == (7, 9)
    assert PruneConfig.for_profile(both, "mrpc").max_steps is None


def test_a_budget_the_per_layer_rule_cannot_meet_is_refused_before_any_teacher(tmp_path):
    from peerprune.prune import run_pruning
    refused = [dict(keep=1, min_one_per_layer=True), dict(method="smp", keep=1),
               dict(keep=1, allocation="uniform"), dict(keep=99)]
    for options in refused:
        c = PruneConfig(task="rte", profile="smoke", **options)
        with pytest.raises(ValueError, match="keep|heads kept"):
            run_pruning(c, results_root=tmp_path / "r", checkpoints_root=tmp_path / "c")
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()  # nothing trained
    check_config(PruneConfig(task="rte", profile="smoke", keep=2, min_one_per_layer=True).resolved())


def test_a_data_parallel_search_has_its_own_head_choice(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import peerprune.results as results
    from peerprune.choices import choice_dir, l0_tries_dir
    args = ({"method": "apd", "seed": 0}, 30, "teacherhash", {"lr": 1e-4, "batch_size": 32,
                                                              "max_length": 128}, None)
    one = choice_dir(tmp_path, *args), l0_tries_dir(tmp_path, args[0], *args[2:])
    monkeypatch.setattr(results, "distributed_state", lambda: SimpleNamespace(num_processes=2))
    two = choice_dir(tmp_path, *args), l0_tries_dir(tmp_path, args[0], *args[2:])
    assert one[0] != two[0] and one[1] != two[1]
    # one process keeps the key the committed choices were saved under
    assert one[0].name == "choice-apd-" + results.config_hash(
        {"prune": args[0], "keep": 30, "teacher": "teacherhash", "train_examples": None,
         "train": args[3]})


def test_the_locator_config_is_derived_from_the_run_config_by_name():
    from dataclasses import fields as dc_fields

    from peerprune.locator import LocatorConfig
    c = PruneConfig(task="rte", locator_epochs=3, epochs=7, final_temperature=0.2,
                    locator_min_steps=9, lr_gates=0.05, beta=0.5, allocation="uniform",
                    max_steps=11, seed=4)
    lc = c.locator_config(lr=1e-3, batch_size=8)
    assert (lc.epochs, lc.min_steps, lc.final_temperature, lc.lr_gates, lc.beta) == (3, 9, 0.2,
                                                                                     0.05, 0.5)
    assert (lc.allocation, lc.max_steps, lc.seed, lc.lr, lc.batch_size) == ("uniform", 11, 4,
                                                                            1e-3, 8)
    run_fields = {f.name for f in dc_fields(PruneConfig)}
    derived = {f.name for f in dc_fields(LocatorConfig)
               if f.name in run_fields or f"locator_{f.name}" in run_fields}
    # only the device and whether the weights learn (off in L0's tries) are not options
    assert {f.name for f in dc_fields(LocatorConfig)} - derived - {"lr", "batch_size"} == {
        "device", "train_weights"}


def test_the_options_command_lists_every_field_under_its_concern(capsys):
    from dataclasses import fields as dc_fields

    from peerprune.__main__ import build_parser, main
    from peerprune.prune import options_by_group
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    groups = options_by_group()
    assert {"run", "fine-tuning", "method", "locator", "hisp", "l0", "smp"} == set(groups)
    assert sorted(n for names in groups.values() for n in names) == sorted(
        f.name for f in dc_fields(PruneConfig))
    for group, names in groups.items():  # each field printed inside its group's block
        block = out.split(f"\n{group}:\n" if group != "run" else "run:\n", 1)[1].split(":\n")[0]
        assert all(f"  {n} " in block for n in names), group
    # the command line takes its defaults from the config's fields, not from its own copy
    args = build_parser().parse_args(["prune", "--task", "rte"])
    assert (args.profile, args.method, args.sparsity) == (
        PruneConfig.profile, [PruneConfig.method], [PruneConfig.sparsity])


def test_a_sequential_fit_names_its_run_and_needs_a_merge_it_can_fit():
    from peerprune.prune import PruneConfig, check_config
    post = PruneConfig(task="mrpc", profile="smoke", method="kwon", epochs=0, merge="rescale",
                       calibration="sequential").resolved()
    assert post.variant == "post-rescale-sequential" and post.resolved() == post
    tuned = PruneConfig(task="mrpc", profile="smoke", merge="joint", calibration="sequential")
    assert tuned.resolved().variant == "sequential"
    assert PruneConfig(task="mrpc", profile="smoke", epochs=0, method="hisp",
                       merge="joint").resolved().variant == "post-joint"  # unchanged
    with pytest.raises(ValueError, match="fits merge joint, rescale; this run has merge 'pairwise'"):
        check_config(PruneConfig(task="mrpc", profile="smoke", calibration="sequential").resolved())


def test_a_calibration_size_of_its_own_is_named_in_the_variant():
    from peerprune.prune import ablation, with_calib_examples
    c = PruneConfig.for_profile("full", "mrpc", method="kwon", epochs=0, merge="joint")
    assert with_calib_examples(c, 512) is c  # the profile's own size: the same run
    small = with_calib_examples(c, 128)
    assert small.calib_examples == 128 and small.resolved().variant == "post-joint-calib128"
    big = with_calib_examples(ablation(c, "one-per-layer"), 2048)
    assert big.resolved().variant == "post-joint-one-per-layer-calib2048"
    with pytest.raises(ValueError, match="at least 1, got 0"):
        with_calib_examples(c, 0)


def test_a_mean_bias_names_its_run_and_belongs_to_a_merge():
    from peerprune.prune import check_config, run_identity
    post = PruneConfig(task="mrpc", profile="smoke", method="kwon", epochs=0, merge="joint",
                       calibration="sequential", bias="mean").resolved()
    assert post.variant == "post-joint-sequential-mean-bias" and post.resolved() == post
    assert PruneConfig(task="mrpc", profile="smoke", bias="mean").resolved().variant == "mean-bias"
    check_config(post)
    # the runs made before the option existed keep their identity: "keep" is left out of it
    keep = PruneConfig(task="mrpc", profile="smoke", method="kwon", epochs=0, merge="joint")
    mean = PruneConfig(task="mrpc", profile="smoke", method="kwon", epochs=0, merge="joint",
                       bias="mean")
    from peerprune.train import TrainConfig
    train = TrainConfig()
    assert "bias" not in run_identity(keep.resolved(), 10, train, "t")["prune"]
    assert run_identity(mean.resolved(), 10, train, "t")["prune"]["bias"] == "mean"
    with pytest.raises(ValueError, match="bias 'mean' moves the bias of a merge"):
        check_config(PruneConfig(task="mrpc", profile="smoke", method="hisp",
                                 bias="mean").resolved())
    with pytest.raises(ValueError, match="peer loss of distill 'peer' would pull it back"):
        check_config(PruneConfig(task="mrpc", profile="smoke", bias="mean").resolved())
    check_config(PruneConfig(task="mrpc", profile="smoke", bias="mean", distill="kd").resolved())
    with pytest.raises(ValueError, match="unknown bias 'median'; valid: keep, mean"):
        check_config(PruneConfig(task="mrpc", profile="smoke", bias="median").resolved())
