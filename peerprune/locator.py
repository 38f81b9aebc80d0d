"""The automatic locator: where to prune, with the global budget as the only knob.

Every head gets a hard-concrete gate z_lh (Louizos et al. 2018) that multiplies its
contribution. The budget K* is a constraint on the expected number of open gates E, with
K_t going linearly from N to K* over the first half of the steps. The student's weights
and the gate logits descend on

    L_loc = CE + alpha*KD + beta*L_layer

and two ways of keeping E on K_t are available (`budget`):

  projection (the default): the gates use the logits a = log_alpha / T + c, where the
      scalar shift c is solved at every step so that E(a) = K_t exactly (`budget_shift`);
      c's gradient is the implicit one, so raising one head's logit lowers the others'.
      The temperature T falls from 1 to `final_temperature` over the second half, which
      makes the gates decisive: P(open) near 1 for K* heads and near 0 for the rest.
  lagrangian: learned Lagrange multipliers, ascent on lambda, on the added term
      lambda1*(E - K_t)/N + lambda2*((E - K_t)/N)^2.

The final mask keeps the K* gates with the largest logits: the per-layer counts fall out
of it.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch import nn

from .anatomy import Capture
from .heads import masked
from .losses import kd_loss, layer_loss
from .train import make_loader, pick_device, processes_agree, progress, seed_everything


class HardConcreteGates(nn.Module):
    """A (layers x heads) grid of hard-concrete gates: beta 2/3, stretch (-0.1, 1.1)."""

    def __init__(self, n_layers: int, n_heads: int, init_log_alpha: float = 3.0,
                 beta: float = 2 / 3, limits=(-0.1, 1.1)):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((n_layers, n_heads), float(init_log_alpha)))
        self.beta, (self.left, self.right) = beta, limits

    def forward(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """A sample z in training mode; the deterministic gate in eval mode. `logits`
        replaces log_alpha (the projected logits of the locator)."""
        a = self.log_alpha if logits is None else logits
        if self.training:
            u = torch.rand_like(a).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (-u).log1p() + a) / self.beta)
        else:
            s = torch.sigmoid(a)
        return (s * (self.right - self.left) + self.left).clamp(0.0, 1.0)

    @property
    def offset(self) -> float:
        """-beta*log(-left/right): P(open) = sigmoid(logit + offset)."""
        return -self.beta * math.log(-self.left / self.right)

    def open_probability(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """P(z_lh != 0), whose sum is the expected number of open gates E."""
        return torch.sigmoid((self.log_alpha if logits is None else logits) + self.offset)


@dataclass
class LocatorConfig:
    epochs: int = 1  # passes over the training data
    lr: float = 2e-5  # model weights (AdamW)
    lr_gates: float = 0.3  # gate logits (Adam)
    budget_control: str = "projection"  # what keeps E on K_t: "projection" or "lagrangian"
    final_temperature: float = 0.1  # projection: the logits' temperature at the end
    lr_lambda: float = 3.0  # lagrangian: multiplier rate (plain gradient ascent)
    init_log_alpha: float = 3.0  # gate logits at the start (3: P(open) = 0.99)
    alpha: float = 1.0  # logit KD
    tau: float = 2.0
    beta: float = 1.0  # layer loss
    allocation: str = "auto"  # "auto": one global budget; "uniform": K*/L per layer
    min_one_per_layer: bool = False  # off: a layer may lose every head
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None  # cap the number of steps (tests, smoke runs)
    min_steps: int = 0  # projection: at least this many steps (a short pass is repeated)
    train_weights: bool = True  # False: only the gates learn, the student keeps its weights


ALLOCATIONS = ("auto", "uniform")
BUDGETS = ("projection", "lagrangian")


def uniform_counts(keep: int, n_layers: int, n_heads: int) -> list[int]:
    """keep heads spread over the layers as evenly as possible (the first layers take
    the remainder)."""
    if not n_layers <= keep <= n_layers * n_heads:
        raise ValueError(f"a uniform allocation of {keep} heads over {n_layers} layers of "
                         f"{n_heads} needs {n_layers} <= heads kept <= {n_layers * n_heads}")
    base, extra = divmod(keep, n_layers)
    return [base + (1 if l < extra else 0) for l in range(n_layers)]


def top_mask(scores: torch.Tensor, keep: int, allocation: str = "auto",
             min_one_per_layer: bool = False) -> torch.Tensor:
    """A 0/1 mask keeping `keep` heads with the largest scores: globally (`auto`,
    optionally at least one per layer) or the same count in every layer (`uniform`)."""
    n_layers, n_heads = scores.shape
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; valid: {', '.join(ALLOCATIONS)}")
    if not 1 <= keep <= scores.numel():
        raise ValueError(f"heads to keep must be in [1, {scores.numel()}], got {keep}")
    mask = torch.zeros_like(scores)
    if allocation == "uniform":
        for l, k in enumerate(uniform_counts(keep, n_layers, n_heads)):
            mask[l, scores[l].topk(k).indices] = 1.0
        return mask
    s = scores.clone().float()
    if min_one_per_layer:
        if keep < n_layers:
            raise ValueError(f"at least one head per layer needs keep >= {n_layers}, got {keep}")
        mask[torch.arange(n_layers), s.argmax(1)] = 1.0
        s[mask > 0] = -math.inf
    rest = keep - int(mask.sum())
    flat = s.flatten().topk(rest).indices if rest else torch.tensor([], dtype=torch.long)
    mask.view(-1)[flat] = 1.0
    return mask


def budget_schedule(step: int, total: int, n: int, keep: int) -> float:
    """K_t: linear from N to K* over the first half of the steps, then K*."""
    half = max(1, total // 2)
    return keep + (n - keep) * max(0.0, 1.0 - step / half)


def temperature(step: int, total: int, final: float) -> float:
    """T_t: 1 over the first half of the steps, then geometric down to `final` at the end."""
    half = max(1, total // 2)
    if step < half or total - 1 <= half:
        return 1.0
    return final ** ((step - half) / (total - 1 - half))


OPEN_OFFSET = -(2 / 3) * math.log(0.1 / 1.1)  # HardConcreteGates().offset


def budget_shift(logits: torch.Tensor, target: float, offset: float = OPEN_OFFSET,
                 iters: int = 60) -> float:
    """The scalar c with sum sigmoid(logits + c + offset) = target, by bisection.

    `target` is clipped into (0, numel) by a twentieth of a head, where c stays finite."""
    n = logits.numel()
    target = min(max(target, 0.05), n - 0.05)
    x = logits.detach().double() + offset
    lo, hi = float(-x.max()) - 40.0, float(-x.min()) + 40.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if torch.sigmoid(x + mid).sum().item() > target:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def projected_logits(log_alpha: torch.Tensor, targets, t: float,
                     offset: float = OPEN_OFFSET) -> torch.Tensor:
    """log_alpha / t shifted, per row of `targets` groups, so that the expected number of
    open gates in each group equals its target. `targets`: one float for one global group,
    or a list with one target per layer.

    The shift is solved without gradient; one Newton step from the solution, which leaves
    its value unchanged, gives it the implicit gradient dc/da_i = -p'_i / sum_j p'_j."""
    a = log_alpha / t
    rows = [a.flatten()] if not isinstance(targets, (list, tuple)) else list(a)
    goals = [targets] if not isinstance(targets, (list, tuple)) else list(targets)
    out = []
    for row, goal in zip(rows, goals):
        c = budget_shift(row, goal, offset)
        p = torch.sigmoid(row + c + offset)
        slope = (p * (1 - p)).sum().clamp_min(1e-12)
        out.append(row + (c - (p.sum() - p.sum().detach()) / slope))
    return torch.stack(out).reshape(a.shape) if len(out) > 1 else out[0].reshape(a.shape)


def _distill_objective(teacher, student, batch, z, config: LocatorConfig):
    """CE + alpha * KD + beta * L_layer of the gated student against the full teacher."""
    tokens = batch["attention_mask"].bool()
    with torch.no_grad(), Capture(teacher) as t_cap:
        t_out = teacher(**{k: v for k, v in batch.items() if k != "labels"})
    with Capture(student) as s_cap:
        s_out = masked(student, z, **batch)
    return (s_out.loss + config.alpha * kd_loss(s_out.logits, t_out.logits, config.tau)
            + config.beta * layer_loss(s_cap.output, t_cap.output, tokens))


class Projection:
    """The default budget control: the gates use log_alpha / T_t shifted so that E = K_t
    exactly (one shift, or one per layer under the uniform allocation)."""
    distill = True  # the objective: CE + KD + layer loss against the teacher
    uses_min_steps = True  # the search runs at least `config.min_steps` (`search_steps`)

    def __init__(self, config: LocatorConfig, keep: int, n_layers: int, n_heads: int, device):
        self.config, self.keep, self.n_heads = config, keep, n_heads
        self.n = n_layers * n_heads
        self.per_layer = (uniform_counts(keep, n_layers, n_heads)
                          if config.allocation == "uniform" else None)
        self.t = 1.0

    def targets(self, k_t: float):
        """K_t, or each layer's share of it under the uniform allocation."""
        if self.per_layer is None:
            return k_t
        ramp = (k_t - self.keep) / max(1e-9, self.n - self.keep)
        return [k + (self.n_heads - k) * ramp for k in self.per_layer]

    def logits(self, gates, step: int, total: int, k_t: float) -> torch.Tensor:
        self.t = temperature(step, total, self.config.final_temperature)
        return projected_logits(gates.log_alpha, self.targets(k_t), self.t, gates.offset)

    def penalty(self, p_open: torch.Tensor, k_t: float):
        return 0.0

    def after_step(self) -> None:
        pass

    def entry(self, logits: torch.Tensor, gates) -> dict:
        groups = 1 if self.per_layer is None else len(self.per_layer)
        shift = (logits - gates.log_alpha / self.t).detach()[:groups, 0]
        return {"temperature": self.t, "shift": [round(x, 4) for x in shift.tolist()]}


