"""Reference solutions of notebook 02's exercises (for teachers; the tests check them)."""
import torch


def head_cosine(c: torch.Tensor, a: int, b: int) -> float:
    """02.1: cosine of heads a and b, contributions flattened over tokens and dimensions."""
    x, y = c[:, a].flatten(), c[:, b].flatten()
    return float(x @ y / (x.norm() * y.norm()))


def best_layer(stats) -> int:
    """02.2: read off the R² figure; computed here for the check."""
    from peerprune.anatomy import peer_r2
    means = [float(peer_r2(s).mean()) for s in stats]
    return max(range(len(means)), key=means.__getitem__)
