"""The checks of the notebooks' exercises: each takes a student's answer and says whether it
is plausible, and why not. Reference solutions live in `exercises/solutions/`; the tests run
each one through its check.

A check returns `(ok, message)` and prints the message, so a notebook cell shows it.
"""
from __future__ import annotations

import copy

import torch

from .locator import HardConcreteGates, LocatorConfig, budget_shift, locate


def _say(ok: bool, message: str) -> tuple[bool, str]:
    print(("correct: " if ok else "not yet: ") + message)
    return ok, message


def toy_search(teacher, train, tokenizer, keep: int, final_temperature: float, steps: int = 24,
               seed: int = 0):
    """A short locator search on a small model: (mask, log)."""
    cfg = LocatorConfig(epochs=100, max_steps=steps, lr=1e-3, lr_gates=0.2, batch_size=16,
                        seed=seed, final_temperature=final_temperature)
    mask, _, log = locate(teacher, copy.deepcopy(teacher), train, tokenizer, keep, cfg)
    return mask, log


def decisive(mask: torch.Tensor, p_open: torch.Tensor, low: float = 0.1, high: float = 0.9) -> bool:
    """Every kept head open with P >= high, every other with P <= low."""
    p = torch.as_tensor(p_open)
    pruned = p[mask == 0]
    return bool((p[mask > 0] >= high).all() and (pruned.numel() == 0 or (pruned <= low).all()))


def check_03_prediction(prediction, final_temperature: float, teacher, train, tokenizer,
                        keep: int):
    """Exercise 03.1: will the toy search end decisive at this final temperature?"""
    if prediction not in (True, False):
        return _say(False, "set `my_prediction` to True or False before running the search")
    mask, log = toy_search(teacher, train, tokenizer, keep, final_temperature)
    p = torch.tensor(log[-1]["open_probability"])
    truth = decisive(mask, p)
    kept = p[mask > 0].min().item()
    return _say(prediction == truth,
                f"at final temperature {final_temperature:g} the search ends "
                f"{'decisive' if truth else 'undecided'}: the weakest kept head is open with "
                f"P = {kept:.3f}, E = {log[-1]['expected_heads']:.2f} for K* = {keep}")


def check_03_expected_open(expected_open) -> tuple[bool, str]:
    """Exercise 03.2: E = sum of sigmoid(logit + shift + offset) over the gates."""
    torch.manual_seed(1)
    gates = HardConcreteGates(3, 4)
    logits = torch.randn(3, 4) * 3
    for shift in (-2.0, 0.0, 1.5):
        want = float(gates.open_probability(logits + shift).sum())
        got = float(expected_open(logits, shift))
        if abs(got - want) > 1e-4:
            return _say(False, f"with shift {shift:g} you get E = {got:.4f}, the gates give "
                               f"{want:.4f}: did you add the offset {gates.offset:.3f}?")
    return _say(True, "your E matches the gates' open probabilities at every shift")


def check_03_newton_shift(newton_shift) -> tuple[bool, str]:
    """Exercise 03.3: the shift c with sum sigmoid(logits + c + offset) = target, by Newton."""
    offset = HardConcreteGates(1, 1).offset
    torch.manual_seed(2)
    logits = torch.randn(24) * 2
    for target in (3.0, 12.0, 20.5):
        want = budget_shift(logits, target, offset)
        got = float(newton_shift(logits, target, offset))
        e = float(torch.sigmoid(logits + got + offset).sum())
        if abs(e - target) > 1e-3:
            return _say(False, f"target {target:g}: your shift {got:.4f} gives E = {e:.4f} "
                               f"(the bisection's {want:.4f} gives {target:g})")
    return _say(True, "your Newton shift puts E on every target, as the bisection does")


def check_08_qk_norm(qk_norm_scores, teacher, keep: int) -> tuple[bool, str]:
    """Exercise 08.1: one score per head from its query and key weights."""
    from . import heads
    from .locator import top_mask
    n_layers, n_heads = heads.num_layers_heads(teacher)
    scores = torch.as_tensor(qk_norm_scores(teacher), dtype=torch.float32)
    if scores.shape != (n_layers, n_heads):
        return _say(False, f"expected a ({n_layers} x {n_heads}) tensor, got {tuple(scores.shape)}")
    d = teacher.config.hidden_size // n_heads
    want = torch.stack([
        torch.cat([getattr(heads.attention(teacher, l).self, m).weight.detach()
                   .reshape(n_heads, d, -1) for m in ("query", "key")], 1).norm(dim=(1, 2))
        for l in range(n_layers)])
    if torch.allclose(scores, want, rtol=1e-3):
        shared = int((top_mask(scores, keep) * top_mask(
            torch.stack([heads.output_projection(teacher, l).weight.detach()
                         .reshape(-1, n_heads, d).norm(dim=(0, 2)) for l in range(n_layers)]),
            keep)).sum())
        return _say(True, f"the norms of the query and key rows of each head; it shares "
                          f"{shared} of {keep} kept heads with outnorm")
    same = torch.equal(top_mask(scores, keep), top_mask(want, keep))
    return _say(False, "not the Frobenius norm of each head's query and key rows (rows h*d to "
                       "(h+1)*d of each weight)" + (", though it keeps the same heads" if same
                                                    else ""))


