"""A pruning run's options and bookkeeping, used by notebooks, scripts and tests alike.

    result = run_pruning(PruneConfig(task="mrpc", method="apd", sparsity=0.58))

`PruneConfig` is a run's options; `run_identity` what its hash covers; `run_pruning` takes
the task's dense teacher (`teacher.py`), runs `pipeline.prune_pipeline` with the method's
selector (`selectors.py`, its choice cached by `choices.py`), saves the pruned model with
`save_pretrained` and writes one results JSON. A finished run with the same configuration
is read back, not rerun.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path


from . import heads, peers
from .choices import choice_dir, l0_tries_dir, load_choice, save_choice
from .glue import get_task, subsample, task_data
from .locator import ALLOCATIONS, BUDGETS, LocatorConfig, uniform_counts
from .losses import FINE_TUNING_LOSSES
from .metrics import primary_score
from .models import check_model_name, layers_and_heads, save_model
from .pipeline import Clock, Inputs, prune_pipeline
from .profiles import PROFILES, get_profile
from .results import (config_hash, find_result, result_path, save_result, versions,
                      with_processes)
from .selectors import SELECTORS, HeadChoice
from .sequential import SEQUENTIAL_MERGES
from .teacher import folder_teacher, load_teacher, task_checkpoints
from .train import TrainConfig, make_loader, pick_device

METHODS = tuple(SELECTORS)  # every registered head selection (selectors.py)


def option(default, doc: str, group: str, *, after_choice: bool = False, methods=None,
           choices=None, omit_at=MISSING, only_when=None, keep_when=None):
    """A PruneConfig field with its role declared once, from which the run's identity, the
    head choice's key, validation and the command line's help are derived:

    group         its concern: run, method, locator, fine-tuning, a baseline's name
    after_choice  it acts only after the heads are chosen: runs differing in it share one
                  head choice (choices.py)
    methods       only these methods read it: the other methods' identities leave it out
    choices       its valid values (a tuple, or a callable giving one)
    omit_at       added after results were committed: left out of the identity at this
                  value, so the runs made before it existed keep their hash
    only_when     (other field, value): it means something only when that field has that
                  value, and is left out of the identity otherwise
    keep_when     a test of the options: it is in the identity only where the test holds
    """
    return field(default=default, metadata={
        "doc": doc, "group": group, "after_choice": after_choice, "methods": methods,
        "choices": choices, "omit_at": omit_at, "only_when": only_when, "keep_when": keep_when})


APD = ("apd",)


def merges(options: dict) -> bool:
    """The method merges; any method may on the post-training path (epochs 0)."""
    return options["method"] == "apd" or options.get("epochs") == 0


@dataclass
class PruneConfig:
    task: str = field(metadata={"doc": "the GLUE task", "group": "run"})
    method: str = option("apd", "how the heads are chosen (selectors.py)", "run",
                         choices=lambda: tuple(SELECTORS))
    profile: str = option("quick", "the run's size (profiles.py)", "run",
                          choices=lambda: tuple(PROFILES))
    sparsity: float | None = option(0.58, "share of heads to remove, in [0, 1)", "run")
    keep: int | None = option(None, "or: how many heads to keep (overrides sparsity)", "run")
    seed: int = option(0, "calibration sample, gate noise, Random's mask, data order", "run")
    variant: str = option("default", "an ablation's name", "run", after_choice=True)
    distill: str | None = option(
        None, "the fine-tuning loss (losses.FINE_TUNING_LOSSES): none: CE; kd: + logit KD; "
        "peer: + logit KD + peer loss (the method only); default: peer for the method, none "
        "for the baselines", "fine-tuning", after_choice=True,
        choices=lambda: tuple(FINE_TUNING_LOSSES))
    model: str | None = option(None, "model id, path or alias; default: the profile's", "run")
    teacher: str | None = option(None, "a fine-tuned model folder used as the teacher as it is "
                                 "(no retraining); default: the profile's teacher of the task",
                                 "run", omit_at=None)
    epochs: int | None = option(None, "final fine-tuning epochs; default: the profile's; 0: the "
                                "post-training path (choice, merge, removal, no training)",
                                "fine-tuning", after_choice=True)
    lr: float | None = option(None, "the weights' learning rate, in the locator and the final "
                              "fine-tuning; default: the teacher's", "fine-tuning")
    alpha: float = option(1.0, "logit KD weight (locator and fine-tuning)", "fine-tuning")
    tau: float = option(2.0, "KD temperature", "fine-tuning")
    beta: float = option(1.0, "peer loss and locator layer loss weight", "fine-tuning")
    peer_beta: float | None = option(
        None, "peer loss weight of the final fine-tuning; default: beta", "method",
        after_choice=True, methods=APD, omit_at=None)
    peer_schedule: str = option(
        "constant", "constant: the peer weight throughout; linear: decays to 0", "method",
        after_choice=True, methods=APD, choices=("constant", "linear"), omit_at="constant")
    peer_heads: str = option(
        "all", "all: the peer loss on every kept head; absorbing: only on those that absorbed "
        "a pruned peer", "method", after_choice=True, methods=APD, choices=("all", "absorbing"),
        omit_at="all")
    locator_epochs: int = option(1, "passes of the locator (and L0's tries) over the data",
                                 "locator")
    lr_gates: float = option(0.3, "gate logits' learning rate (Adam)", "locator")
    init_log_alpha: float = option(3.0, "gate logits at the start", "locator")
    budget_control: str = option(
        "projection", "what keeps the locator on budget: the exact projection or the learned "
        "multipliers", "locator", methods=APD, choices=lambda: BUDGETS, omit_at="lagrangian")
    final_temperature: float = option(
        0.1, "projection: the gate logits' temperature at the end", "locator", methods=APD,
        only_when=("budget_control", "projection"))
    lr_lambda: float = option(3.0, "lagrangian: the multipliers' rate", "locator", methods=APD,
                              only_when=("budget_control", "lagrangian"))
    locator_min_steps: int = option(
        100, "projection: the search's fewest steps; a pass over the data that is shorter is "
        "repeated, so the falling temperature has the steps to make the gates decisive",
        "locator", methods=APD, only_when=("budget_control", "projection"), omit_at=100)
    allocation: str = option("auto", "auto: one global budget; uniform: the same count per "
                             "layer", "locator", methods=APD, choices=lambda: ALLOCATIONS)
    min_one_per_layer: bool = option(False, "keep at least one head in every layer",
                                     "locator")
    merge: str | None = option(None, "pairwise | joint | rescale (Kwon's mask tuning) | none; "
                               "default: pairwise for the method, none otherwise", "method",
                               after_choice=True, choices=lambda: peers.MERGES,
                               keep_when=merges)
    peer_loss: str = option("per_head", "one term per kept head, or one per layer", "method",
                            after_choice=True, methods=APD, choices=("per_head", "joint"))
    init: str = option("teacher", "start of the final fine-tuning: the teacher's or the "
                       "locator's weights", "method", after_choice=True, methods=APD,
                       choices=("teacher", "locator"))
    calibration: str = option(
        "teacher", "what each layer's merge is fitted on: the teacher's own head outputs, or "
        "(sequential) the model already merged below it, so that each layer gives the "
        "teacher's block output (as Kwon et al. tune their scales); sequential: joint and "
        "rescale only", "method", after_choice=True, choices=("teacher", "sequential"),
        omit_at="teacher", keep_when=merges)
    bias: str = option(
        "keep", "the output projection's bias after the merge: kept, or (mean) the merge is "
        "fitted about the head outputs' mean and the bias takes the mean back, so that each "
        "pruned layer gives the teacher's (sequential: the target's) mean output", "method",
        after_choice=True, choices=lambda: peers.BIASES, omit_at="keep", keep_when=merges)
    calib_examples: int = option(512, "calibration sample (anatomy, merge, HISP)", "method")
    rho: float = option(1e-3, "ridge of the peer merge, relative to the mean feature "
                        "variance", "method", after_choice=True, keep_when=merges)
    max_steps: int | None = option(None, "cap on the head search's steps (locator, L0's tries)",
                                   "locator")
    hisp_step: float = option(0.1, "share of all heads pruned per rescoring step", "hisp",
                              methods=("hisp",))
    l0_start: float = option(1e-3, "first penalty strength of the search (x3 per try)", "l0",
                             methods=("l0",))
    smp_steps: int = option(200, "meta-training steps of the attention-map scorer", "smp",
                            methods=("smp",))
    smp_sentences: int = option(4000, "meta-training sentences from the other tasks", "smp",
                                methods=("smp",))

    @classmethod
    def for_profile(cls, profile, task: str, **fields) -> "PruneConfig":
        """A run of `profile` (a Profile or its name): its option overrides (with the task's
        own), then `fields`."""
        p = get_profile(profile) if isinstance(profile, str) else profile
        try:
            name = get_task(task).name
        except ValueError:  # your own data (a CSV task): the profile's options only
            name = task
        p = p.for_task(name)
        return cls(task=task, profile=p.name, **{**p.prune_options, **fields})

    def resolved(self) -> "PruneConfig":
        """The same run with the method's defaults filled in and the task's name in its
        canonical spelling (`MRPC` -> `mrpc`)."""
        apd, post = self.method == "apd", self.epochs == 0
        merge = self.merge or ("pairwise" if apd else "none")
        variant = self.variant  # the post-training path names its recovery: post-<merge>[-name]
        if self.calibration == "sequential" and "sequential" not in variant.split("-"):
            variant = "sequential" if variant == "default" else f"{variant}-sequential"
        if self.bias != default_of("bias") and f"{self.bias}-bias" not in variant:
            variant = (f"{self.bias}-bias" if variant == "default"
                       else f"{variant}-{self.bias}-bias")
        if post and not variant.startswith("post-"):
            variant = f"post-{merge}" + ("" if variant == "default" else f"-{variant}")
        return replace(self, task=get_task(self.task).name, variant=variant, merge=merge,
                       distill=self.distill or ("peer" if apd and not post else "none"))

    def locator_config(self, lr: float, batch_size: int) -> LocatorConfig:
        """The locator (and L0's gates) of this run: each `LocatorConfig` field takes this
        config's field `locator_<name>` or, failing that, `<name>` (so `locator_epochs` is
        the search's passes, `epochs` the fine-tuning's); `lr` for the weights."""
        mine = asdict(self)
        values = {}
        for f in fields(LocatorConfig):
            name = f"locator_{f.name}" if f"locator_{f.name}" in mine else f.name
            if name in mine:
                values[f.name] = mine[name]
        return LocatorConfig(**{**values, "lr": lr, "batch_size": batch_size})

    def budget(self, n_heads_total: int) -> int:
        """K* = round(N * (1 - s)), or `keep` when given."""
        if self.keep is not None:
            if not 1 <= self.keep <= n_heads_total:
                raise ValueError(f"keep must be in [1, {n_heads_total}], got {self.keep}")
            return self.keep
        if self.sparsity is None or not 0 <= self.sparsity < 1:
            raise ValueError(f"head sparsity must be in [0, 1), got {self.sparsity}")
        return max(1, round(n_heads_total * (1 - self.sparsity)))


def roles(config_class=None) -> dict[str, dict]:
    """Each field's declared role (`option`), by name."""
    return {f.name: f.metadata for f in fields(config_class or PruneConfig)}


