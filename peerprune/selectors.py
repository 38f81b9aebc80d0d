"""Which heads to keep: one function per method, all of one shape.

    select(teacher, inputs, keep, c) -> HeadChoice(mask, record, located)

`inputs` is the run's `pipeline.Inputs` (tokenizer, training split, calibration loader,
model name, ...), `c` the run's resolved `PruneConfig`. `mask` is a 0/1 (layers x heads)
tensor with exactly `keep` ones; `record` is what the results file keeps about the choice
(a locator's log, HISP's scores, L0's penalty search); `located` is the locator's trained
model (the method only). `SELECTORS` maps each `--method` name to its selector; a new
criterion is one more entry, added with `register`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import anatomy, heads, peers
from .baselines import hisp_mask, kwon_mask, l0_mask, random_mask
from .locator import locate
from .models import model_for_task
from .smp import SMPConfig, smp
from .teacher import CHECKPOINTS_DIR


@dataclass
class HeadChoice:
    mask: torch.Tensor  # (layers x heads), 1 = kept
    record: dict = field(default_factory=dict)  # what the results file keeps about it
    located: object = None  # the locator's trained model (the method only)


SELECTORS: dict[str, Callable] = {}
STARTS = ("teacher", "pretrained")  # what a method's final fine-tuning starts from
START_OF: dict[str, str] = {}  # each method's start, as it registered


def register(name: str, start: str = "teacher"):
    """Decorator: make `fn(teacher, inputs, keep, c) -> HeadChoice` the selector of
    `--method name`; its final fine-tuning starts from `start` (the teacher's weights, or
    the pretrained model's, as SMP's paper does)."""
    if start not in STARTS:
        raise ValueError(f"method {name!r}: unknown start {start!r}; valid: {', '.join(STARTS)}")

    def add(fn):
        SELECTORS[name] = fn
        START_OF[name] = start
        return fn
    return add


def thin(log: list, most: int = 400) -> list:
    """At most about `most` entries of a per-step log, always with its last."""
    step = max(1, -(-len(log) // most))
    return log[::step] + ([log[-1]] if log and (len(log) - 1) % step else [])


@register("apd")
def automatic_locator(teacher, inputs, keep, c) -> HeadChoice:
    """The method's locator: gates and weights trained under the budget (locator.py)."""
    located = copy.deepcopy(teacher)
    mask, gates, log = locate(teacher, located, inputs.train, inputs.tokenizer, keep,
                              c.locator_config(inputs.lr, inputs.batch_size))
    return HeadChoice(mask, {"locator_log": thin(log),
                             "log_alpha": gates.log_alpha.detach().cpu().tolist()}, located)


@register("random")
def random_heads(teacher, inputs, keep, c) -> HeadChoice:
    n_layers, n_heads = heads.num_layers_heads(teacher)
    return HeadChoice(random_mask(n_layers, n_heads, keep, c.seed, c.min_one_per_layer))


@register("hisp")
def hisp_heads(teacher, inputs, keep, c) -> HeadChoice:
    mask, log = hisp_mask(teacher, inputs.calib, keep, c.hisp_step, c.min_one_per_layer)
    return HeadChoice(mask, {"hisp_steps": [s["kept"] for s in log],
                             "importance": log[0]["importance"]})


@register("l0")
def l0_heads(teacher, inputs, keep, c) -> HeadChoice:
    mask, sweep, gates = l0_mask(teacher, inputs.train, inputs.tokenizer, keep,
                                 c.locator_config(inputs.lr, inputs.batch_size), c.l0_start,
                                 tries_dir=inputs.l0_tries)
    return HeadChoice(mask, {"l0_sweep": sweep,
                             "log_alpha": gates.log_alpha.detach().cpu().tolist()})


@register("smp", start="pretrained")
def smp_heads(teacher, inputs, keep, c) -> HeadChoice:
    """SMP scores the heads of the pretrained model, not the teacher's."""
    pretrained = model_for_task(inputs.model_name, c.task, seed=c.seed)
    cfg = SMPConfig(steps=c.smp_steps, sentences=c.smp_sentences, batch_size=inputs.batch_size,
                    seed=c.seed)
    mask, record = smp(pretrained, inputs.model_name, c.task, inputs.train, inputs.tokenizer,
                       keep, cfg, inputs.glue_dir, inputs.checkpoints_root or CHECKPOINTS_DIR)
    return HeadChoice(mask, record)


@register("kwon")
def kwon_heads(teacher, inputs, keep, c) -> HeadChoice:
    """Kwon et al. (2022): Fisher information of the head mask on the calibration sample,
    the mask rearranged within each layer; needs no training."""
    mask, record = kwon_mask(teacher, inputs.calib, keep, c.min_one_per_layer)
    return HeadChoice(mask, record)


@register("mergeable")
def mergeable_heads(teacher, inputs, keep, c) -> HeadChoice:
    """A head choice made for the merge (peers.mergeable_mask): the heads whose layer the
    joint merge reproduces best without them go first; needs no training."""
    stats = anatomy.collect_stats(teacher, inputs.calib)
    # its own ridge, the merge's default: `rho` acts after the choice, so the choice can't read it
    mask, log = peers.mergeable_mask(stats, keep, min_one_per_layer=c.min_one_per_layer)
    return HeadChoice(mask, {"mergeable_removals": log})
