"""Reference solutions of notebook 07's exercises (for teachers; the tests check them)."""
import math


def spread(scores):
    """07.1: the mean and the sample standard deviation (n - 1)."""
    n = len(scores)
    mean = sum(scores) / n
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))


def lossless_up_to(rows, task, column="apd (peer)", tolerance=0.5):
    """07.2: walk up the sparsities; stop at the first that falls more than 0.5 short."""
    best = None
    for r in sorted((r for r in rows if r["task"] == task and column in r["scores"]),
                    key=lambda r: r["target_sparsity"]):
        if r["scores"][column][0] < r["teacher"] - tolerance:
            break
        best = r["target_sparsity"]
    return best
