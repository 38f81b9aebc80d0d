"""One entry point for a pruning run, used by notebooks, scripts and tests alike.

    result = run_pruning(PruneConfig(task="mrpc", method="apd", sparsity=0.58))

It takes the task's dense teacher (see `teacher.py`), finds a mask with the method's
locator, recovers (for `apd`: peer assignment, peer merge, physical removal), fine-tunes
with the chosen distillation, saves the pruned model with `save_pretrained` and writes
one results JSON. A finished run with the same configuration is reused, not rerun.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import anatomy, heads, peers
from .anatomy import Capture, head_dim
from .glue import get_task, subsample, task_data
from .baselines import hisp_mask, l0_mask, random_mask
from .choices import choice_dir, l0_tries_dir, load_choice, save_choice
from .locator import BUDGETS, LocatorConfig, locate, top_mask
from .losses import kd_loss, peer_loss
from .metrics import primary_score
from .models import model_for_task, save_model
from .smp import SMPConfig, smp
from .profiles import get_profile
from .results import config_hash, find_result, result_path, save_result, versions
from .teacher import CHECKPOINTS_DIR, load_teacher, task_checkpoints
from .train import TrainConfig, fine_tune, make_loader, pick_device

METHODS = ("apd", "random", "hisp", "l0", "smp")
DISTILLS = ("none", "kd", "peer")


@dataclass
class PruneConfig:
    task: str
    method: str = "apd"
    profile: str = "full"
    sparsity: float | None = 0.58  # share of heads to remove, in [0, 1)
    keep: int | None = None  # or: how many heads to keep (overrides sparsity)
    seed: int = 0
    variant: str = "default"  # an ablation's name
    # none: CE only; kd: + logit KD; peer: + logit KD + peer loss (apd only).
    # Default: peer for apd, none for the baselines.
    distill: str | None = None
    model: str | None = None  # default: the profile's
    epochs: int | None = None  # final fine-tuning epochs; default: the profile's (= teacher's)
    lr: float | None = None  # final fine-tuning lr; default: the teacher's selected lr
    alpha: float = 1.0  # logit KD weight
    tau: float = 2.0  # KD temperature
    beta: float = 1.0  # peer (and locator layer) loss weight
    peer_beta: float | None = None  # peer loss weight of the final fine-tuning; default: beta
    # constant: that weight throughout; linear: it decays linearly to 0 over the fine-tuning
    peer_schedule: str = "constant"
    # all: the peer loss on every kept head; absorbing: only on the kept heads that absorbed
    # a pruned peer (the others are left to CE + KD)
    peer_heads: str = "all"
    locator_epochs: int = 1
    lr_gates: float = 0.3
    init_log_alpha: float = 3.0
    budget_control: str = "projection"  # what keeps the locator on budget: projection | lagrangian
    final_temperature: float = 0.1  # projection: the gate logits' temperature at the end
    lr_lambda: float = 3.0  # lagrangian: the multipliers' rate
    allocation: str = "auto"  # auto | uniform
    min_one_per_layer: bool = False  # off: a layer may lose every head
    merge: str | None = None  # pairwise | joint | none; default: pairwise for apd, else none
    peer_loss: str = "per_head"  # per_head | joint
    init: str = "teacher"  # start of the final fine-tuning: teacher | locator (weights)
    calib_examples: int = 512
    rho: float = 1e-3  # ridge of the peer merge, relative to the mean feature variance
    max_steps: int | None = None  # cap on locator steps (smoke runs)
    hisp_step: float = 0.1  # HISP: share of all heads pruned per rescoring step
    l0_start: float = 1e-3  # L0: first penalty strength of the search (x3 per try)
    smp_steps: int = 200  # SMP: meta-training steps of the attention-map scorer
    smp_sentences: int = 4000  # SMP: meta-training sentences from the other tasks

    def resolved(self) -> "PruneConfig":
        """The same run with the method's defaults filled in."""
        apd = self.method == "apd"
        return replace(self, distill=self.distill or ("peer" if apd else "none"),
                       merge=self.merge or ("pairwise" if apd else "none"))

    def locator_config(self, lr: float, batch_size: int) -> LocatorConfig:
        """The locator (and L0's gates) of this run: `lr` for the weights."""
        return LocatorConfig(epochs=self.locator_epochs, lr=lr, lr_gates=self.lr_gates,
                             budget_control=self.budget_control, final_temperature=self.final_temperature,
                             lr_lambda=self.lr_lambda, init_log_alpha=self.init_log_alpha,
                             alpha=self.alpha, tau=self.tau, beta=self.beta,
                             allocation=self.allocation, min_one_per_layer=self.min_one_per_layer,
                             batch_size=batch_size, seed=self.seed, max_steps=self.max_steps)

    def budget(self, n_heads_total: int) -> int:
        """K* = round(N * (1 - s)), or `keep` when given."""
        if self.keep is not None:
            if not 1 <= self.keep <= n_heads_total:
                raise ValueError(f"keep must be in [1, {n_heads_total}], got {self.keep}")
            return self.keep
        if self.sparsity is None or not 0 <= self.sparsity < 1:
            raise ValueError(f"head sparsity must be in [0, 1), got {self.sparsity}")
        return max(1, round(n_heads_total * (1 - self.sparsity)))