ROLES = roles()
# derived from the fields' declared roles (`option`): nothing below is a list kept by hand
METHOD_OPTIONS = {m: tuple(k for k, r in ROLES.items() if m in (r.get("methods") or ()))
                  for m in sorted({m for r in ROLES.values() for m in r.get("methods") or ()})}
LATER_OPTIONS = {k: r["omit_at"] for k, r in ROLES.items()
                 if r.get("omit_at", MISSING) is not MISSING}
AFTER_THE_CHOICE = tuple(k for k, r in ROLES.items() if r.get("after_choice"))


def valid_values(name: str, config_class=None) -> tuple | None:
    """The valid values of a field with a fixed set of them, else None."""
    valid = roles(config_class)[name].get("choices")
    return valid() if callable(valid) else valid


def default_of(name: str, config_class=None):
    """A field's default (MISSING for `task`, which every run names)."""
    f = next(f for f in fields(config_class or PruneConfig) if f.name == name)
    return f.default


def option_help(name: str, config_class=None) -> str:
    """A field's declared doc, with its valid values unless the doc names them all."""
    doc, valid = roles(config_class)[name]["doc"], valid_values(name, config_class)
    if valid and not all(v in doc for v in map(str, valid)):
        doc += f"; valid: {', '.join(map(str, valid))}"
    return doc


