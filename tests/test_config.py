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
    names = {f.name for f in dc_fields(full)}
    for p in PROFILES.values():  # an override names only the profile's own fields
        for task, own in p.task_overrides.items():
            assert set(own) <= names - {"name", "task_overrides"}, (p.name, task, own)