# Options that only one method reads. A run's identity (its hash, and the key of its saved
# head choice) leaves out the other methods' options, so changing one method's default does
# not make the other methods' finished runs look stale.
METHOD_OPTIONS = {"apd": ("budget_control", "final_temperature", "lr_lambda", "allocation",
                          "merge", "peer_loss", "init", "rho", "peer_beta", "peer_schedule",
                          "peer_heads"),
                  "hisp": ("hisp_step",), "l0": ("l0_start",),
                  "smp": ("smp_steps", "smp_sentences")}


# Options added after results were committed, with their default: left out of a run's
# identity while at that default, so that the runs made before they existed keep their hash.
LATER_OPTIONS = {"peer_beta": None, "peer_schedule": "constant", "peer_heads": "all",
                 "budget_control": "lagrangian"}
# Options that only matter under another option's value: left out of the identity there
# (the temperature means nothing to the multipliers).
ONLY_WHEN = {"final_temperature": ("budget_control", "projection"),
             "lr_lambda": ("budget_control", "lagrangian")}


def identity(options: dict) -> dict:
    """The options (`asdict` of a resolved PruneConfig) that can change the run's result:
    all but the other methods' own options and the later options at their default."""
    foreign = {f for m, fs in METHOD_OPTIONS.items() if m != options["method"] for f in fs}
    unset = {k for k, default in LATER_OPTIONS.items() if options.get(k) == default}
    unused = {k for k, (on, value) in ONLY_WHEN.items()
              if on in options and options.get(on, LATER_OPTIONS.get(on)) != value}
    return {k: v for k, v in options.items() if k not in foreign | unset | unused}


def run_identity(c: PruneConfig, keep: int, train: TrainConfig, teacher_hash: str) -> dict:
    """Everything a run's result depends on; its hash is the run's `config_hash`."""
    p = get_profile(c.profile)
    return {"prune": identity(asdict(c)), "train": train.to_dict(), "keep": keep,
            "teacher": teacher_hash, "train_examples": p.train_examples,
            "eval_examples": p.eval_examples}


def check_config(c: PruneConfig) -> None:
    """Refuse unknown names and combinations, naming the valid values."""
    get_task(c.task)
    get_profile(c.profile)
    choices = {"method": METHODS, "distill": DISTILLS, "allocation": ("auto", "uniform"),
               "budget_control": BUDGETS,
               "merge": peers.MERGES, "peer_loss": ("per_head", "joint"),
               "init": ("teacher", "locator"), "peer_schedule": ("constant", "linear"),
               "peer_heads": ("all", "absorbing")}
    for name, valid in choices.items():
        if getattr(c, name) not in valid:
            raise ValueError(f"unknown {name} {getattr(c, name)!r}; valid: {', '.join(valid)}")
    if c.keep is None and (c.sparsity is None or not 0 <= c.sparsity < 1):
        raise ValueError(f"head sparsity must be in [0, 1), got {c.sparsity}")
    if c.keep is not None and c.keep < 1:
        raise ValueError(f"keep must be at least 1, got {c.keep}")
    if c.peer_heads == "absorbing" and (c.distill != "peer" or c.peer_loss == "joint"):
        raise ValueError("peer_heads 'absorbing' selects heads of the per-head peer loss; "
                         f"this run has distill {c.distill!r} and peer_loss {c.peer_loss!r} "
                         "(use distill 'peer' and peer_loss 'per_head')")
    if c.method != "apd" and (c.distill == "peer" or c.merge != "none"):
        raise ValueError(f"method {c.method!r} runs with distill 'none' or 'kd' and no merge; "
                         "peer distillation belongs to 'apd'")


