"""The distillation losses of the locator and of peer-distillation fine-tuning.

The fine-tuning loss of a run (`--distill NAME`) is one entry of `FINE_TUNING_LOSSES`:
CE, plus alpha KD_tau unless it is `none`, plus its own term. A new loss is one function
registered with `register_loss`; the pipeline, the command line, the results files and the
tables pick it up by its name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .anatomy import contributions


def kd_loss(student_logits, teacher_logits, tau: float = 2.0) -> torch.Tensor:
    """KD_tau(T || S): KL of the temperature-softened distributions, times tau^2.
    For regression (one output) it is the squared error to the teacher's prediction."""
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits, teacher_logits)
    t = F.log_softmax(teacher_logits / tau, dim=-1)
    s = F.log_softmax(student_logits / tau, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * tau ** 2


def normalized_mse(student, target, tokens) -> torch.Tensor:
    """sum ||s - t||^2 / sum ||t||^2 over the non-padding tokens (`tokens`: B x T bool)."""
    s, t = student[tokens], target[tokens]
    return ((s - t) ** 2).sum() / (t ** 2).sum().clamp_min(1e-12)


def layer_loss(student_outputs, teacher_outputs, tokens) -> torch.Tensor:
    """L_layer: per layer, the student's (gated) MHA_l against the teacher's full MHA_l."""
    return sum(normalized_mse(s, t, tokens) for s, t in zip(student_outputs, teacher_outputs))


def group_matrix(groups: dict[int, list[int]], n_heads: int) -> torch.Tensor:
    """(H, R) 0/1 matrix: column j sums the teacher heads that retained head j carries."""
    a = torch.zeros(n_heads, len(groups))
    for j, (r, members) in enumerate(sorted(groups.items())):
        a[members, j] = 1.0
    return a


def peer_loss(student_cap, teacher_cap, student, teacher, groups, tokens, d_h: int,
              joint: bool = False, absorbing_only: bool = False) -> torch.Tensor:
    """The peer term of L_PD, summed over layers.

    Per head (default): sum_r ||C^S_r - Target_r||^2 / ||Target_r||^2 with
    Target_r = C^T_r + sum of C^T_p over the pruned heads p assigned to r.
    Joint: per layer, sum_r C^S_r against sum_h C^T_h.
    `absorbing_only` (per head only): the sum runs over the retained heads that were assigned
    at least one pruned peer.
    `groups[l]` maps each retained head (original index) to [r, p, ...]; the student's
    heads are stored in ascending original order.
    """
    from .heads import output_projection
    total = 0.0
    for l, layer_groups in enumerate(groups):
        if not layer_groups:  # every head of this layer was removed: nothing to teach
            continue
        w_s = output_projection(student, l).weight
        w_t = output_projection(teacher, l).weight
        # the student's on every position, then the real tokens: taken the other way round its
        # weight gradient would be summed in another order (other rounding, other runs)
        c_s = contributions(student_cap.context[l], w_s, d_h)[tokens]  # (n, R, d)
        # the teacher's (no gradient) on its real tokens only: the same numbers, less work
        c_t = contributions(teacher_cap.context[l][tokens][None], w_t, d_h)[0]  # (n, H, d)
        if joint:
            s, t = c_s.sum(1), c_t.sum(1)
            total = total + ((s - t) ** 2).sum() / (t ** 2).sum().clamp_min(1e-12)
            continue
        a = group_matrix(layer_groups, c_t.shape[1]).to(c_t)
        target = torch.einsum("nhd,hr->nrd", c_t, a)
        err = ((c_s - target) ** 2).sum(dim=(0, 2))
        per_head = err / (target ** 2).sum(dim=(0, 2)).clamp_min(1e-12)
        if absorbing_only:  # a column of `a` sums more than one teacher head
            per_head = per_head[a.sum(0) > 1]
        total = total + per_head.sum()
    return total


def peer_weight(c, step: int, total_steps: int) -> float:
    """The peer loss's weight at training step `step` (0-based) of `total_steps`."""
    beta = c.beta if c.peer_beta is None else c.peer_beta
    if c.peer_schedule == "linear":
        return beta * max(0.0, 1.0 - step / max(1, total_steps))
    return beta


@dataclass
class LossStep:
    """What a fine-tuning loss term sees at one training step."""
    config: object  # the run's resolved PruneConfig
    student: object
    teacher: object
    student_out: object  # the forward outputs (`.loss` is CE, `.logits`)
    teacher_out: object
    student_cap: object  # anatomy.Capture: every layer's head outputs and MHA output
    teacher_cap: object
    tokens: torch.Tensor  # (B, T) bool: the non-padding tokens
    groups: list | None  # the merge's peer groups (peers.peer_groups), if it needs them
    d_h: int  # the head dimension
    step: int  # the training step, 0-based
    total_steps: int


@dataclass(frozen=True)
class FineTuningLoss:
    # added to CE (+ alpha KD_tau); it may return None: nothing to add at this step
    term: Callable[[LossStep], torch.Tensor | None] | None = None
    kd: bool = True  # CE + alpha KD_tau, or CE alone
    needs_peers: bool = False  # the term reads the merge's peer groups (the method only)


FINE_TUNING_LOSSES: dict[str, FineTuningLoss] = {
    "none": FineTuningLoss(kd=False),  # CE
    "kd": FineTuningLoss(),  # CE + alpha KD_tau
}


def register_loss(name: str, needs_peers: bool = False):
    """Decorator: make `term(step: LossStep) -> tensor` the fine-tuning loss `--distill name`,
    CE + alpha KD_tau + term."""
    def add(term):
        FINE_TUNING_LOSSES[name] = FineTuningLoss(term, needs_peers=needs_peers)
        return term
    return add


@register_loss("peer", needs_peers=True)
def peer_term(s: LossStep) -> torch.Tensor | None:
    """The method's: the peer loss, weighted by `peer_weight` at this step (none at weight 0)."""
    c = s.config
    weight = peer_weight(c, s.step, s.total_steps)
    if weight == 0:
        return None
    return weight * peer_loss(
        s.student_cap, s.teacher_cap, s.student, s.teacher, s.groups, s.tokens, s.d_h,
        joint=c.peer_loss == "joint", absorbing_only=c.peer_heads == "absorbing")
