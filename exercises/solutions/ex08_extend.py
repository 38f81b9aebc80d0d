"""Reference solutions of notebook 08's exercises (for teachers; the tests check them)."""
import torch

from peerprune import heads


def qk_norm_scores(teacher) -> torch.Tensor:
    """08.1: the Frobenius norm of each head's query and key rows."""
    n_layers, n_heads = heads.num_layers_heads(teacher)
    d = teacher.config.hidden_size // n_heads
    rows = []
    for l in range(n_layers):
        attn = heads.attention(teacher, l).self
        q = attn.query.weight.detach().reshape(n_heads, d, -1)
        k = attn.key.weight.detach().reshape(n_heads, d, -1)
        rows.append((q.pow(2).sum((1, 2)) + k.pow(2).sum((1, 2))).sqrt())
    return torch.stack(rows)


# 08.2: which is higher depends on the task, the budget and the seed; the check runs both
# and says which. This is the answer on the smoke profile's tiny model.
PREDICTION = "below"
