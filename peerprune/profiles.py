"""Run profiles, defined in one place: how big a run is.

  smoke: the tiny random model and a few dozen examples; for the tests.
  quick: MiniLM on the offline GLUE data, subsampled, so that everything fits in an hour.
  full:  MiniLM on the six offline tasks (plus the Hub-only ones where the Hub is reachable),
         the paper's fine-tuning length, a learning-rate sweep for the teacher, 3 seeds.
  paper: bert-base-uncased on all nine tasks with the paper's recipe (GPU and Hub needed).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


# what a task may set for itself (Profile.for_task); its prune_options add to the profile's
TASK_FIELDS = ("epochs", "teacher_lrs", "prune_options")


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    tasks: tuple[str, ...]
    epochs: int
    teacher_lrs: tuple[float, ...]  # the dense teacher's learning-rate sweep
    seeds: tuple[int, ...] = (0,)
    train_examples: int | None = None  # None: the whole training split
    eval_examples: int | None = None  # None: the whole dev split
    batch_size: int = 32
    max_length: int = 128
    sparsities: tuple[float, ...] = (0.58,)  # head sparsities of the method comparison
    methods: tuple[str, ...] = ("apd", "random", "hisp", "l0", "smp")
    ablation_tasks: tuple[str, ...] = ()  # tasks of the ablation notebook
    ablations: tuple[str, ...] = ()  # the ablations it runs there (prune.ABLATIONS); (): all
    sweep_tasks: tuple[str, ...] = ()  # tasks that run every sparsity (others: 0.58 only)
    prune_options: dict = field(default_factory=dict)  # PruneConfig fields to override
    hub_tasks: tuple[str, ...] = ()  # tasks added when the Hugging Face Hub is reachable
    # a task's own values of the fields above (its teacher and every run on it use them)
    task_overrides: dict = field(default_factory=dict)

    def for_task(self, task: str) -> "Profile":
        """The profile as it applies to `task` (a canonical task name)."""
        own = dict(self.task_overrides.get(task) or {})
        if set(own) - set(TASK_FIELDS):
            raise ValueError(f"profile {self.name!r}, task {task!r}: a task may set only "
                             f"{', '.join(TASK_FIELDS)}; got {', '.join(sorted(own))}")
        if "prune_options" in own:
            own["prune_options"] = {**self.prune_options, **own["prune_options"]}
        return replace(self, **own) if own else self

    def runnable_tasks(self) -> tuple[str, ...]:
        """The profile's tasks, plus its Hub-only tasks when the Hub answers."""
        if not self.hub_tasks:
            return self.tasks
        from .glue import hub_reachable
        return self.tasks + self.hub_tasks if hub_reachable() else self.tasks



SWEEP = (0.25, 0.5, 0.58, 0.75, 0.83, 0.92)  # 54, 36, 30, 18, 12, 6 of 72 heads kept

PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("smoke", "tiny", ("rte",), epochs=1, teacher_lrs=(1e-3,), train_examples=64,
            eval_examples=32, batch_size=16, max_length=64, sparsities=(0.5, 0.75),
            ablation_tasks=("rte",), sweep_tasks=("rte",),
            prune_options=dict(locator_epochs=2, max_steps=8, calib_examples=64,
                               smp_steps=3, smp_sentences=40, l0_start=0.05)),
    Profile("quick", "minilm", ("mrpc",), epochs=2, teacher_lrs=(1e-4,), train_examples=1000,
            ablation_tasks=("mrpc",),
            # within the hour: the merge, the peer loss, the allocation and the budget control
            ablations=("default", "no-merge", "no-peer-loss", "uniform", "lagrangian"),
            # lr_lambda: the learned multipliers' rate (variant `lagrangian`) for its short search
            prune_options=dict(smp_steps=50, smp_sentences=1600, lr_lambda=50.0)),
    Profile("full", "minilm", ("rte", "mrpc", "stsb", "cola", "sst2", "wnli"), epochs=4,
            teacher_lrs=(2e-5, 5e-5, 1e-4), seeds=(0, 1, 2), sparsities=SWEEP,
            ablation_tasks=("mrpc", "rte"), sweep_tasks=("mrpc", "stsb"),
            hub_tasks=("qnli", "qqp", "mnli"),
            # SST-2's 67k sentences: an epoch of a pruning run is about an hour on one core,
            # so its teacher and every method fine-tune for one epoch, its sweep has two rates,
            # and a head search (the locator's, L0's tries) stops after 400 steps: 12,800
            # sentences, more than a whole pass over CoLA (267 steps) or MRPC (115)
            task_overrides={"sst2": dict(epochs=1, teacher_lrs=(5e-5, 1e-4),
                                         prune_options=dict(max_steps=400))}),
    Profile("paper", "bert-base-uncased",
            ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"), epochs=4,
            teacher_lrs=(2e-5,)),
]}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