# The ablations of the method, by name: the options each changes from the defaults.
ABLATIONS = {
    "default": {},
    "no-merge": {"merge": "none"},
    "no-peer-loss": {"distill": "kd"},
    "joint": {"merge": "joint", "peer_loss": "joint"},
    "uniform": {"allocation": "uniform"},
    "init-locator": {"init": "locator"},
    # the peer loss sums K* normalised errors (about 8 at the start on MRPC against a CE
    # near 0.6), so at beta 1 it dominates the fine-tuning; this weighs it 10 times less
    "peer-weight-0.1": {"peer_beta": 0.1},
    # the peer loss guides the start of the fine-tuning and hands over to CE + KD at the end
    "peer-anneal": {"peer_schedule": "linear"},
    # a kept head with no pruned peer is held to its own teacher contribution by the peer
    # loss, which the task may not need; this leaves those heads to CE + KD
    "peer-absorbing": {"peer_heads": "absorbing"},
    # at high sparsity the locator may empty whole layers (STS-B at 92%: [3,0,1,0,0,2]),
    # where HISP's per-layer normalised scores keep one head in each; this keeps one too
    "one-per-layer": {"min_one_per_layer": True},
    # the learned multipliers of the first releases instead of the exact projection
    "lagrangian": {"budget_control": "lagrangian"},
}


def ablation(config: PruneConfig, name: str) -> PruneConfig:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; valid: {', '.join(ABLATIONS)}")
    return replace(config, variant=name, **ABLATIONS[name])


def peer_weight(c: PruneConfig, step: int, total_steps: int) -> float:
    """The peer loss's weight at training step `step` (0-based) of `total_steps`."""
    beta = c.beta if c.peer_beta is None else c.peer_beta
    if c.peer_schedule == "linear":
        return beta * max(0.0, 1.0 - step / max(1, total_steps))
    return beta


def distillation_loss(teacher, c: PruneConfig, groups=None, d_h: int = 0,
                      total_steps: int = 1):
    """loss_fn(model, batch) for `fine_tune`: CE (+ alpha*KD) (+ weight*peer loss), the
    weight following `peer_weight` over the `total_steps` training calls."""
    peer = c.distill == "peer" and peer_weight(c, 0, total_steps) > 0
    step = 0

    def loss_fn(model, batch):
        nonlocal step
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if c.distill == "none":
            return model(**batch).loss
        with torch.no_grad(), Capture(teacher) as t_cap:
            t_out = teacher(**inputs)
        with Capture(model) as s_cap:
            s_out = model(**batch)
        loss = s_out.loss + c.alpha * kd_loss(s_out.logits, t_out.logits, c.tau)
        if peer:
            tokens = batch["attention_mask"].bool()
            loss = loss + peer_weight(c, step, total_steps) * peer_loss(
                s_cap, t_cap, model, teacher, groups, tokens, d_h, joint=c.peer_loss == "joint",
                absorbing_only=c.peer_heads == "absorbing")
        step += model.training
        return loss
    return loss_fn


