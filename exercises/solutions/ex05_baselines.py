"""Reference solutions of notebook 05's exercises (for teachers; the tests check them)."""
import torch


def importance(gradients: list[torch.Tensor]) -> torch.Tensor:
    """05.1: the mean over all examples of |dL(x)/dm|; each tensor is (layers, batch, heads)."""
    g = torch.cat(gradients, dim=1)
    return g.abs().mean(dim=1)


def fisher_diagonal(gradients: list[torch.Tensor]) -> torch.Tensor:
    """05.2: the mean over all examples of (dL(x)/dm)^2."""
    g = torch.cat(gradients, dim=1)
    return g.pow(2).mean(dim=1)


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """05.3: the share of a's kept heads that b keeps too."""
    return float((a * b).sum() / a.sum())
