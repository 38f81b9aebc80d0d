"""Run profiles, defined in one place: how big a run is.

  smoke: the tiny random model and a few dozen examples; for the tests.
  quick: MiniLM on the offline GLUE data, subsampled, so that everything fits in an hour.
  full:  MiniLM on the six offline tasks (plus the Hub-only ones where the Hub is reachable),
         the paper's fine-tuning length, a learning-rate sweep for the teacher, 3 seeds.
  paper: bert-base-uncased on all nine tasks with the paper's recipe (GPU and Hub needed).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


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
    extra: dict = field(default_factory=dict)

    def with_(self, **changes) -> "Profile":
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("smoke", "tiny", ("rte",), epochs=1, teacher_lrs=(1e-3,), train_examples=64,
            eval_examples=32, batch_size=16, max_length=64),
    Profile("quick", "minilm", ("mrpc", "stsb"), epochs=2, teacher_lrs=(1e-4,),
            train_examples=1000),
    Profile("full", "minilm", ("rte", "mrpc", "stsb", "cola", "sst2", "wnli"), epochs=4,
            teacher_lrs=(2e-5, 5e-5, 1e-4), seeds=(0, 1, 2)),
    Profile("paper", "bert-base-uncased",
            ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"), epochs=4,
            teacher_lrs=(2e-5,)),
]}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
