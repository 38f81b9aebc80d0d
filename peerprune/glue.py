"""GLUE: the nine tasks, read from the Hugging Face Hub or from a local folder.

Both sources give the same columns (the Hub's names) and the same label ids, so
everything downstream reads one format. The local folder has the layout that the
standard GLUE download script writes (`<Task>/train.tsv`, `dev.tsv`, ...).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets

HUB_DATASET = "nyu-mll/glue"
GLUE_DIR_ENV = "PEERPRUNE_GLUE_DIR"


@dataclass(frozen=True)
class GlueTask:
    """What a task is: its inputs, its labels, how it is scored, how it is stored."""

    name: str
    text_columns: tuple[str, ...]  # one sentence or a pair, by the Hub's column names
    num_labels: int  # 1 means regression (STS-B)
    metrics: tuple[str, ...]
    primary_metric: str
    eval_splits: tuple[str, ...]  # the Hub's split names; the first is the main one
    folder: str  # the folder name in the GLUE download layout
    # Local layout: Hub column -> column name in the file's header (or index if no header).
    local_columns: dict = field(default_factory=dict)
    local_label_column: str | int = "label"
    local_label_ids: dict | None = None  # file label text -> id; None for regression
    local_header: bool = True
    label_names: tuple[str, ...] = ()  # the Hub's class names, in id order
    digest: str = ""  # your own data (`csv_task`): a hash of its files; "" for GLUE

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    def local_file(self, split: str) -> str:
        if split == "train":
            return "train.tsv"
        return {"validation": "dev.tsv", "validation_matched": "dev_matched.tsv",
                "validation_mismatched": "dev_mismatched.tsv"}[split]


def _pair(a, b):
    return {a: a, b: b}


TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", ("sentence",), 2, ("matthews_correlation", "accuracy"),
             "matthews_correlation", ("validation",), "CoLA",
             local_columns={"sentence": 3}, local_label_column=1, local_header=False,
             local_label_ids={"0": 0, "1": 1}, label_names=("unacceptable", "acceptable")),
    GlueTask("sst2", ("sentence",), 2, ("accuracy",), "accuracy", ("validation",), "SST-2",
             local_columns={"sentence": "sentence"},
             local_label_ids={"0": 0, "1": 1}, label_names=("negative", "positive")),
    GlueTask("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), "f1",
             ("validation",), "MRPC",
             local_columns={"sentence1": "#1 String", "sentence2": "#2 String"},
             local_label_column="Quality",
             local_label_ids={"0": 0, "1": 1}, label_names=("not_equivalent", "equivalent")),
    GlueTask("stsb", ("sentence1", "sentence2"), 1, ("spearmanr", "pearson"), "spearmanr",
             ("validation",), "STS-B", local_columns=_pair("sentence1", "sentence2"),
             local_label_column="score"),
    GlueTask("qqp", ("question1", "question2"), 2, ("accuracy", "f1"), "accuracy",
             ("validation",), "QQP", local_columns=_pair("question1", "question2"),
             local_label_column="is_duplicate",
             local_label_ids={"0": 0, "1": 1}, label_names=("not_duplicate", "duplicate")),
    GlueTask("mnli", ("premise", "hypothesis"), 3, ("accuracy",), "accuracy",
             ("validation_matched", "validation_mismatched"), "MNLI",
             local_columns={"premise": "sentence1", "hypothesis": "sentence2"},
             local_label_column="gold_label",
             local_label_ids={"entailment": 0, "neutral": 1, "contradiction": 2},
             label_names=("entailment", "neutral", "contradiction")),
    GlueTask("qnli", ("question", "sentence"), 2, ("accuracy",), "accuracy",
             ("validation",), "QNLI", local_columns=_pair("question", "sentence"),
             local_label_ids={"entailment": 0, "not_entailment": 1},
             label_names=("entailment", "not_entailment")),
    GlueTask("rte", ("sentence1", "sentence2"), 2, ("accuracy",), "accuracy",
             ("validation",), "RTE", local_columns=_pair("sentence1", "sentence2"),
             local_label_ids={"entailment": 0, "not_entailment": 1},
             label_names=("entailment", "not_entailment")),
    GlueTask("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), "accuracy",
             ("validation",), "WNLI", local_columns=_pair("sentence1", "sentence2"),
             local_label_ids={"0": 0, "1": 1}, label_names=("not_entailment", "entailment")),
]}


CSV_DATA: dict[str, datasets.DatasetDict] = {}  # the splits of each task made by csv_task


def csv_task(train: str | os.PathLike, dev: str | os.PathLike | None = None,
             name: str | None = None, dev_share: float = 0.1) -> GlueTask:
    """Your own data as a task: a CSV file with a `text` column (and `text_pair` for
    sentence pairs) and a `label` column. Registered under `name` (default: the file's
    stem), it is then used as a GLUE task's name is: `--task NAME`, `PruneConfig(task=NAME)`.

    Labels that are all whole numbers are the model's label ids; other numbers make a
    regression (Spearman, Pearson); text labels get ids in sorted order, and their names go
    into the pruned model's config. Without `dev`, a seeded `dev_share` of the rows is held
    out to score on. The task's `digest` (of the files) enters every run's identity."""
    import hashlib
    import re
    import pandas as pd
    files = [Path(train)] + ([Path(dev)] if dev is not None else [])
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"CSV file not found: {f}")
    name = re.sub(r"[^a-z0-9_]+", "_", (name or files[0].stem).lower()).strip("_") or "csv"
    if name in TASKS and not TASKS[name].digest:
        raise ValueError(f"task name {name!r} is a GLUE task's; give your data another name")
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files]
    for f, frame in zip(files, frames):
        missing = [c for c in ("text", "label") if c not in frame.columns]
        if missing or len(frame) == 0:
            raise ValueError(f"{f}: needs columns text, label (and text_pair for pairs) and at "
                             f"least one row; found columns {list(frame.columns)}, "
                             f"{len(frame)} rows")
    text_columns = ("text", "text_pair") if "text_pair" in frames[0].columns else ("text",)
    num_labels, names, feature, metrics, to_id = _csv_labels(
        pd.concat([fr["label"] for fr in frames]))
    features = datasets.Features({**{c: datasets.Value("string") for c in text_columns},
                                  "label": feature, "idx": datasets.Value("int32")})

    def as_dataset(frame):
        return datasets.Dataset.from_dict(
            {**{c: frame[c].tolist() for c in text_columns},
             "label": [to_id(v) for v in frame["label"]], "idx": list(range(len(frame)))},
            features=features)
    splits = [as_dataset(fr) for fr in frames]
    if len(splits) == 1:
        if len(splits[0]) < 2:
            raise ValueError(f"{files[0]}: one row cannot be split into train and dev")
        held = splits[0].train_test_split(test_size=dev_share, seed=0)
        splits = [held["train"], held["test"]]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    task = GlueTask(name, text_columns, num_labels, metrics, metrics[0], ("validation",), name,
                    label_names=names, digest=digest)
    TASKS[name] = task
    CSV_DATA[name] = datasets.DatasetDict({"train": splits[0], "validation": splits[1]})
    return task


def _csv_labels(labels):
    """What a CSV's label column makes of a task: (label count, label names, the label
    feature, metrics with the primary first, text -> id)."""
    import pandas as pd
    numbers = pd.to_numeric(labels, errors="coerce")
    if numbers.notna().all() and not (numbers == numbers.round()).all():  # scores
        return 1, (), datasets.Value("float32"), ("spearmanr", "pearson"), float
    if numbers.notna().all():  # label ids
        n = int(numbers.max()) + 1
        names, feature, to_id = (), datasets.ClassLabel(num_classes=n), (lambda v: int(float(v)))
    else:  # label names
        names = tuple(sorted(labels.unique()))
        n, feature, to_id = len(names), datasets.ClassLabel(names=list(names)), names.index
    return n, names, feature, ("accuracy", "f1") if n == 2 else ("accuracy",), to_id


def get_task(name: str) -> GlueTask:
    """The task spec, or a ValueError that lists the valid names."""
    key = str(name).lower().replace("-", "")
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; valid tasks: {', '.join(TASKS)} (your "
                         "own data: a CSV file, see csv_task)")
    return TASKS[key]


def default_glue_dir() -> str | None:
    """The local GLUE folder named by $PEERPRUNE_GLUE_DIR, or None (then the Hub is used)."""
    return os.environ.get(GLUE_DIR_ENV) or None


def local_tasks(glue_dir: str | os.PathLike) -> list[str]:
    """The tasks whose training file is present in a local GLUE folder."""
    root = Path(glue_dir)
    return [t.name for t in TASKS.values() if (root / t.folder / "train.tsv").is_file()]


def _parse_value(task: GlueTask, text: str, path: Path, line: int):
    if task.is_regression:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{path}, line {line}: score {text!r} is not a number") from None
    if text not in task.local_label_ids:
        raise ValueError(f"{path}, line {line}: label {text!r} is not one of "
                         f"{sorted(task.local_label_ids)}")
    return task.local_label_ids[text]


def read_local_split(task: GlueTask, glue_dir: str | os.PathLike, split: str) -> datasets.Dataset:
    """Read one split of a task from a GLUE-layout folder into a `datasets.Dataset`.

    Quoting is off (every quote is literal text), a UTF-8 byte-order mark is skipped,
    and a row with a missing column or an unknown label raises an error that names the
    file and the line: nothing is dropped silently.
    """
    path = Path(glue_dir) / task.folder / task.local_file(split)
    if not path.is_file():
        have = local_tasks(glue_dir) if Path(glue_dir).is_dir() else []
        raise FileNotFoundError(
            f"GLUE file not found: {path}. Tasks with training data in {glue_dir}: "
            f"{', '.join(have) or 'none'}")
    columns = {c: [] for c in task.text_columns}
    labels = []
    wanted = [*task.local_columns.values(), task.local_label_column]
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if task.local_header:  # columns by name
            header = next(rows, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty (expected a header row)")
            missing = [w for w in wanted if w not in header]
            if missing:
                raise ValueError(f"{path}, line 1: header {header} lacks columns {missing}")
            position = {name: header.index(name) for name in wanted}
            need = len(header)
        else:  # columns by index (CoLA)
            position = {i: i for i in wanted}
            need = 1 + max(wanted)
        for line, row in enumerate(rows, start=2 if task.local_header else 1):
            if not row:  # a blank line holds no example
                continue
            if len(row) < need:
                raise ValueError(f"{path}, line {line}: expected {need} tab-separated columns, "
                                 f"found {len(row)}")
            for hub_name, col in task.local_columns.items():
                columns[hub_name].append(row[position[col]])
            labels.append(_parse_value(task, row[position[task.local_label_column]], path, line))
    n = len(labels)
    if n == 0:
        raise ValueError(f"{path}: no examples (the file has no row after its header)")
    features = datasets.Features({
        **{c: datasets.Value("string") for c in task.text_columns},
        "label": datasets.Value("float32") if task.is_regression else datasets.ClassLabel(
            names=list(task.label_names)),
        "idx": datasets.Value("int32"),
    })
    return datasets.Dataset.from_dict({**columns, "label": labels, "idx": list(range(n))},
                                      features=features)


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face Hub answers for the GLUE dataset (never asked when
    HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)."""
    if any(os.environ.get(v, "0") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    import urllib.request
    try:
        with urllib.request.urlopen(f"https://huggingface.co/api/datasets/{HUB_DATASET}",
                                    timeout=timeout):
            return True
    except Exception:  # no network, DNS, proxy refusal, timeout: all mean "not reachable"
        return False


def has_local(task: str, glue_dir, splits: tuple[str, ...] | None = None) -> bool:
    """Whether a local GLUE folder holds these splits of the task (default: all of them)."""
    spec = get_task(task)
    splits = splits or ("train", *spec.eval_splits)
    return all((Path(glue_dir) / spec.folder / spec.local_file(s)).is_file() for s in splits)


def load_glue(task: str, glue_dir: str | os.PathLike | None = None,
              splits: tuple[str, ...] | None = None) -> datasets.DatasetDict:
    """Load a GLUE task's train and evaluation splits.

    `glue_dir` (or $PEERPRUNE_GLUE_DIR) selects a local folder in the GLUE download
    layout; without one, the data comes from the Hub (`nyu-mll/glue`). A task the local
    folder lacks (QNLI's training split, QQP, MNLI in ../shared/glue) comes from the Hub
    when the Hub is reachable; otherwise the error names the missing file.
    """
    spec = get_task(task)
    splits = splits or ("train", *spec.eval_splits)
    if spec.digest:  # your own data (csv_task)
        return datasets.DatasetDict({s: CSV_DATA[spec.name][s] for s in splits})
    glue_dir = glue_dir if glue_dir is not None else default_glue_dir()
    if glue_dir is not None and not has_local(task, glue_dir, splits) and hub_reachable():
        glue_dir = None
    if glue_dir is None:
        hub = datasets.load_dataset(HUB_DATASET, spec.name)
        return datasets.DatasetDict({s: hub[s] for s in splits})
    return datasets.DatasetDict({s: read_local_split(spec, glue_dir, s) for s in splits})


def subsample(dataset: datasets.Dataset, n: int | None, seed: int = 0) -> datasets.Dataset:
    """A seeded random subset of n rows (all rows when n is None or too large)."""
    if n is None or n >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(n))