def check_08_kd_prediction(prediction, config, score_with_kd: float) -> tuple[bool, str]:
    """Exercise 08.2: run the criterion without KD and compare with the KD score."""
    from dataclasses import replace
    from .prune import run_pruning
    if prediction not in ("above", "below"):
        return _say(False, 'set `my_prediction` to "above" or "below" first')
    plain = run_pruning(replace(config, distill="none"))["score"]
    truth = "above" if plain > score_with_kd else "below"
    return _say(prediction == truth, f"without KD {plain:.2f}, with KD {score_with_kd:.2f}: "
                                     f"{truth}")


def check_08_registered_loss(layer_result, kd_result: dict) -> tuple[bool, str]:
    """Exercise 08.3: a run fine-tuned with the registered loss `kd-layer`."""
    from .losses import FINE_TUNING_LOSSES
    if "kd-layer" not in FINE_TUNING_LOSSES:
        return _say(False, "register `kd-layer` first (the cell with @losses.register_loss)")
    if not isinstance(layer_result, dict):
        return _say(False, "replace `None` with the run_pruning call; it returns the result")
    if layer_result.get("distill") != "kd-layer" or layer_result["method"] != kd_result["method"]:
        return _say(False, f"this run is {layer_result['method']} with distill "
                           f"{layer_result.get('distill')!r}; run {kd_result['method']} with "
                           "distill 'kd-layer'")
    if layer_result["heads_per_layer"] != kd_result["heads_per_layer"]:
        return _say(False, "the two runs kept different heads: use the same sparsity")
    gap = layer_result["score"] - kd_result["score"]
    return _say(True, f"the same heads; with the layer term {layer_result['score']:.2f}, with "
                      f"KD alone {kd_result['score']:.2f} ({gap:+.2f})")


def check_04_ridge(prediction, rho: float, stats, layer_peers: dict, kept: list[int]):
    """Exercise 04.1: a huge ridge shrinks every merge map to zero: the merge does nothing."""
    from .peers import pairwise_merge_weight, reconstruction_error
    if prediction not in ("none", "default"):
        return _say(False, 'set `my_prediction` to "none" or "default" first')
    none = reconstruction_error(stats, stats.weight, kept)
    default = reconstruction_error(stats, pairwise_merge_weight(stats, layer_peers, 1e-3), kept)
    big = reconstruction_error(stats, pairwise_merge_weight(stats, layer_peers, rho), kept)
    truth = "none" if abs(big - none) < abs(big - default) else "default"
    return _say(prediction == truth, f"rho {rho:g}: error {big:.4f}, against {none:.4f} without "
                                     f"a merge and {default:.4f} at the default ridge")


def check_04_peer_target(peer_target) -> tuple[bool, str]:
    """Exercise 04.2: T_r, the sum of the teacher contributions a kept head carries."""
    from .losses import group_matrix
    torch.manual_seed(4)
    c_t = torch.randn(7, 4, 5)
    groups = {0: [0, 1, 3], 2: [2]}
    want = torch.einsum("nhd,hr->nrd", c_t, group_matrix(groups, 4))
    for j, (r, members) in enumerate(sorted(groups.items())):
        got = torch.as_tensor(peer_target(c_t, members))
        if got.shape != want[:, j].shape or not torch.allclose(got, want[:, j], atol=1e-6):
            return _say(False, f"kept head {r} carrying {members}: not the sum of their "
                               "teacher contributions")
    return _say(True, "each kept head's target is its own and its pruned peers' contributions")


def check_02_cosine(head_cosine, c: torch.Tensor, stats) -> tuple[bool, str]:
    """Exercise 02.1: the cosine of two heads' flattened contributions."""
    from .anatomy import cosine_similarity
    want = cosine_similarity(stats)
    for a, b in ((0, 1), (1, 2), (0, 0)):
        got = float(head_cosine(c, a, b))
        if abs(got - float(want[a, b])) > 1e-4:
            return _say(False, f"heads {a} and {b}: you get {got:.4f}, the Gram matrix gives "
                               f"{float(want[a, b]):.4f}")
    return _say(True, "your cosine matches the one computed from the Gram matrix")


