"""The dense teacher: the fine-tuned, unpruned model every method starts from.

A teacher run is keyed by its configuration: asking again for the same configuration
reuses the saved checkpoint (`save_pretrained`) and the stored result. For a small model
the paper's learning rate is often too low, so a task's teacher is the best of a
learning-rate sweep on the dev set (`best_teacher`).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from . import heads
from .glue import get_task, task_data
from .metrics import primary_score
from .models import load_tokenizer, model_for_task, save_model
from .profiles import get_profile
from .results import (config_hash, find_result, load_results, result_path,
                      save_result, versions, with_processes)
from .train import TrainConfig, fine_tune, make_loader, evaluate

CHECKPOINTS_DIR = Path("checkpoints")


def teacher_config(task: str, profile: str, lr: float, seed: int = 0, model: str | None = None,
                   epochs: int | None = None) -> dict:
    """Everything that determines a teacher run (and so its hash)."""
    task = get_task(task).name
    p = get_profile(profile).for_task(task)
    train = TrainConfig(lr=lr, batch_size=p.batch_size, epochs=epochs or p.epochs,
                        max_length=p.max_length, seed=seed)
    config = {"task": task, "model": model or p.model, "profile": profile, "method": "dense",
              "train": train.to_dict(), "train_examples": p.train_examples,
              "eval_examples": p.eval_examples}
    return with_processes(config)


def task_checkpoints(profile: str, model: str, task: str, root=None) -> Path:
    """checkpoints/<profile>/<model>/<task>/: every checkpoint and head choice of a task."""
    return Path(root or CHECKPOINTS_DIR) / profile / model.replace("/", "__") / task


def checkpoint_dir(config: dict, root=None) -> Path:
    return task_checkpoints(config["profile"], config["model"], config["task"], root) \
        / f"dense-{config_hash(config)}"


def _variant(lr: float) -> str:
    return f"lr{lr:g}"


def train_teacher(task: str, profile: str = "full", lr: float = 2e-5, seed: int = 0,
                  model: str | None = None, epochs: int | None = None, glue_dir=None,
                  results_root=None, checkpoints_root=None) -> dict:
    """Fine-tune (or reuse) one dense teacher and return its result record."""
    config = teacher_config(task, profile, lr, seed, model, epochs)
    task = config["task"]
    h = config_hash(config)
    ckpt = checkpoint_dir(config, checkpoints_root)
    stub = {"task": task, "model": config["model"], "profile": profile, "method": "dense",
            "distill": "none", "variant": _variant(lr), "target_sparsity": 0.0, "seed": seed}
    done = find_result(h, result_path(stub, results_root))
    if done and (ckpt / "config.json").is_file():
        return done
    p = get_profile(profile).for_task(task)
    train_cfg = TrainConfig(**config["train"])
    tokenizer = load_tokenizer(config["model"])
    train, evals = task_data(task, tokenizer, glue_dir=glue_dir, max_length=train_cfg.max_length,
                             train_examples=p.train_examples, eval_examples=p.eval_examples,
                             seed=seed)
    main_split, *other_splits = evals
    net = model_for_task(config["model"], task, seed=seed)
    start = time.perf_counter()
    resume = ckpt.with_name(ckpt.name + ".resume")  # the last finished epoch, until the end
    history = fine_tune(net, task, train, evals[main_split], tokenizer, train_cfg,
                        desc=f"teacher {task} lr={lr:g}", resume_dir=resume)
    wall = time.perf_counter() - start
    scores = dict(history[-1]["scores"])
    for split in other_splits:
        loader = make_loader(evals[split], tokenizer, train_cfg.eval_batch_size, False)
        scores.update({f"{split}/{k}": v for k, v in evaluate(net, loader, task).items()})
    net.config.finetuning_task = task  # so it is never mistaken for another task's model
    save_model(net, tokenizer, ckpt, peerprune_config=config)
    spec = get_task(task)
    result = {**stub, "sparsity": 0.0, "metric": spec.primary_metric,
              "score": primary_score(task, scores), "scores": scores,
              "heads_per_layer": heads.heads_per_layer(net), "params": heads.count_params(net),
              "flops": heads.flops(net, 128), "wall_s": round(wall, 1), "config_hash": h,
              "lr": lr, "epochs": train_cfg.epochs, "history": history,
              "train_size": len(train), "eval_size": len(evals[main_split]),
              "checkpoint": str(ckpt), "versions": versions()}
    save_result(result, results_root)
    shutil.rmtree(resume, ignore_errors=True)
    return result


def sweep_teacher(task: str, profile: str = "full", lrs=None, seed: int = 0, **kwargs) -> list[dict]:
    """Train a teacher for each learning rate (reusing finished ones); return their results."""
    lrs = lrs or get_profile(profile).for_task(get_task(task).name).teacher_lrs
    return [train_teacher(task, profile, lr, seed, **kwargs) for lr in lrs]


def best_teacher(task: str, profile: str = "full", seed: int = 0, model: str | None = None,
                 results_root=None) -> dict:
    """The dense result with the best dev score for a task (ties: the lower learning rate),
    among those trained for the profile's epochs for that task."""
    task = get_task(task).name
    p = get_profile(profile).for_task(task)
    model = model or p.model
    runs = [r for r in load_results(results_root, task=task, profile=profile, model=model,
                                    method="dense", seed=seed) if r["epochs"] == p.epochs]
    if not runs:
        raise LookupError(f"no dense teacher for task {task!r}, profile {profile!r}, model "
                          f"{model!r}, seed {seed}; train one with `python -m peerprune teacher "
                          f"--task {task} --profile {profile}`")
    return max(runs, key=lambda r: (r["score"], -r["lr"]))