def options_by_group(config_class=None) -> dict[str, list[str]]:
    """The fields by their declared concern (run, fine-tuning, method, locator, each
    baseline), in the order they first appear."""
    groups: dict[str, list[str]] = {}
    for name, role in roles(config_class).items():
        groups.setdefault(role["group"], []).append(name)
    return groups


def describe_options(config_class=None) -> str:
    """Every option of a run, grouped by concern, with its default and doc (the `options`
    command)."""
    lines = []
    for group, names in options_by_group(config_class).items():
        lines.append(f"{group}:")
        for name in names:
            default = default_of(name, config_class)
            shown = "(required)" if default is MISSING else repr(default)
            lines.append(f"  {name:<20} {shown:<12} {option_help(name, config_class)}")
    return "\n".join(lines)


def identity(options: dict, config_class=None) -> dict:
    """The options (`asdict` of a resolved config) that can change the run's result: all
    but the other methods' own options, the later options at their `omit_at` value and the
    options whose `only_when` does not hold."""
    drop = set()
    for name, role in roles(config_class).items():
        methods, omit, when = role.get("methods"), role.get("omit_at", MISSING), role.get("only_when")
        if methods and options["method"] not in methods:
            drop.add(name)
        elif omit is not MISSING and options.get(name) == omit:
            drop.add(name)
        elif when and when[0] in options and options[when[0]] != when[1]:
            drop.add(name)
        elif role.get("keep_when") and not role["keep_when"](options):
            drop.add(name)
    return {k: v for k, v in options.items() if k not in drop}


