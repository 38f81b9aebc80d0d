"""Reference solutions of notebook 00's exercises (for teachers; the tests check them)."""
from collections import Counter

from peerprune.glue import get_task
from peerprune.metrics import glue_scores


def majority_score(raw, task: str) -> float:
    """00.1: always answer the training split's most common label; score it on dev."""
    spec = get_task(task)
    common = Counter(raw["train"]["label"]).most_common(1)[0][0]
    dev = raw[spec.eval_splits[0]]["label"]
    return 100 * glue_scores(task, [common] * len(dev), dev)[spec.primary_metric]


def truncated_share(train, tokenizer, task: str, max_length: int) -> float:
    """00.2: tokenise without truncation and count the examples over max_length."""
    columns = [list(train[c]) for c in get_task(task).text_columns]
    lengths = [len(ids) for ids in tokenizer(*columns)["input_ids"]]
    return sum(n > max_length for n in lengths) / len(lengths)
