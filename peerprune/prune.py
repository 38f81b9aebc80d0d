"""A pruning run's options and bookkeeping, used by notebooks, scripts and tests alike.

    result = run_pruning(PruneConfig(task="mrpc", method="apd", sparsity=0.58))

`PruneConfig` is a run's options; `run_identity` what its hash covers; `run_pruning` takes
the task's dense teacher (`teacher.py`), runs `pipeline.prune_pipeline` with the method's
selector (`selectors.py`, its choice cached by `choices.py`), saves the pruned model with
`save_pretrained` and writes one results JSON. A finished run with the same configuration
is read back, not rerun.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path


from . import heads, peers
from .choices import choice_dir, l0_tries_dir, load_choice, save_choice
from .glue import get_task, subsample, task_data
from .locator import BUDGETS, LocatorConfig, uniform_counts
from .metrics import primary_score
from .models import save_model
from .pipeline import Clock, Inputs, prune_pipeline
from .profiles import get_profile
from .results import config_hash, find_result, result_path, save_result, versions
from .selectors import SELECTORS, HeadChoice
from .teacher import load_teacher, task_checkpoints
from .train import TrainConfig, make_loader, pick_device

METHODS = tuple(SELECTORS)  # every registered head selection (selectors.py)
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


def run_pruning(c: PruneConfig, glue_dir=None, results_root=None, checkpoints_root=None) -> dict:
    """Prune, recover, fine-tune, evaluate, save; return the result record. A finished run
    with the same configuration is read back, not rerun."""
    c = c.resolved()
    check_config(c)
    p = get_profile(c.profile)
    model_name = c.model or p.model
    teacher, tokenizer, t_result = load_teacher(c.task, c.profile, 0, model_name, glue_dir,
                                                results_root, checkpoints_root)
    n_layers, n_heads = heads.num_layers_heads(teacher)
    keep = c.budget(n_layers * n_heads)
    check_budget(c, keep, n_layers, n_heads)
    train_cfg = TrainConfig(lr=c.lr or t_result["lr"], batch_size=p.batch_size,
                            epochs=c.epochs or p.epochs, max_length=p.max_length, seed=c.seed)
    full = run_identity(c, keep, train_cfg, t_result["config_hash"])
    h = config_hash(full)
    stub = {"task": c.task, "model": model_name, "profile": c.profile, "method": c.method,
            "distill": c.distill, "variant": c.variant,
            "target_sparsity": c.sparsity if c.keep is None else round(1 - keep / (n_layers * n_heads), 4),
            "seed": c.seed}
    done = find_result(h, result_path(stub, results_root))
    if done:
        return done
    start = time.perf_counter()
    teacher.to(pick_device(train_cfg.device)).eval()
    task_dir = task_checkpoints(c.profile, model_name, c.task, checkpoints_root)
    inputs = run_inputs(c, p, tokenizer, train_cfg, model_name, glue_dir, checkpoints_root,
                        l0_tries_dir(task_dir, full["prune"], t_result["config_hash"],
                                     train_cfg.to_dict(), p.train_examples))
    where = choice_dir(task_dir, full["prune"], keep, t_result["config_hash"],
                       train_cfg.to_dict(), p.train_examples)
    clock = Clock()
    student, choice, record = prune_pipeline(teacher, inputs, c, keep, train_cfg,
                                             cached(SELECTORS[c.method], where, c), clock)
    ckpt = task_dir / f"{c.method}-{h}"
    save_model(student, tokenizer, ckpt, peerprune_config=full)
    result = {**stub, **describe(student, c.task, record["history"]),
              "wall_s": round(time.perf_counter() - start, 1),
              "timings": {k: round(v, 1) for k, v in clock.items()}, "config_hash": h,
              "options": asdict(c), "train": train_cfg.to_dict(),
              "teacher_score": t_result["score"], "teacher_lr": t_result["lr"],
              **record, **choice.record, "checkpoint": str(ckpt), "versions": versions()}
    save_result(result, results_root)
    return result


def check_budget(c: PruneConfig, keep: int, n_layers: int, n_heads: int) -> None:
    """Refuse, before any training, a budget the final mask's per-layer rule cannot meet."""
    allocation = c.allocation if c.method == "apd" else "auto"
    if allocation == "uniform":
        uniform_counts(keep, n_layers, n_heads)
    if c.min_one_per_layer and keep < n_layers:
        raise ValueError(f"at least one head per layer needs keep >= {n_layers}, got {keep}")


def run_inputs(c: PruneConfig, p, tokenizer, train_cfg: TrainConfig, model_name: str,
               glue_dir, checkpoints_root, l0_tries) -> Inputs:
    """The task's data (the profile's subsample) and the run's calibration sample."""
    train, evals = task_data(c.task, tokenizer, glue_dir=glue_dir, max_length=p.max_length,
                             train_examples=p.train_examples, eval_examples=p.eval_examples,
                             seed=0)
    calib = make_loader(subsample(train, c.calib_examples, c.seed), tokenizer, 32, False)
    return Inputs(tokenizer, train, evals[next(iter(evals))], calib, model_name, train_cfg.lr,
                  p.batch_size, glue_dir, checkpoints_root, l0_tries)


def cached(select, where: Path, c: PruneConfig):
    """`select`, reading its choice back from `where` when a run with the same options
    before the choice saved one there (choices.py), and saving a new one."""
    def select_or_load(teacher, inputs, keep, config):
        saved = load_choice(where, with_located=c.method == "apd" and c.init == "locator")
        if saved:
            mask, record, located = saved
            choice = HeadChoice(mask, record, located)
        else:
            choice = select(teacher, inputs, keep, config)
            save_choice(where, choice.mask, choice.record, choice.located, inputs.tokenizer)
        choice.record["choice"] = {"path": str(where), "reused": bool(saved)}
        return choice
    return select_or_load


def describe(student, task: str, history: list[dict]) -> dict:
    """What a result says about the pruned model: its scores, heads and cost."""
    n_layers, n_heads = heads.num_layers_heads(student)
    per_layer = heads.heads_per_layer(student)
    scores = history[-1]["scores"]
    return {"sparsity": round(1 - sum(per_layer) / (n_layers * n_heads), 4),
            "metric": get_task(task).primary_metric, "score": primary_score(task, scores),
            "scores": scores, "heads_per_layer": per_layer, "kept_heads": heads.kept_heads(student),
            "params": heads.count_params(student), "flops": heads.flops(student, 128)}