def tokenize(dataset: datasets.Dataset, tokenizer, task: str, max_length: int = 128):
    """Token ids for a split, unpadded: padding happens per batch (see `collator`)."""
    spec = get_task(task)

    def encode(batch):
        texts = [batch[c] for c in spec.text_columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    keep = {"label"}
    drop = [c for c in dataset.column_names if c not in keep]
    out = dataset.map(encode, batched=True, remove_columns=drop, desc=f"tokenize {spec.name}")
    return out.rename_column("label", "labels")


def collator(tokenizer):
    """Dynamic padding: each batch is padded to its own longest sequence."""
    from transformers import DataCollatorWithPadding
    return DataCollatorWithPadding(tokenizer)


CACHE_DIR_ENV = "PEERPRUNE_CACHE_DIR"


def _cache_key(task, tokenizer, glue_dir, **sizes) -> str:
    """What the tokenised splits depend on: task, source files, tokenizer, sizes, seed."""
    from .results import config_hash
    spec = get_task(task)
    source = spec.digest or "hub"  # your own data: its files' hash
    if not spec.digest and glue_dir is not None and has_local(task, glue_dir):
        folder = Path(glue_dir) / spec.folder
        source = [(p.name, p.stat().st_size, int(p.stat().st_mtime))
                  for p in sorted(folder.glob("*.tsv"))]
    key = {"task": spec.name, "source": source, "tokenizer": tokenizer.name_or_path,
           "vocab": len(tokenizer), **sizes}
    return config_hash(key)


def task_data(task: str, tokenizer, *, glue_dir=None, max_length: int = 128,
              train_examples: int | None = None, eval_examples: int | None = None,
              seed: int = 0, cache_dir=None) -> tuple[datasets.Dataset, dict[str, datasets.Dataset]]:
    """Tokenised training split (seeded subsample if asked) and every evaluation split.

    Tokenised splits are cached on disk (`cache_dir`, else $PEERPRUNE_CACHE_DIR, else
    checkpoints/cache) under a key of everything they depend on, so the many runs of one
    task tokenise it once."""
    spec = get_task(task)
    glue_dir = glue_dir if glue_dir is not None else default_glue_dir()
    root = Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or "checkpoints/cache")
    key = _cache_key(task, tokenizer, glue_dir, max_length=max_length,
                     train_examples=train_examples, eval_examples=eval_examples, seed=seed)
    path = root / "tokenized" / f"{spec.name}-{key}"
    if (path / "dataset_dict.json").is_file():
        cached = datasets.load_from_disk(str(path))
        return cached["train"], {s: cached[s] for s in spec.eval_splits}
    raw = load_glue(task, glue_dir)
    train = tokenize(subsample(raw["train"], train_examples, seed), tokenizer, task, max_length)
    evals = {s: tokenize(subsample(raw[s], eval_examples, seed), tokenizer, task, max_length)
             for s in spec.eval_splits}
    from .results import atomic_dir, is_main_process
    if is_main_process():
        with atomic_dir(path) as tmp:
            datasets.DatasetDict({"train": train, **evals}).save_to_disk(str(tmp))
    return train, evals