class Lagrangian(Projection):
    """Learned multipliers: lambda1 * v + lambda2 * v^2 with v = (E - K_t) / N (or per layer
    under the uniform allocation), the multipliers raised by plain gradient ascent."""
    uses_min_steps = False

    def __init__(self, config, keep, n_layers, n_heads, device):
        super().__init__(config, keep, n_layers, n_heads, device)
        groups = n_layers if self.per_layer is not None else 1
        self.lambda1 = torch.zeros(groups, device=device)
        self.lambda2 = torch.zeros(groups, device=device)
        self.violation = torch.zeros(groups, device=device)

    def logits(self, gates, step, total, k_t):
        return gates.log_alpha

    def penalty(self, p_open, k_t):
        if self.per_layer is None:
            self.violation = ((p_open.sum() - k_t) / self.n).reshape(1)
        else:
            n_layers = len(self.per_layer)
            self.violation = (p_open.sum(1) - k_t / n_layers) / self.n_heads
        return (self.lambda1 * self.violation + self.lambda2 * self.violation ** 2).sum()

    def after_step(self):
        with torch.no_grad():  # ascent: d loss / d lambda1 = violation, / d lambda2 = violation^2
            v = self.violation.detach()
            self.lambda1 += self.config.lr_lambda * v
            self.lambda2 += self.config.lr_lambda * v ** 2

    def entry(self, logits, gates):
        return {"lambda1": self.lambda1.tolist(), "lambda2": self.lambda2.tolist()}