def load_teacher(task: str, profile: str = "full", seed: int = 0, model: str | None = None,
                 glue_dir=None, results_root=None, checkpoints_root=None):
    """The best teacher's model, tokenizer and result. With no teacher yet, the profile's
    learning-rate sweep is run first; a checkpoint that is not on this machine is
    retrained from its configuration (checkpoints are never committed)."""
    from .models import load_model
    try:
        best = best_teacher(task, profile, seed, model, results_root)
    except LookupError:
        sweep_teacher(task, profile, seed=seed, model=model, glue_dir=glue_dir,
                      results_root=results_root, checkpoints_root=checkpoints_root)
        best = best_teacher(task, profile, seed, model, results_root)
    result = train_teacher(task, profile, best["lr"], seed, best["model"], best["epochs"],
                           glue_dir, results_root, checkpoints_root)
    ckpt = result["checkpoint"]
    return load_model(ckpt), load_tokenizer(ckpt), result


def folder_teacher(path: str, task: str, profile: str = "full", glue_dir=None):
    """A fine-tuned model folder (`save_pretrained`) used as the teacher *as it is*: no
    retraining. Returns (model, tokenizer, record) with its dev score on the task and a
    hash of its weights and config, which stands in for a trained teacher's config hash."""
    import hashlib

    from .models import check_model_name, load_model
    check_model_name(path)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"teacher {path!r} is not a folder written by save_pretrained")
    digest = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin"):
            digest.update(f.name.encode())
            digest.update(f.read_bytes())
    p = get_profile(profile).for_task(get_task(task).name)
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder))
    spec = get_task(task)
    have, want = model.config.num_labels, spec.num_labels
    if (have < want) if spec.digest and not spec.label_names else (have != want):
        raise ValueError(f"teacher {path!r} has {have} labels; task {spec.name!r} has {want}")
    named = dict(model.config.label2id or {})
    if spec.digest and spec.label_names and set(named) == set(spec.label_names) and any(
            named[n] != i for i, n in enumerate(spec.label_names)):
        raise ValueError(f"teacher {path!r} numbers its labels {named}; your CSV's text labels "
                         f"get ids in sorted order {dict(zip(spec.label_names, range(want)))}: "
                         "write the model's label ids in the CSV's label column instead")
    _, evals = task_data(spec.name, tokenizer, glue_dir=glue_dir, max_length=p.max_length,
                         eval_examples=p.eval_examples, train_examples=p.train_examples)
    loader = make_loader(evals[next(iter(evals))], tokenizer, 64, False)
    scores = evaluate(model, loader, spec.name)
    record = {"config_hash": digest.hexdigest()[:12], "score": primary_score(spec.name, scores),
              "scores": scores, "lr": None, "checkpoint": str(folder), "as_is": True}
    print(f"teacher: the folder {folder} as it is (not retrained); {spec.name} dev "
          f"{record['score']:.2f}", flush=True)
    return model, tokenizer, record