def check_02_best_layer(layer, stats) -> tuple[bool, str]:
    """Exercise 02.2: the layer with the highest mean R² of its heads from their peers."""
    from .anatomy import peer_r2
    means = [float(peer_r2(s).mean()) for s in stats]
    best = max(range(len(means)), key=means.__getitem__)
    if layer is None:
        return _say(False, "set `my_layer` to a layer index first")
    return _say(layer == best, f"layer {best} has the highest mean R² ({means[best]:.3f}); "
                               f"layer {layer}'s is {means[layer]:.3f}")


def check_05_importance(importance, model, loader) -> tuple[bool, str]:
    """Exercise 05.1: HISP's I_lh = mean over examples of |dL(x)/dm_lh|, from the per-batch
    gradients (layers, batch, heads) that `baselines.mask_gradients` yields."""
    from .baselines import head_importance, mask_gradients
    want = head_importance(model, loader)
    got = torch.as_tensor(importance(list(mask_gradients(model, loader))), dtype=torch.float32)
    if got.shape != want.shape:
        return _say(False, f"expected a {tuple(want.shape)} tensor (layers x heads), got "
                           f"{tuple(got.shape)}")
    if torch.allclose(got, want, rtol=1e-4, atol=1e-8):
        return _say(True, "your importance is HISP's: the mean absolute gradient of each "
                          "head's mask")
    signed = torch.stack([g.sum(1) for g in mask_gradients(model, loader)]).sum(0)
    hint = " (the absolute value comes before the mean)" if torch.allclose(
        got.abs(), signed.abs() / len(loader.dataset), rtol=1e-3) else ""
    return _say(False, "not the mean of |dL(x)/dm| over the examples" + hint)


def check_05_fisher_diagonal(fisher_diagonal, model, loader) -> tuple[bool, str]:
    """Exercise 05.2: the diagonal of Kwon's Fisher information, E_x (dL(x)/dm_lh)^2."""
    from .baselines import fisher_information, mask_gradients
    want = fisher_information(model, loader).diagonal(dim1=1, dim2=2).float()
    got = torch.as_tensor(fisher_diagonal(list(mask_gradients(model, loader))),
                          dtype=torch.float32)
    if got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-10):
        return _say(True, "the mean squared gradient: Kwon's diagonal, which ranks the heads "
                          "before the rearrangement")
    return _say(False, f"expected the mean of the squared gradients, shaped {tuple(want.shape)}")


def check_05_overlap(overlap) -> tuple[bool, str]:
    """Exercise 05.3: the share of mask a's kept heads that mask b keeps too."""
    torch.manual_seed(5)
    for _ in range(5):
        a = (torch.rand(3, 4) > 0.5).float()
        a[0, 0] = 1.0
        b = (torch.rand(3, 4) > 0.5).float()
        want = float((a * b).sum() / a.sum())
        got = float(overlap(a, b))
        if abs(got - want) > 1e-6:
            return _say(False, f"masks sharing {int((a * b).sum())} of a's {int(a.sum())} kept "
                               f"heads: you give {got:.3f}, the share is {want:.3f}")
    return _say(True, "the share of kept heads two masks agree on")


def check_00_majority(majority_score, raw, task: str) -> tuple[bool, str]:
    """Exercise 00.1: the dev score of always answering the training split's most common
    label, in the task's primary metric: the floor a model has to beat."""
    from collections import Counter

    from .glue import get_task
    from .metrics import glue_scores
    spec = get_task(task)
    if spec.is_regression:
        return _say(False, f"{spec.name} is a regression: a constant prediction has no "
                           "correlation; try a classification task")
    common = Counter(raw["train"]["label"]).most_common(1)[0][0]
    dev = raw[spec.eval_splits[0]]["label"]
    want = 100 * glue_scores(spec.name, [common] * len(dev), dev)[spec.primary_metric]
    got = float(majority_score(raw, spec.name))
    return _say(abs(got - want) < 1e-6,
                f"always label {common} ({(spec.label_names or range(99))[common]}) scores "
                f"{want:.2f} {spec.primary_metric} on dev; you give {got:.2f}")


def check_00_truncated(truncated_share, train, tokenizer, task: str,
                       max_length: int) -> tuple[bool, str]:
    """Exercise 00.2: the share of training examples longer than max_length tokens."""
    from .glue import get_task
    columns = [list(train[c]) for c in get_task(task).text_columns]
    lengths = [len(ids) for ids in tokenizer(*columns)["input_ids"]]
    want = sum(n > max_length for n in lengths) / len(lengths)
    got = float(truncated_share(train, tokenizer, task, max_length))
    return _say(abs(got - want) < 1e-9,
                f"{want:.1%} of the examples are longer than {max_length} tokens (the longest "
                f"has {max(lengths)}); you give {got:.1%}")


