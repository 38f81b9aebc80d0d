"""The pruning runs of a profile's comparison and ablations (notebooks 05 and 06), as
configurations, and which of them have no results file yet.

    for c in comparison_runs(get_profile("full")):   # notebook 05
        run_pruning(c)

`comparison_runs` is notebook 05's grid: every method with each of its fine-tuning losses
(the method with its own, a baseline without and with KD), at the profile's sparsities on
its sweep tasks and 58% on the others, over its first `n_seeds` seeds. `ablation_runs` is
notebook 06's: each ablation of the method at 58% on the ablation tasks. `missing` keeps
those with no results file: what of these `./run_all.sh --profile P` would still run (the
teachers, which notebook 01 trains first, and the other notebooks' few runs aside).
"""
from __future__ import annotations

from .profiles import Profile, get_profile
from .prune import ABLATIONS, PruneConfig, ablation, result_stub
from .results import result_path

AT = 0.58  # the sparsity of the comparison off the sweep tasks, and of the ablations


def losses_of(method: str) -> tuple[str, ...]:
    """The fine-tuning losses a method is compared with: the method its own (`peer`), every
    baseline without distillation and with logit KD."""
    return ("peer",) if method == "apd" else ("none", "kd")


def comparison_runs(p: Profile, n_seeds: int = 1, tasks=None) -> list[PruneConfig]:
    """Notebook 05's runs, task by task (`tasks`: default the profile's offline ones)."""
    return [PruneConfig.for_profile(p, t, method=m, sparsity=s, seed=seed, distill=d)
            for t in (p.tasks if tasks is None else tasks)
            for s in (p.sparsities if t in p.sweep_tasks else (AT,))
            for seed in p.seeds[:n_seeds] for m in p.methods for d in losses_of(m)]


def ablation_runs(p: Profile) -> list[PruneConfig]:
    """Notebook 06's runs: the profile's ablations (every one when it names none)."""
    return [ablation(PruneConfig.for_profile(p, t, method="apd", sparsity=AT), name)
            for t in p.ablation_tasks for name in p.ablations or ABLATIONS]


def expected_path(c: PruneConfig, results_root=None):
    """Where a run given by its share of heads removed keeps its results file, from its
    configuration alone (`prune.result_stub`): no teacher is loaded, so a file made under
    other settings counts as there."""
    r = c.resolved()
    if r.keep is not None or r.sparsity is None:
        raise ValueError(f"a run of the grid names its sparsity, not keep={r.keep}")
    model = r.model or r.teacher or get_profile(r.profile).for_task(r.task).model
    return result_path(result_stub(r, model, r.sparsity), results_root)


def missing(runs, results_root=None) -> list[PruneConfig]:
    """The runs, resolved, that have no results file, each once (notebooks 05 and 06 share
    the method's default run)."""
    seen, out = set(), []
    for c in runs:
        path = expected_path(c, results_root)
        if path not in seen and not path.is_file():
            out.append(c.resolved())
        seen.add(path)
    return out