def choose_heads(c: PruneConfig, teacher, train, tokenizer, keep: int, calib_loader, lr: float,
                 batch_size: int, model_name: str, glue_dir=None, checkpoints_root=None,
                 l0_tries=None):
    """The method's mask, the locator's trained model (apd; else None), and what the run
    should record about the choice. `l0_tries`: where L0 keeps its penalty tries."""
    n_layers, n_heads = heads.num_layers_heads(teacher)
    loc_cfg = c.locator_config(lr, batch_size)
    if c.method == "apd":
        located = copy.deepcopy(teacher)
        mask, gates, log = locate(teacher, located, train, tokenizer, keep, loc_cfg)
        return mask, located, {"locator_log": _thin(log),
                               "log_alpha": gates.log_alpha.detach().cpu().tolist()}
    if c.method == "random":
        return random_mask(n_layers, n_heads, keep, c.seed, c.min_one_per_layer), None, {}
    if c.method == "hisp":
        mask, log = hisp_mask(teacher, calib_loader, keep, c.hisp_step, c.min_one_per_layer)
        return mask, None, {"hisp_steps": [s["kept"] for s in log],
                            "importance": log[0]["importance"]}
    if c.method == "l0":
        mask, sweep, gates = l0_mask(teacher, train, tokenizer, keep, loc_cfg, c.l0_start,
                                     tries_dir=l0_tries)
        return mask, None, {"l0_sweep": sweep, "log_alpha": gates.log_alpha.detach().cpu().tolist()}
    if c.method == "smp":  # scores the heads of the pretrained model
        pretrained = model_for_task(model_name, c.task, seed=c.seed)
        cfg = SMPConfig(steps=c.smp_steps, sentences=c.smp_sentences, batch_size=batch_size,
                        seed=c.seed)
        mask, extra = smp(pretrained, model_name, c.task, train, tokenizer, keep, cfg, glue_dir,
                          checkpoints_root or CHECKPOINTS_DIR)
        return mask, None, extra
    raise ValueError(f"unknown method {c.method!r}; valid: {', '.join(METHODS)}")


def start_model(c: PruneConfig, teacher, located, model_name: str):
    """The (unpruned) weights the final fine-tuning starts from: the teacher's, the
    locator's (apd with init "locator"), or the pretrained model's (SMP, as in its paper)."""
    if c.method == "smp":
        return model_for_task(model_name, c.task, seed=c.seed)
    if c.method == "apd" and c.init == "locator":
        return located
    return copy.deepcopy(teacher)