def choice_options(identity_options: dict, config_class=None) -> dict:
    """A run's identity without the options that act after the head choice: the runs that
    share it share one head choice."""
    after = {k for k, r in roles(config_class).items() if r.get("after_choice")}
    return {k: v for k, v in identity_options.items() if k not in after}


def run_identity(c: PruneConfig, keep: int, train: TrainConfig, teacher_hash: str) -> dict:
    """Everything a run's result depends on; its hash is the run's `config_hash`."""
    return identity_of(asdict(c), keep, train.to_dict(), teacher_hash, None, type(c))


def identity_of(options: dict, keep: int, train: dict, teacher_hash: str,
                processes: int | None = 1, config_class=None) -> dict:
    """`run_identity` from a run's parts as its results file stores them (`options`,
    `train`), which is how `migrations.recompute_hash` rebuilds a committed run's hash;
    `processes` None: this process's count."""
    p = get_profile(options["profile"]).for_task(options["task"])
    full = {"prune": identity(options, config_class), "train": train, "keep": keep,
            "teacher": teacher_hash, "train_examples": p.train_examples,
            "eval_examples": p.eval_examples}
    data = get_task(options["task"]).digest  # your own data (glue.csv_task): its files
    return with_processes({**full, "data": data} if data else full, processes)


def check_config(c: PruneConfig) -> None:
    """Refuse unknown names and combinations, naming the valid values, before any work:
    also a model folder that does not exist and a budget the model cannot hold."""
    if get_task(c.task).digest and not c.teacher:
        raise ValueError(f"task {c.task!r} is your own data (a CSV file): give the model "
                         "fine-tuned on it as the teacher (--teacher FOLDER)")
    model = c.teacher or c.model or get_profile(c.profile).model
    check_model_name(model)
    shape = layers_and_heads(model)
    if shape is not None:  # else run_pruning checks it once the teacher is loaded
        check_budget(c, c.budget(shape[0] * shape[1]), *shape)
    for name in roles(type(c)):
        valid = valid_values(name, type(c))
        if valid is not None and getattr(c, name) not in valid:
            raise ValueError(f"unknown {name} {getattr(c, name)!r}; valid: {', '.join(valid)}")
    if c.keep is None and (c.sparsity is None or not 0 <= c.sparsity < 1):
        raise ValueError(f"head sparsity must be in [0, 1), got {c.sparsity}")
    if c.keep is not None and c.keep < 1:
        raise ValueError(f"keep must be at least 1, got {c.keep}")
    if c.peer_heads == "absorbing" and (c.distill != "peer" or c.peer_loss == "joint"):
        raise ValueError("peer_heads 'absorbing' selects heads of the per-head peer loss; "
                         f"this run has distill {c.distill!r} and peer_loss {c.peer_loss!r} "
                         "(use distill 'peer' and peer_loss 'per_head')")
    if c.method != "apd" and (FINE_TUNING_LOSSES[c.distill].needs_peers
                              or (c.merge != "none" and c.epochs != 0)):
        plain = [n for n, f in FINE_TUNING_LOSSES.items() if not f.needs_peers]
        raise ValueError(f"method {c.method!r} runs with no merge and a loss that needs no "
                         f"peers (distill {', '.join(plain)}); peer distillation belongs to "
                         "'apd' (any method's mask can be merged on the post-training path, "
                         "epochs 0)")
    if not 0 < c.final_temperature <= 1:
        raise ValueError(f"final_temperature must be in (0, 1], got {c.final_temperature}")
    if c.bias != default_of("bias") and not merges(asdict(c)):
        raise ValueError(f"bias {c.bias!r} moves the bias of a merge: the method's, or any "
                         f"method's on the post-training path (epochs 0); this run is method "
                         f"{c.method!r} with epochs {c.epochs}")
    if c.bias != default_of("bias") and FINE_TUNING_LOSSES[c.distill].needs_peers:
        raise ValueError(f"bias {c.bias!r} leaves the pruned heads' mean in the bias, and the "
                         f"peer loss of distill {c.distill!r} would pull it back into the "
                         "heads: fine-tune with distill kd or none, or keep the bias")
    if c.calibration == "sequential" and c.merge not in SEQUENTIAL_MERGES:
        raise ValueError(f"calibration 'sequential' fits merge {', '.join(SEQUENTIAL_MERGES)}; "
                         f"this run has merge {c.merge!r}")
    if c.epochs == 0 and c.distill != "none":
        raise ValueError(f"the post-training path (epochs 0) has no fine-tuning loss; this run "
                         f"has distill {c.distill!r}")


