"""A run's head choice (its mask), computed once and reused by the runs that share it.

The mask depends only on what happens before pruning: the teacher, the budget, the seed and
the method's own options. The ablations of the method (no merge, no peer loss, joint,
init-locator) and each baseline with and without KD differ only after that point, so they
share one choice; the locator (or L0's penalty search, or HISP's rescoring) runs once per
choice and the others read it back. Fine-tuning reseeds itself, so a reused choice gives
the very numbers a recomputed one would.

    checkpoints/<profile>/<model>/<task>/choice-<method>-<hash>/
        choice.json   the mask and what the run records about the choice
        located/      apd only: the locator's trained weights (for init "locator")
    checkpoints/<profile>/<model>/<task>/l0-tries-<hash>/
        lambda-<penalty>.pt   one try of L0's penalty search: its gates and open count

L0's tries go one level deeper: with a fixed penalty the gates never see the budget, so a
try with a given penalty is the same at every sparsity, and a sweep of sparsities (same
teacher, seed and options) runs each penalty once.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .models import load_model, save_model
from .results import atomic_write_text, config_hash, is_main_process, with_processes


def _key(choice_options: dict, keep, teacher_hash: str, train: dict, train_examples) -> str:
    """`choice_options`: a run's identity without the options that act after the choice
    (`prune.choice_options`). A data-parallel search is another search (`with_processes`)."""
    return config_hash(with_processes({
        "prune": choice_options, "keep": keep, "teacher": teacher_hash,
        "train_examples": train_examples,
        "train": {k: train[k] for k in ("lr", "batch_size", "max_length")}}))


def choice_dir(root, choice_options: dict, keep: int, teacher_hash: str, train: dict,
               train_examples) -> Path:
    """Where the choice of a run with these options is kept."""
    key = _key(choice_options, keep, teacher_hash, train, train_examples)
    return Path(root) / f"choice-{choice_options['method']}-{key}"


def l0_tries_dir(root, choice_options: dict, teacher_hash: str, train: dict,
                 train_examples) -> Path:
    """Where L0's penalty tries are kept: the choice's key without the budget."""
    options = {k: v for k, v in choice_options.items() if k not in ("sparsity", "keep")}
    return Path(root) / f"l0-tries-{_key(options, None, teacher_hash, train, train_examples)}"


def save_choice(path: Path, mask: torch.Tensor, extra: dict, located=None, tokenizer=None) -> None:
    if not is_main_process():
        return
    if located is not None:
        save_model(located, tokenizer, path / "located")
    atomic_write_text(path / "choice.json", json.dumps({"mask": mask.tolist(), "extra": extra}))


def load_choice(path: Path, with_located: bool = False):
    """(mask, extra, located model or None), or None when nothing usable is saved."""
    if not (path / "choice.json").is_file():
        return None
    if with_located and not (path / "located" / "config.json").is_file():
        return None
    saved = json.loads((path / "choice.json").read_text())
    located = load_model(str(path / "located")) if with_located else None
    return torch.tensor(saved["mask"]), saved["extra"], located