def check_01_score(my_score: float, teacher_record: dict) -> tuple[bool, str]:
    """Exercise 01.1: your evaluation loop gives the teacher's recorded dev score."""
    want = teacher_record["score"]
    ok = abs(float(my_score) - want) < 0.01
    return _say(ok, f"the teacher's recorded dev score is {want:.2f}; yours {float(my_score):.2f}"
                    + ("" if ok else ": every example of the split, and argmax of the logits "
                                     "(the raw score for a regression)?"))


def check_01_best_lr(best_lr, sweep: list[dict], teacher_record: dict) -> tuple[bool, str]:
    """Exercise 01.2: the sweep's learning rate with the highest dev score."""
    got = best_lr(sweep)
    return _say(got == teacher_record["lr"],
                f"the teacher kept is the one with lr {teacher_record['lr']:g} (dev "
                f"{teacher_record['score']:.2f}); you chose {got}")


def check_06_ablation(my_config, base) -> tuple[bool, str]:
    """Exercise 06.1: the uniform-allocation ablation of `base`, written by hand."""
    from dataclasses import asdict

    from .prune import ablation
    want = asdict(ablation(base, "uniform"))
    got = asdict(my_config)
    diff = {k: (got[k], want[k]) for k in want if got.get(k) != want[k]}
    return _say(not diff, "the same run as ablation(base, 'uniform')" if not diff else
                f"these fields differ (yours, expected): {diff}")


def check_06_new_choice(names) -> tuple[bool, str]:
    """Exercise 06.2: the ablations that need a head choice of their own, because one of
    the options they change acts before the choice (its role is not `after_choice`)."""
    from .prune import ABLATIONS, ROLES
    want = {n for n, opts in ABLATIONS.items() if any(not ROLES[k]["after_choice"] for k in opts)}
    got = set(names or ())
    if got == want:
        return _say(True, f"{sorted(want)} change the search; every other ablation reuses the "
                          "default's head choice and only recovers differently")
    return _say(False, f"missing {sorted(want - got)}, not needed {sorted(got - want)}: look at "
                       "`after_choice` in each changed option's role (prune.ROLES)")


def check_07_spread(spread) -> tuple[bool, str]:
    """Exercise 07.1: the mean and the *sample* standard deviation of seed scores."""
    import statistics
    for scores in ([85.71, 87.25, 85.95], [80.0, 82.0], [70.5, 71.0, 69.0, 74.25]):
        mean, std = (float(x) for x in spread(scores))
        if abs(mean - statistics.mean(scores)) > 1e-9:
            return _say(False, f"{scores}: mean {mean:.3f}, expected {statistics.mean(scores):.3f}")
        if abs(std - statistics.stdev(scores)) > 1e-9:
            hint = (" (that is the population's: divide by n - 1, as the tables do)"
                    if abs(std - statistics.pstdev(scores)) < 1e-9 else "")
            return _say(False, f"{scores}: std {std:.3f}, expected {statistics.stdev(scores):.3f}"
                               + hint)
    return _say(True, "the tables' mean ± sample standard deviation")


def check_07_lossless(lossless_up_to, rows: list[dict]) -> tuple[bool, str]:
    """Exercise 07.2: per task, the highest share of heads removed up to which the method
    stays within 0.5 points of the teacher at every sparsity run (report.lossless_share)."""
    from .report import lossless_share
    toy = [{"task": "t", "target_sparsity": s, "teacher": 80.0, "scores": {"apd (peer)": (v, 1)}}
           for s, v in ((0.25, 80.3), (0.5, 79.6), (0.75, 78.0), (0.92, 79.9))]
    for name, sample in (("a toy sweep", toy), ("the profile's sweep", rows)):
        want = lossless_share(sample)
        got = {t: lossless_up_to(sample, t) for t in want}
        if got != want:
            return _say(False, f"on {name}: you give {got}, expected {want} (a sparsity counts "
                               "only if every lower one is within 0.5 too)")
    return _say(True, f"as report.lossless_share: {lossless_share(rows) or 'no sweep yet'}")


def check_09_params(removed: int, teacher, pruned) -> tuple[bool, str]:
    """Exercise 09.2: how many parameters the pruning removed."""
    from .heads import count_params
    want = count_params(teacher) - count_params(pruned)
    return _say(int(removed) == want, f"{want:,} parameters removed "
                                      f"({want / count_params(teacher):.1%} of the model); you "
                                      f"give {int(removed):,}")


def check_09_compare(mine: dict, other: dict) -> tuple[bool, str]:
    """Exercise 09.1: a second method on the same model, task and budget."""
    same = all(mine[k] == other[k] for k in ("task", "teacher_hash", "target_sparsity"))
    if not same or mine["method"] == other["method"]:
        return _say(False, "run another method with the same task, teacher and sparsity")
    best = max((mine, other), key=lambda r: r["score"])
    return _say(True, f"{mine['method']} {mine['score']:.2f}, {other['method']} "
                      f"{other['score']:.2f} {mine['metric']}: {best['method']} keeps more")