# The ablations of the method, by name: the options each changes from the defaults.
ABLATIONS = {
    "default": {},
    "no-merge": {"merge": "none"},  # remove the pruned heads without folding them in
    "no-peer-loss": {"distill": "kd"},  # fine-tune with CE + logit KD only
    "joint": {"merge": "joint", "peer_loss": "joint"},  # refit all kept rows of a layer at once
    "uniform": {"allocation": "uniform"},  # the same number of heads in every layer
    "init-locator": {"init": "locator"},  # fine-tune from the locator's weights
    "peer-weight-0.1": {"peer_beta": 0.1},  # the peer loss weighed ten times less
    "peer-anneal": {"peer_schedule": "linear"},  # the peer weight decays to 0 over the fine-tuning
    # the peer loss only on the kept heads that absorbed a pruned peer
    "peer-absorbing": {"peer_heads": "absorbing"},
    "one-per-layer": {"min_one_per_layer": True},  # no layer loses every head
    "lagrangian": {"budget_control": "lagrangian"},  # the learned multipliers, not the projection
}


def ablation(config: PruneConfig, name: str) -> PruneConfig:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; valid: {', '.join(ABLATIONS)}")
    return replace(config, variant=name, **ABLATIONS[name])


def with_calib_examples(config: PruneConfig, n: int) -> PruneConfig:
    """The same run on a calibration sample of `n` examples; a size other than the run's
    own is named in its variant (`calib128`), so that its results file has a name of its
    own."""
    if n == config.calib_examples:
        return config
    if n < 1:
        raise ValueError(f"calib_examples must be at least 1, got {n}")
    name = f"calib{n}"
    return replace(config, calib_examples=n,
                   variant=name if config.variant == "default" else f"{config.variant}-{name}")


