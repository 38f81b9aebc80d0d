"""The baselines' answers to "which heads?": Random, HISP, L0 Norm and Kwon et al.

Each returns a 0/1 (layers x heads) mask with exactly the budget's K* heads; the entry
point (`prune.py`) then removes the heads and fine-tunes, as for the method.
(SMP lives in `smp.py`: it prunes the pretrained model, not the teacher.)
"""
from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .heads import masked, num_layers_heads
from .locator import FixedPenalty, HardConcreteGates, LocatorConfig, locate, top_mask
from .results import atomic_file, is_main_process
from .train import progress, to_device


def random_mask(n_layers: int, n_heads: int, keep: int, seed: int = 0,
                min_one_per_layer: bool = False) -> torch.Tensor:
    """K* heads chosen uniformly at random (seeded); optionally at least one per layer."""
    scores = torch.rand(n_layers, n_heads, generator=torch.Generator().manual_seed(seed))
    return top_mask(scores, keep, "auto", min_one_per_layer)


def _per_example_loss(logits, labels):
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction="sum")
    return F.cross_entropy(logits, labels, reduction="sum")


def mask_gradients(model, loader, mask: torch.Tensor | None = None):
    """Per batch, every example's gradient of its own loss with respect to the head mask at
    `mask` (ones by default), shaped (layers, batch, heads).

    One backward per batch gives them all: the head mask is given a batch axis
    (L, B, H), so example b's loss only touches mask[:, b].
    """
    device = next(model.parameters()).device
    n_layers, n_heads = num_layers_heads(model)
    base = torch.ones(n_layers, n_heads) if mask is None else mask.float()
    model.eval()  # gradients of the deterministic model (no dropout)
    for batch in loader:
        batch = to_device(batch, device)
        labels = batch.pop("labels")
        b = labels.shape[0]
        m = base[:, None, :].expand(-1, b, -1).clone().to(device)
        m.requires_grad_(True)
        logits = masked(model, m, **batch).logits
        grad, = torch.autograd.grad(_per_example_loss(logits, labels), m)
        yield grad.cpu()


def head_importance(model, loader, mask: torch.Tensor | None = None) -> torch.Tensor:
    """HISP importance I_lh = E_x |dL(x)/dm_lh| at the current mask (ones by default)."""
    n_layers, n_heads = num_layers_heads(model)
    total, count = torch.zeros(n_layers, n_heads), 0
    for grad in mask_gradients(model, loader, mask):
        total += grad.abs().sum(dim=1)
        count += grad.shape[1]
    return total / count


def fisher_information(model, loader) -> torch.Tensor:
    """Kwon et al.'s empirical Fisher information of the head mask at all ones, one
    (H x H) block per layer: F_l = E_x g_l g_l^T with g_l = dL(x)/dm_l."""
    n_layers, n_heads = num_layers_heads(model)
    total, count = torch.zeros(n_layers, n_heads, n_heads, dtype=torch.float64), 0
    for grad in mask_gradients(model, loader):
        g = grad.double()  # (L, B, H)
        total += torch.einsum("lbh,lbg->lhg", g, g)
        count += g.shape[1]
    return total / count


def rearrange(mask: torch.Tensor, fisher: torch.Tensor, max_rounds: int = 100) -> torch.Tensor:
    """Kwon et al.'s mask rearrangement: within each layer, keep the count and swap a kept
    head for a pruned one while that lowers the layer's loss estimate (1-m)^T F_l (1-m)."""
    mask = mask.clone()
    for l in range(mask.shape[0]):
        f = fisher[l]
        for _ in range(max_rounds):
            removed = 1 - mask[l].double()
            best, swap = float(removed @ f @ removed), None
            for k in mask[l].nonzero().flatten().tolist():
                for p in (mask[l] == 0).nonzero().flatten().tolist():
                    trial = removed.clone()
                    trial[k], trial[p] = 1.0, 0.0
                    cost = float(trial @ f @ trial)
                    if cost < best - 1e-12:
                        best, swap = cost, (k, p)
            if swap is None:
                break
            mask[l, swap[0]], mask[l, swap[1]] = 0.0, 1.0
    return mask


