"""Reference solutions of notebook 09's exercises (for teachers; the tests check them)."""
from dataclasses import replace

from peerprune.heads import count_params
from peerprune.prune import run_pruning


def other_method(config, method: str = "kwon"):
    """09.1: the same run with another head choice."""
    return run_pruning(replace(config, method=method))


def removed(teacher, pruned) -> int:
    """09.2: parameters before minus after."""
    return count_params(teacher) - count_params(pruned)