def run_pruning(c: PruneConfig, glue_dir=None, results_root=None, checkpoints_root=None) -> dict:
    """Prune, recover, fine-tune, evaluate, save; return the result record. A finished run
    with the same configuration is read back, not rerun."""
    c = c.resolved()
    check_config(c)
    p = get_profile(c.profile).for_task(c.task)
    model_name = c.model or c.teacher or p.model
    if c.teacher:
        teacher, tokenizer, t_result = folder_teacher(c.teacher, c.task, c.profile, glue_dir)
    else:
        teacher, tokenizer, t_result = load_teacher(c.task, c.profile, 0, model_name, glue_dir,
                                                    results_root, checkpoints_root)
    n_layers, n_heads = heads.num_layers_heads(teacher)
    keep = c.budget(n_layers * n_heads)
    check_budget(c, keep, n_layers, n_heads)
    train_cfg = TrainConfig(lr=c.lr or t_result["lr"] or TrainConfig.lr, batch_size=p.batch_size,
                            epochs=p.epochs if c.epochs is None else c.epochs,
                            max_length=p.max_length, seed=c.seed)
    full = run_identity(c, keep, train_cfg, t_result["config_hash"])
    h = config_hash(full)
    stub = result_stub(c, model_name, c.sparsity if c.keep is None
                       else round(1 - keep / (n_layers * n_heads), 4))
    done = find_result(h, result_path(stub, results_root))
    if done:
        return done
    start = time.perf_counter()
    teacher.to(pick_device(train_cfg.device)).eval()
    task_dir = task_checkpoints(c.profile, model_name, c.task, checkpoints_root)
    before = choice_options(full["prune"], type(c))
    inputs = run_inputs(c, p, tokenizer, train_cfg, model_name, glue_dir, checkpoints_root,
                        l0_tries_dir(task_dir, before, t_result["config_hash"],
                                     train_cfg.to_dict(), p.train_examples))
    where = choice_dir(task_dir, before, keep, t_result["config_hash"], train_cfg.to_dict(),
                       p.train_examples)
    ckpt = task_dir / f"{c.method}-{h}"
    inputs.resume_dir = ckpt.with_name(ckpt.name + ".resume")
    clock = Clock()
    student, choice, record = prune_pipeline(teacher, inputs, c, keep, train_cfg,
                                             cached(SELECTORS[c.method], where, c), clock)
    name_labels(student, c.task)
    save_model(student, tokenizer, ckpt, peerprune_config=full)
    result = {**stub, **describe(student, c.task, record["history"]),
              "wall_s": round(time.perf_counter() - start, 1),
              "timings": {k: round(v, 1) for k, v in clock.items()}, "config_hash": h,
              "options": asdict(c), "train": train_cfg.to_dict(),
              "teacher_score": t_result["score"], "teacher_lr": t_result["lr"],
              "teacher_hash": t_result["config_hash"], "teacher_checkpoint": t_result["checkpoint"],
              **record, **choice.record, "checkpoint": str(ckpt), "versions": versions()}
    save_result(result, results_root)
    shutil.rmtree(inputs.resume_dir, ignore_errors=True)  # finished: no epoch to resume
    return result


def result_stub(c: PruneConfig, model_name: str, target_sparsity: float) -> dict:
    """What names a resolved run's results file (`results.result_path`)."""
    return {"task": c.task, "model": model_name, "profile": c.profile, "method": c.method,
            "distill": c.distill, "variant": c.variant, "target_sparsity": target_sparsity,
            "seed": c.seed}


def name_labels(model, task: str) -> None:
    """The task's label names in the model's config, so that a pipeline on the saved model
    answers `equivalent` rather than `LABEL_1`."""
    names = get_task(task).label_names
    if names and model.config.num_labels == len(names):
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {n: i for i, n in enumerate(names)}


def check_budget(c: PruneConfig, keep: int, n_layers: int, n_heads: int) -> None:
    """Refuse, before any training, a budget the final mask's per-layer rule cannot meet
    (SMP keeps the same count in every layer)."""
    allocation = "uniform" if c.method == "smp" else c.allocation if c.method == "apd" else "auto"
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
