"""Fine-tuning and evaluation: a plain PyTorch loop, seeded, with a progress bar.

The defaults are the paper's recipe for the dense teacher (AdamW, lr 2e-5, batch 32,
4 epochs, linear decay to zero, no warm-up, no weight decay, max length 128). A method
changes the objective by passing `loss_fn(model, batch) -> loss`.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .glue import collator
from .heads import masked
from .metrics import compute_metrics, primary_score


@dataclass
class TrainConfig:
    lr: float = 2e-5  # AdamW learning rate (linear decay to 0)
    batch_size: int = 32
    epochs: int = 4
    max_length: int = 128  # tokens; longer inputs are truncated
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0  # share of steps with a linear warm-up
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present, else CPU

    def to_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_loader(dataset, tokenizer, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches of a tokenised split, padded to each batch's longest sequence."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=collator(tokenizer))


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def progress(total: int, desc: str, disable: bool = False, **kwargs):
    """A progress bar: a widget in Jupyter, text in a terminal, and none where TQDM_DISABLE
    is set (run_all.sh sets it: papermill's saved copies would show every bar frozen)."""
    quiet = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return tqdm(total=total, desc=desc, disable=disable or quiet, **kwargs)


@torch.no_grad()
def predict(model, loader, device=None, mask=None):
    """Logits and labels of a whole split, in the split's order; with `mask`, of the model
    with its heads scaled by it (`heads.masked`)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = to_device(batch, device)
        labels.append(batch.pop("labels").cpu())
        out = model(**batch) if mask is None else masked(model, mask.to(device), **batch)
        logits.append(out.logits.float().cpu())
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def evaluate(model, loader, task: str, mask=None) -> dict[str, float]:
    """The task's metrics (percent) on a split (of the masked model, with `mask`)."""
    logits, labels = predict(model, loader, mask=mask)
    return compute_metrics(task, logits, labels)


def default_loss(model, batch):
    return model(**batch).loss


def accelerator_for(config: TrainConfig) -> Accelerator:
    """Hugging Face Accelerate: one process here; data-parallel under `accelerate launch`
    (on CPUs too: `accelerate launch --multi_gpu --num_processes 2 ...` without a GPU)."""
    return Accelerator(cpu=pick_device(config.device).type == "cpu")


def processes_agree(accelerator: Accelerator, model) -> bool:
    """Whether every process holds the same weights (a checksum gathered from each)."""
    if accelerator.num_processes == 1:
        return True
    total = sum(p.detach().double().sum() for p in accelerator.unwrap_model(model).parameters())
    sums = accelerator.gather(total.reshape(1).to(accelerator.device))
    return bool((sums == sums[0]).all())


class EpochCheckpoint:
    """A fine-tuning's state after its last finished epoch, in one file written atomically
    (`epoch.pt` under its folder): the weights, the optimizer, the schedule, the random
    states (Python, NumPy, torch, the data order) and the history so far."""

    def __init__(self, folder):
        self.path = Path(folder) / "epoch.pt"

    def save(self, model, optimizer, scheduler, order, history) -> None:
        from .results import atomic_file
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "order": order.get_state(),
                 "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                 "python": random.getstate(), "history": history,
                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        with atomic_file(self.path) as tmp:
            torch.save(state, tmp)

    def restore(self, model, optimizer, scheduler, order) -> list[dict]:
        """The history so far, with every state put back; [] when nothing is saved."""
        if not self.path.is_file():
            return []
        state = torch.load(self.path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        order.set_state(state["order"])
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        return state["history"]


def _optimiser(model, config: TrainConfig, batches: int, processes: int):
    """AdamW on the trainable weights, and a linear decay over every process's steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = batches * config.epochs
    if processes > 1:
        total = -(-total // processes)
    return optimizer, get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total), total)


def fine_tune(model, task: str, train_data, eval_data, tokenizer, config: TrainConfig,
              loss_fn: Callable = default_loss, desc: str = "fine-tune",
              resume_dir=None) -> list[dict]:
    """Train `model` on a tokenised training split; evaluate after each epoch.

    Returns one record per epoch: epoch, mean training loss, dev scores, primary score,
    seconds, and under data parallelism the process count and whether the processes'
    weights agree. The batch size is global: each of n processes takes batch_size / n.
    With `resume_dir`, each finished epoch is saved there (`EpochCheckpoint`) and a rerun
    continues after the last saved epoch, with the numbers of an uninterrupted run.
    """
    seed_everything(config.seed)
    accelerator = accelerator_for(config)
    per_process = max(1, config.batch_size // accelerator.num_processes)
    train_loader = make_loader(train_data, tokenizer, per_process, True, config.seed)
    order = train_loader.generator  # the data order's random state, saved with each epoch
    eval_loader = make_loader(eval_data, tokenizer, config.eval_batch_size, False)
    optimizer, scheduler = _optimiser(model, config, len(train_loader),
                                      accelerator.num_processes)
    wrapped, optimizer, train_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, scheduler)
    optimizer.zero_grad(set_to_none=True)  # a model trained before (the locator's) may carry grads
    saved = EpochCheckpoint(resume_dir) if resume_dir else None
    history = saved.restore(model, optimizer, scheduler, order) if saved else []
    if history and hasattr(loss_fn, "skip"):
        loss_fn.skip(len(history) * len(train_loader))  # a loss that counts its steps
    bar = progress(len(train_loader) * config.epochs, desc,
               initial=len(train_loader) * len(history),
               mininterval=5 if sys.stderr.isatty() else 60,
               disable=not accelerator.is_local_main_process)
    for epoch in range(len(history) + 1, config.epochs + 1):
        start, losses = time.perf_counter(), []
        wrapped.train()
        for batch in train_loader:
            loss = loss_fn(wrapped, batch)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        scores = evaluate(model, eval_loader, task)  # every process scores the whole dev set
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "scores": scores,
                  "score": primary_score(task, scores), "seconds": time.perf_counter() - start}
        if accelerator.num_processes > 1:
            record.update(processes=accelerator.num_processes,
                          weights_agree=processes_agree(accelerator, wrapped))
        history.append(record)
        if saved and epoch < config.epochs and accelerator.is_main_process:
            saved.save(model, optimizer, scheduler, order, history)
        if accelerator.is_local_main_process:
            bar.write(f"{desc} epoch {epoch}: loss {record['train_loss']:.4f}, "
                      f"{task} dev {record['score']:.2f}")
    bar.close()
    model.eval()
    accelerator.free_memory()
    return history
