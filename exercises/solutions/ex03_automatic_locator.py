"""Reference solutions of notebook 03's exercises (for teachers; the tests check them)."""
import torch

from peerprune.locator import OPEN_OFFSET

# 03.1: without cooling (final temperature 1) the gates stay soft: E is on K* but spread
# over more heads than K*, so the search does not end decisive.
FINAL_TEMPERATURE = 1.0
PREDICTION = False


def expected_open(logits: torch.Tensor, shift: float, offset: float = OPEN_OFFSET) -> torch.Tensor:
    """03.2: the expected number of open gates at logits + shift."""
    return torch.sigmoid(logits + shift + offset).sum()


def newton_shift(logits: torch.Tensor, target: float, offset: float, iters: int = 50) -> float:
    """03.3: solve sum sigmoid(logits + c + offset) = target for c by Newton's method,
    starting where the mean gate is open with probability target / n."""
    n = logits.numel()
    c = float(torch.logit(torch.tensor(target / n)) - (logits + offset).mean())
    for _ in range(iters):
        p = torch.sigmoid(logits + c + offset)
        c -= float((p.sum() - target) / (p * (1 - p)).sum().clamp_min(1e-12))
    return c