class FixedPenalty(Lagrangian):
    """The L0 Norm baseline's control (baselines.l0_try): the task loss alone plus a fixed
    penalty lambda * E; no multipliers, no KD, no layer loss. `FixedPenalty.of(lam)` is
    what `locate(..., control=)` takes."""
    distill = False

    def __init__(self, lam: float, config, keep, n_layers, n_heads, device):
        super().__init__(config, keep, n_layers, n_heads, device)
        self.lam = lam

    @classmethod
    def of(cls, lam: float):
        return lambda *args: cls(lam, *args)

    def penalty(self, p_open, k_t):
        return self.lam * p_open.sum()

    def after_step(self):
        pass


def budget_control(config: LocatorConfig, keep: int, n_layers: int, n_heads: int, device):
    """The control of E the config names: the projection or the learned multipliers."""
    if config.allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {config.allocation!r}; valid: {', '.join(ALLOCATIONS)}")
    if config.budget_control not in BUDGETS:
        raise ValueError(f"unknown budget_control {config.budget_control!r}; "
                         f"valid: {', '.join(BUDGETS)}")
    kind = Projection if config.budget_control == "projection" else Lagrangian
    return kind(config, keep, n_layers, n_heads, device)


def locate(teacher, student, train_data, tokenizer, keep: int, config: LocatorConfig,
           control=budget_control):
    """Train gates (and the student's weights) under the budget; return the mask, the
    trained gates and a log with one entry per step.

    `teacher` is frozen; `student` starts as a copy of it and is trained in place.
    `control(config, keep, n_layers, n_heads, device)` makes what steers E: by default the
    config's `budget_control`; L0 passes `FixedPenalty.of(lam)`.
    """
    seed_everything(config.seed)
    accelerator = Accelerator(cpu=pick_device(config.device).type == "cpu")
    device = accelerator.device
    _ready(teacher, student, device, config.train_weights)
    n_layers, n_heads = student.config.num_hidden_layers, student.config.num_attention_heads
    n = n_layers * n_heads
    control = control(config, keep, n_layers, n_heads, device)
    gates = HardConcreteGates(n_layers, n_heads, config.init_log_alpha).to(device)
    opt_w = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    opt_g = torch.optim.Adam(gates.parameters(), lr=config.lr_gates)
    per_process = max(1, config.batch_size // accelerator.num_processes)
    loader = make_loader(train_data, tokenizer, per_process, True, config.seed)
    # data-parallel under `accelerate launch` (gates and weights synchronised); a no-op alone
    wrapped, gates_w, opt_w, opt_g, loader = accelerator.prepare(student, gates, opt_w, opt_g,
                                                                 loader)
    total = search_steps(config, len(loader), control.uses_min_steps)
    log, step, p_open = [], 0, None
    bar = progress(total, "locator", mininterval=5 if sys.stderr.isatty() else 60,
                   disable=not accelerator.is_local_main_process)
    while step < total:
        for batch in loader:
            if step >= total:
                break
            k_t = budget_schedule(step, total, n, keep)
            logits = control.logits(gates, step, total, k_t)
            z = gates_w(logits)
            p_open = gates.open_probability(logits)
            if control.distill:
                task_loss = _distill_objective(teacher, wrapped, batch, z, config)
            else:
                task_loss = masked(wrapped, z, **batch).loss
            loss = task_loss + control.penalty(p_open, k_t)
            opt_w.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt_w.step()
            opt_g.step()
            control.after_step()
            log.append({"step": step, "expected_heads": p_open.sum().item(), "k_t": k_t,
                        "loss": task_loss.item(), **control.entry(logits, gates),
                        "expected_per_layer": [round(x, 3) for x in p_open.detach().sum(1).tolist()],
                        "open_per_layer": (p_open.detach() > 0.5).sum(1).tolist()})
            step += 1
            bar.update(1)
            bar.set_postfix(E=f"{p_open.sum().item():.1f}", K_t=f"{k_t:.1f}", refresh=False)
    bar.close()
    if accelerator.num_processes > 1 and log:
        log[-1].update(processes=accelerator.num_processes,
                       weights_agree=processes_agree(accelerator, wrapped)
                       and processes_agree(accelerator, gates_w))
    return _final_mask(student, gates, log, p_open, keep, config), gates, log


def search_steps(config: LocatorConfig, steps_per_pass: int, uses_min_steps: bool) -> int:
    """The search's length: `epochs` passes over the data; with `uses_min_steps` (the
    projection) at least `config.min_steps`, room for the falling temperature to decide
    the gates; at most `max_steps`."""
    total = config.epochs * steps_per_pass
    if uses_min_steps:
        total = max(total, config.min_steps)
    return min(total, config.max_steps) if config.max_steps else total


def _ready(teacher, student, device, train_weights: bool) -> None:
    """The teacher frozen in eval mode, the student training (its weights only when asked:
    set, not inherited, since a copy of a teacher an earlier call froze would not learn)."""
    teacher.to(device).eval()
    student.to(device).train()
    teacher.requires_grad_(False)
    student.requires_grad_(train_weights)


def _final_mask(student, gates, log, p_open, keep: int, config: LocatorConfig) -> torch.Tensor:
    """The K* gates with the largest logits; the last step's P(open) goes into the log."""
    student.eval()
    gates.eval()
    if log:  # the gates as the last step saw them: how decisive the search ended
        log[-1]["open_probability"] = [[round(x, 4) for x in row] for row in p_open.tolist()]
    return top_mask(gates.log_alpha.detach().cpu(), keep, config.allocation,
                    config.min_one_per_layer)
