"""The method in six steps, with no file I/O: `prune_pipeline` is what a reader should read.

    1 teacher   the dense fine-tuned model, frozen (given)
    2 anatomy   per-layer Gram statistics of the head outputs on the calibration sample
    3 locate    which heads to keep (the automatic locator, or a baseline's selector)
    4 merge     each pruned head folded into its peer (least squares on the statistics)
    5 remove    the pruned heads cut out of the weights
    6 distill   fine-tuning with CE + KD + the peer loss

With no fine-tuning epochs the path stops after step 5 and scores the pruned model as it is
(the post-training path: any selector, then a merge, `rescale` or none).

A baseline runs the same steps with its own selector, no merge and CE (+ KD); which steps
run follows from the options (`uses_peers`). Run bookkeeping (identity, caches, the results
file) is `prune.run_pruning`, which calls this.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import anatomy, heads, peers, sequential
from .anatomy import Capture, head_dim
from .losses import FINE_TUNING_LOSSES, LossStep, kd_loss
from .models import model_for_task
from .selectors import START_OF
from .train import evaluate, fine_tune, make_loader, pick_device


@dataclass
class Inputs:
    """What a run works on besides its teacher and options."""
    tokenizer: object
    train: object  # the tokenised training split
    dev: object  # the tokenised dev split the scores come from
    calib: object  # a loader of the calibration sample (anatomy, merge, HISP)
    model_name: str  # the pretrained model (SMP starts from it)
    lr: float  # the weights' learning rate: the locator's and the final fine-tuning's
    batch_size: int
    glue_dir: object = None
    checkpoints_root: object = None
    l0_tries: object = None  # where L0's penalty tries are kept
    resume_dir: object = None  # where the fine-tuning keeps its last finished epoch


class Clock(dict):
    """Seconds per named step: `with clock("merge_s"): ...`."""

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self[name] = self.get(name, 0.0) + time.perf_counter() - start


def uses_peers(c) -> bool:
    """The teacher's statistics (and the peers) are needed to merge on them (or to move the
    bias by their mean), or for a fine-tuning loss that reads the peers; the sequential fit
    takes its own sums."""
    merges_on_them = ((c.merge != "none" or c.bias != "keep")
                      and c.calibration != "sequential")
    return merges_on_them or FINE_TUNING_LOSSES[c.distill].needs_peers


def prune_pipeline(teacher, inputs: Inputs, c, keep: int, train_cfg, select, clock=None):
    """Prune `teacher` to `keep` heads and recover; returns (student, choice, record).

    `select(teacher, inputs, keep, c)` is the head choice (see `selectors.py`)."""
    clock = clock if clock is not None else Clock()
    with clock("anatomy_s"):  # 2
        stats = anatomy.collect_stats(teacher, inputs.calib) if uses_peers(c) else None
    with clock("locate_s"):  # 3
        choice = select(teacher, inputs, keep, c)
        student = start_model(c, teacher, choice.located, inputs.model_name)
    with clock("merge_s"):  # 4, 5
        assignment, record = merge_and_remove(student, teacher, stats, choice.mask, c,
                                              inputs.calib)
    if train_cfg.epochs == 0:  # the post-training path: the pruned model as it is
        with clock("evaluate_s"):
            record["history"] = [{"epoch": 0, "scores": evaluate_on(student, inputs, c.task,
                                                                  train_cfg)}]
        return student, choice, record
    with clock("fine_tune_s"):  # 6
        steps = math.ceil(len(inputs.train) / train_cfg.batch_size) * train_cfg.epochs
        loss_fn = distillation_loss(teacher, c, peers.peer_groups(assignment, choice.mask),
                                    head_dim(teacher), steps)
        record["history"] = fine_tune(student, c.task, inputs.train, inputs.dev,
                                      inputs.tokenizer, train_cfg, loss_fn=loss_fn,
                                      desc=f"{c.method} {c.task} {c.variant}",
                                      resume_dir=inputs.resume_dir)
    return student, choice, record


def evaluate_on(model, inputs: Inputs, task: str, train_cfg) -> dict:
    """The dev scores of `model` as it is."""
    loader = make_loader(inputs.dev, inputs.tokenizer, train_cfg.eval_batch_size, False)
    return evaluate(model.to(pick_device(train_cfg.device)).eval(), loader, task)


def start_model(c, teacher, located, model_name: str):
    """The (unpruned) weights the final fine-tuning starts from: the teacher's, the
    locator's (init "locator"), or the pretrained model's (a method registered with
    `start="pretrained"`: SMP, as in its paper)."""
    if START_OF.get(c.method) == "pretrained":
        return model_for_task(model_name, c.task, seed=c.seed)
    if c.init == "locator" and located is not None:
        return located
    return copy.deepcopy(teacher)


def merge_and_remove(student, teacher, stats, mask, c, calib):
    """Steps 4 and 5: with peers, assign each pruned head its most similar kept head (on the
    teacher's statistics); fold the pruned heads in (`c.merge`: on those statistics, or
    layer by layer on the model merged below, `sequential`) and remove them; with neither,
    remove them. Returns the assignment and what the run records (reconstruction or fit
    errors, the peers)."""
    n_layers = mask.shape[0]
    assignment, record = [{} for _ in range(n_layers)], {}
    if stats is not None:  # the peers: for the pairwise merge and the peer loss
        assignment = peers.assign_peers(anatomy.similarity(stats, "cosine"), mask)
    if c.calibration == "sequential":  # each layer fitted on the model merged below it
        weights, record["sequential_fit_error"] = sequential.sequential_weights(
            student, teacher, mask, calib, c.merge, c.rho, bias=c.bias)
        peers.merge_and_prune(student, weights, mask)  # the biases are in `student` already
    elif stats is not None:  # fitted on the teacher's statistics (or the locator's)
        own = stats if c.init == "teacher" else anatomy.collect_stats(student, calib)
        kept = heads.kept_from_mask(mask)
        weights = peers.merged_weights(own, mask, assignment, c.merge, c.rho, c.bias)
        shifts = peers.mean_shifts(own, weights, mask) if c.bias == "mean" else None
        merged = c.merge if shifts is None else f"{c.merge}, {c.bias} bias"
        record["reconstruction_error"] = {
            m: [peers.reconstruction_error(s, w, k, b) for s, w, k, b in zip(own, ws, kept, bs)]
            for m, ws, bs in (("none", [s.weight for s in own], [None] * n_layers),
                              (merged, weights, shifts or [None] * n_layers))}
        peers.merge_and_prune(student, weights, mask, shifts)
    else:
        heads.prune(student, mask)
    for prm in student.parameters():
        prm.requires_grad_(True)
    record["peers"] = [{str(k): v for k, v in a.items()} for a in assignment]
    return assignment, record


def distillation_loss(teacher, c, groups=None, d_h: int = 0, total_steps: int = 1):
    """loss_fn(model, batch) for `fine_tune`: CE (+ alpha KD_tau) (+ the term of the run's
    fine-tuning loss, `losses.FINE_TUNING_LOSSES[c.distill]`), `step` counting the
    training calls."""
    spec = FINE_TUNING_LOSSES[c.distill]
    step = 0

    def loss_fn(model, batch):
        nonlocal step
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if not spec.kd and spec.term is None:
            return model(**batch).loss
        with torch.no_grad(), Capture(teacher) as t_cap:
            t_out = teacher(**inputs)
        with Capture(model) as s_cap:
            s_out = model(**batch)
        loss = s_out.loss
        if spec.kd:
            loss = loss + c.alpha * kd_loss(s_out.logits, t_out.logits, c.tau)
        extra = None if spec.term is None else spec.term(LossStep(
            c, model, teacher, s_out, t_out, s_cap, t_cap, batch["attention_mask"].bool(),
            groups, d_h, step, total_steps))
        if extra is not None:
            loss = loss + extra
        step += model.training
        return loss

    def skip(steps: int) -> None:  # a resumed fine-tuning starts after `steps` steps
        nonlocal step
        step = steps
    loss_fn.skip = skip
    return loss_fn