def _thin(log: list, most: int = 400) -> list:
    step = max(1, -(-len(log) // most))
    return log[::step] + ([log[-1]] if log and (len(log) - 1) % step else [])


def run_pruning(c: PruneConfig, glue_dir=None, results_root=None, checkpoints_root=None) -> dict:
    """Prune, recover, fine-tune, evaluate, save; return the result record."""
    c = c.resolved()
    check_config(c)
    p = get_profile(c.profile)
    model_name = c.model or p.model
    teacher, tokenizer, t_result = load_teacher(c.task, c.profile, 0, model_name, glue_dir,
                                                results_root, checkpoints_root)
    n_layers, n_heads = heads.num_layers_heads(teacher)
    keep = c.budget(n_layers * n_heads)
    # refuse, before any training, a budget the final mask's per-layer rule cannot meet
    top_mask(torch.zeros(n_layers, n_heads), keep, c.allocation if c.method == "apd" else "auto",
             c.min_one_per_layer)
    train_cfg = TrainConfig(lr=c.lr or t_result["lr"], batch_size=p.batch_size,
                            epochs=c.epochs or p.epochs, max_length=p.max_length, seed=c.seed)
    full = run_identity(c, keep, train_cfg, t_result["config_hash"])
    options = full["prune"]  # what the run's hash and its head choice's key cover
    h = config_hash(full)
    stub = {"task": c.task, "model": model_name, "profile": c.profile, "method": c.method,
            "distill": c.distill, "variant": c.variant,
            "target_sparsity": c.sparsity if c.keep is None else round(1 - keep / (n_layers * n_heads), 4),
            "seed": c.seed}
    done = find_result(h, result_path(stub, results_root))
    if done:
        return done
    start = time.perf_counter()
    device = pick_device(train_cfg.device)
    teacher.to(device).eval()
    train, evals = task_data(c.task, tokenizer, glue_dir=glue_dir, max_length=p.max_length,
                             train_examples=p.train_examples, eval_examples=p.eval_examples,
                             seed=0)
    calib_loader = make_loader(subsample(train, c.calib_examples, c.seed), tokenizer, 32, False)
    timings = {}
    t0 = time.perf_counter()
    # only the method uses the teacher's head statistics (peers and merge)
    teacher_stats = anatomy.collect_stats(teacher, calib_loader) if c.method == "apd" else None
    timings["anatomy_s"] = time.perf_counter() - t0

    # where to prune (computed once per choice, see choices.py), and the weights the
    # final fine-tuning starts from
    t0 = time.perf_counter()
    task_dir = task_checkpoints(c.profile, model_name, c.task, checkpoints_root)
    where = choice_dir(task_dir, options, keep, t_result["config_hash"], train_cfg.to_dict(),
                       p.train_examples)
    l0_tries = l0_tries_dir(task_dir, options, t_result["config_hash"], train_cfg.to_dict(),
                            p.train_examples)  # L0's penalty tries, shared by every budget
    saved = load_choice(where, with_located=c.method == "apd" and c.init == "locator")
    if saved:
        mask, extra, located = saved
    else:
        mask, located, extra = choose_heads(c, teacher, train, tokenizer, keep, calib_loader,
                                            train_cfg.lr, p.batch_size, model_name, glue_dir,
                                            checkpoints_root, l0_tries)
        save_choice(where, mask, extra, located, tokenizer)
    extra["choice"] = {"path": str(where), "reused": bool(saved)}
    student = start_model(c, teacher, located, model_name)
    timings["locate_s"] = time.perf_counter() - t0

    # apd: peer assignment (from the teacher), merge; every method: physical removal
    t0 = time.perf_counter()
    assignment = [{} for _ in range(n_layers)]
    if c.method == "apd":
        assignment = peers.assign_peers(anatomy.similarity(teacher_stats, "cosine"), mask)
        stats = teacher_stats if c.init == "teacher" else anatomy.collect_stats(student, calib_loader)
        kept = heads.kept_from_mask(mask)
        weights = peers.merged_weights(stats, mask, assignment, c.merge, c.rho)
        plain = [s.weight for s in stats]
        extra["reconstruction_error"] = {
            "none": [peers.reconstruction_error(s, w, k) for s, w, k in zip(stats, plain, kept)],
            c.merge: [peers.reconstruction_error(s, w, k) for s, w, k in zip(stats, weights, kept)]}
        peers.merge_and_prune(student, weights, mask)
    else:
        heads.prune(student, mask)
    for prm in student.parameters():
        prm.requires_grad_(True)
    timings["merge_s"] = time.perf_counter() - t0
    extra["peers"] = [{str(k): v for k, v in a.items()} for a in assignment]

    # fine-tuning with the chosen distillation
    t0 = time.perf_counter()
    groups = peers.peer_groups(assignment, mask)
    steps = math.ceil(len(train) / train_cfg.batch_size) * train_cfg.epochs
    loss_fn = distillation_loss(teacher, c, groups, head_dim(teacher), steps)
    history = fine_tune(student, c.task, train, evals[next(iter(evals))], tokenizer, train_cfg,
                        loss_fn=loss_fn, desc=f"{c.method} {c.task} {c.variant}")
    timings["fine_tune_s"] = time.perf_counter() - t0
    wall = time.perf_counter() - start

    ckpt = task_dir / f"{c.method}-{h}"
    save_model(student, tokenizer, ckpt, peerprune_config=full)
    scores = history[-1]["scores"]
    spec = get_task(c.task)
    per_layer = heads.heads_per_layer(student)
    result = {**stub, "sparsity": round(1 - sum(per_layer) / (n_layers * n_heads), 4),
              "metric": spec.primary_metric, "score": primary_score(c.task, scores),
              "scores": scores, "heads_per_layer": per_layer, "kept_heads": heads.kept_heads(student),
              "params": heads.count_params(student), "flops": heads.flops(student, 128),
              "wall_s": round(wall, 1), "timings": {k: round(v, 1) for k, v in timings.items()},
              "config_hash": h, "options": asdict(c), "train": train_cfg.to_dict(),
              "teacher_score": t_result["score"], "teacher_lr": t_result["lr"],
              "history": history, **extra, "checkpoint": str(ckpt), "versions": versions()}
    save_result(result, results_root)
    return result
