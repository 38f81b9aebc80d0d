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
            torch.stack([heads.attention(teacher, l).output.dense.weight.detach()
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