def kwon_mask(model, loader, keep: int, min_one_per_layer: bool = False):
    """Kwon et al. (2022), heads only: the K* heads of largest diagonal Fisher information
    (every head costs the same), then the mask rearranged within each layer with the
    Fisher blocks. Returns the mask and what the run records."""
    fisher = fisher_information(model, loader)
    diagonal = fisher.diagonal(dim1=1, dim2=2).float()
    first = top_mask(diagonal, keep, "auto", min_one_per_layer)
    mask = rearrange(first, fisher)
    return mask, {"fisher_diagonal": diagonal.tolist(),
                  "rearranged": int((mask != first).sum().item()) // 2}


def normalise_per_layer(importance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2-normalise the importance of the remaining heads within each layer."""
    imp = importance * mask
    return imp / imp.norm(dim=1, keepdim=True).clamp_min(1e-20)


def hisp_mask(model, loader, keep: int, step_fraction: float = 0.1,
              min_one_per_layer: bool = False) -> tuple[torch.Tensor, list[dict]]:
    """Michel et al. (2019): prune step_fraction * N heads at a time by normalised
    importance, rescoring after each step, down to K*. Returns the mask and the steps."""
    n_layers, n_heads = num_layers_heads(model)
    n = n_layers * n_heads
    per_step = max(1, round(step_fraction * n))
    mask = torch.ones(n_layers, n_heads)
    log = []
    bar = progress(n - keep, "HISP heads pruned", mininterval=10)
    while mask.sum() > keep:
        imp = normalise_per_layer(head_importance(model, loader, mask), mask)
        candidates = imp.clone()
        candidates[mask == 0] = math.inf
        if min_one_per_layer:
            candidates[(mask.sum(1) <= 1)[:, None] & (mask > 0)] = math.inf
        drop = min(per_step, int(mask.sum()) - keep)
        order = candidates.flatten().argsort()[:drop]
        if torch.isinf(candidates.flatten()[order]).any():
            raise ValueError(f"cannot keep {keep} heads with at least one per layer")
        mask.view(-1)[order] = 0.0
        bar.update(drop)
        log.append({"kept": int(mask.sum()), "importance": imp.tolist()})
    bar.close()
    return mask, log


def l0_try(teacher, train_data, tokenizer, config: LocatorConfig, lam: float, tries_dir=None):
    """One run of L0's gates with the fixed penalty `lam` (only the gates learn): the
    gates, and the open and expected gate counts at its end. With `tries_dir`, a try saved
    there is read back instead of rerun (the gates never see the budget, so every sparsity
    shares it) and a new one is saved."""
    path = Path(tries_dir) / f"lambda-{lam!r}.pt" if tries_dir else None
    n_layers, n_heads = num_layers_heads(teacher)
    if path is not None and path.is_file():
        saved = torch.load(path)
        gates = HardConcreteGates(n_layers, n_heads, config.init_log_alpha)
        with torch.no_grad():
            gates.log_alpha.copy_(saved["log_alpha"])
        return gates.eval(), saved["open_heads"], saved["expected_heads"], True
    # the budget argument only shapes the unused mask and the log's k_t under a fixed penalty
    _, gates, log = locate(teacher, copy.deepcopy(teacher), train_data, tokenizer,
                           n_layers * n_heads, dataclasses.replace(config, train_weights=False),
                           control=FixedPenalty.of(lam))
    open_gates = int((gates.open_probability() > 0.5).sum())
    expected = log[-1]["expected_heads"]
    if path is not None and is_main_process():
        with atomic_file(path) as tmp:
            torch.save({"log_alpha": gates.log_alpha.detach().cpu(), "open_heads": open_gates,
                        "expected_heads": expected}, tmp)
    return gates, open_gates, expected, False


def l0_mask(teacher, train_data, tokenizer, keep: int, config: LocatorConfig,
            start: float = 1e-3, factor: float = 3.0, tries: int = 8, tries_dir=None):
    """Voita et al. (2019): hard-concrete gates with a *fixed* penalty lambda * E trained
    with the task loss, on the teacher's frozen weights (only the gates learn). Lambda is
    searched (start, start*factor, ...) until the open gates reach K*; the top K* gates of
    that run are kept. Returns the mask, the sweep (lambda -> open gates, and whether the
    try was read back from `tries_dir`) and the chosen run's gates."""
    sweep, chosen = [], None
    lam = start
    for _ in range(tries):
        gates, open_gates, expected, reused = l0_try(teacher, train_data, tokenizer, config,
                                                     lam, tries_dir)
        sweep.append({"lambda": lam, "open_heads": open_gates, "expected_heads": expected,
                      "reused": reused})
        tqdm.write(f"L0 try {len(sweep)}/{tries}: lambda {lam:.3g} leaves {open_gates} gates "
                   f"open (budget {keep}){' (saved try)' if reused else ''}")
        chosen = gates
        if open_gates <= keep:
            break
        lam *= factor
    else:
        tqdm.write(f"L0: no lambda of the {tries} tried closed the gates to {keep}; "
                   "keeping the top gates of the last try")
    mask = top_mask(chosen.log_alpha.detach().cpu(), keep, "auto", config.min_one_per_layer)
    return mask, sweep, chosen
