"""Changes to committed results when a default changes, each one tested.

A result's `config_hash` is recomputable from what the result stores (`recompute_hash`), so
a migration can relabel a run and give it the hash the code would give it now, and a test
can check every committed hash against its recomputation.
"""
from __future__ import annotations

import json
from pathlib import Path

from .results import config_hash, load_results, result_path, write_json


def teacher_hashes(results: list[dict]) -> dict[tuple, str]:
    """(profile, task, model, lr) -> the config hash of that dense teacher."""
    return {(r["profile"], r["task"], r["model"], r["lr"]): r["config_hash"]
            for r in results if r["method"] == "dense"}


def recompute_hash(result: dict, teachers: dict[tuple, str]) -> str:
    """The hash `run_pruning` gives this result's configuration today."""
    from .prune import identity_of
    teacher = result.get("teacher_hash") or teachers[
        (result["profile"], result["task"], result["model"], result["teacher_lr"])]
    processes = (result.get("history") or [{}])[0].get("processes", 1)
    return config_hash(identity_of(result["options"], sum(result["heads_per_layer"]),
                                   result["train"], teacher, processes))


def lagrangian_variant(variant: str) -> str:
    """The name a run of the learned-multiplier locator takes once the projection is the
    default: `default` -> `lagrangian`, `no-merge` -> `no-merge-lagrangian`; names that
    already say their multiplier rate (`...lr-lambda-50`) stay."""
    if "lr-lambda" in variant:
        return variant
    return "lagrangian" if variant == "default" else f"{variant}-lagrangian"


def relabel_lagrangian(root, profile: str | None = None) -> list[Path]:
    """Every `apd` result made before the `budget` option existed (the learned multipliers)
    gets `budget: lagrangian` in its options, its variant renamed by `lagrangian_variant`,
    and the hash of that configuration; the file moves to its new name. Returns the new
    paths; a second call finds nothing to do."""
    teachers = teacher_hashes(load_results(root))
    moved = []
    for old in sorted(Path(root).rglob("*.json")):
        r = json.loads(old.read_text())
        if not isinstance(r, dict) or r.get("method") != "apd" or "options" not in r \
                or "budget_control" in r["options"]:
            continue
        if profile and r["profile"] != profile:
            continue
        variant = lagrangian_variant(r["variant"])
        r["variant"] = variant
        r["options"] = {**r["options"], "variant": variant, "budget_control": "lagrangian"}
        r["config_hash"] = recompute_hash(r, teachers)
        new = result_path(r, root)
        if new != old and new.exists():
            raise FileExistsError(f"relabelling {old} would overwrite {new}")
        write_json(new, r)
        if new != old:
            old.unlink()
        moved.append(new)
    return moved


def rehash_post_training(root) -> list[Path]:
    """The post-training runs of the baselines (epochs 0) made before `rho`, the merge's
    ridge, counted in their identity (it did for the method only): they ran at the default
    ridge, so only their hash changes, to the one their configuration has today."""
    teachers = teacher_hashes(load_results(root))
    changed = []
    for path in sorted(Path(root).rglob("*.json")):
        r = json.loads(path.read_text())
        if not isinstance(r, dict) or r.get("method") in (None, "dense", "apd") \
                or r.get("train", {}).get("epochs") != 0:
            continue
        h = recompute_hash(r, teachers)
        if h != r["config_hash"]:
            write_json(path, {**r, "config_hash": h})
            changed.append(path)
    return changed
