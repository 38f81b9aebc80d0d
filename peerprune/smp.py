"""SMP baseline (Zhang et al. 2021, "Know What You Don't Need: Single-Shot Meta-Pruning
for Attention Heads"), as docs/method.md describes it.

A small network scores each head from its attention map. It is meta-trained on the
*pretrained* model with sentences of *other* tasks: masks are sampled (Gumbel top-k per
layer, straight-through) from its scores, and the loss keeps the masked model's
distribution of sentence-representation similarities close to the full model's. It is
then applied once to the target task's sentences; the same number of heads is kept in
every layer, and the pruned pretrained model is fine-tuned on the task.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from . import heads
from .glue import TASKS, default_glue_dir, get_task, load_glue, local_tasks, subsample
from .locator import uniform_counts
from .results import atomic_file, config_hash
from .train import make_loader, progress, seed_everything, to_device


class AttentionMapScorer(nn.Module):
    """Score of a head from its attention map: the map (real tokens only) average-pooled
    to pool x pool, then a two-layer MLP. Shared by every head of every layer."""

    def __init__(self, pool: int = 8, hidden: int = 32):
        super().__init__()
        self.pool = pool
        self.mlp = nn.Sequential(nn.Linear(pool * pool, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, attentions, attention_mask) -> torch.Tensor:
        """(L, H) head scores averaged over the batch, from the model's attention maps
        (a tuple of L tensors (B, H, T, T))."""
        lengths = attention_mask.sum(1).tolist()
        scores = []
        for layer in attentions:
            per_example = []
            for b, n in enumerate(lengths):
                maps = layer[b, :, :n, :n]  # (H, n, n)
                pooled = F.adaptive_avg_pool2d(maps, self.pool) * n  # about 1 per cell
                per_example.append(self.mlp(pooled.flatten(1)).squeeze(-1))
            scores.append(torch.stack(per_example).mean(0))
        return torch.stack(scores)


def gumbel_topk_mask(scores: torch.Tensor, counts: list[int], tau: float = 0.5,
                     noise: bool = True) -> torch.Tensor:
    """Per layer, keep counts[l] heads of the Gumbel-perturbed scores: a hard 0/1 mask in
    the forward pass, a sigmoid relaxation around the k-th value in the backward pass."""
    g = -torch.log(-torch.log(torch.rand_like(scores).clamp(1e-9, 1 - 1e-9))) if noise else 0
    z = scores + g
    rows = []
    for l, k in enumerate(counts):
        top = z[l].topk(min(k + 1, z.shape[1])).values
        threshold = (top[k - 1] + top[k]) / 2 if k < z.shape[1] else top[-1] - 1
        soft = torch.sigmoid((z[l] - threshold) / tau)
        hard = torch.zeros_like(soft)
        hard[z[l].topk(k).indices] = 1.0
        rows.append(hard + soft - soft.detach())
    return torch.stack(rows)


def sentence_representations(hidden, attention_mask) -> torch.Tensor:
    """Mean of the last hidden states over the real tokens (MiniLM's own pooling)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1)


def similarity_kl(full_reps, masked_reps, temperature: float = 0.1) -> torch.Tensor:
    """KL between each sentence's softmax distribution of cosine similarities to the other
    sentences of the batch: full model (target) against masked model."""
    def log_probs(reps):
        r = F.normalize(reps, dim=-1)
        sim = r @ r.T / temperature
        sim = sim.masked_fill(torch.eye(len(r), dtype=torch.bool, device=r.device), -1e9)
        return F.log_softmax(sim, dim=-1)
    return F.kl_div(log_probs(masked_reps), log_probs(full_reps), log_target=True,
                    reduction="batchmean")


@dataclass
class SMPConfig:
    steps: int = 200  # meta-training steps
    batch_size: int = 32
    lr: float = 1e-3
    sentences: int = 4000  # meta-training sentences, drawn from the other tasks
    apply_examples: int = 512  # target-task examples the scorer is applied to
    max_length: int = 128
    tau: float = 0.5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def meta_sentences(target: str, tokenizer, n: int, glue_dir=None, max_length: int = 128,
                   seed: int = 0) -> datasets.Dataset:
    """Tokenised sentences (first text column) of the tasks other than `target`."""
    glue_dir = glue_dir if glue_dir is not None else default_glue_dir()
    available = local_tasks(glue_dir) if glue_dir else list(TASKS)
    others = [t for t in available if t != get_task(target).name]
    if not others:
        raise ValueError(f"SMP needs sentences of tasks other than {target!r}; none found")
    per_task = max(1, n // len(others))
    parts = []
    for task in others:
        train = load_glue(task, glue_dir, splits=("train",))["train"]
        col = get_task(task).text_columns[0]
        parts.append(subsample(train, per_task, seed).select_columns([col]).rename_column(col, "text"))
    text = datasets.concatenate_datasets(parts)
    return text.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
                    batched=True, remove_columns=["text"])


def train_scorer(pretrained, sentences, tokenizer, counts: list[int], config: SMPConfig):
    """Meta-train an `AttentionMapScorer` on the frozen pretrained model."""
    seed_everything(config.seed)
    device = next(pretrained.parameters()).device
    pretrained.eval()
    for p in pretrained.parameters():
        p.requires_grad_(False)
    encoder = pretrained.base_model
    scorer = AttentionMapScorer().to(device)
    opt = torch.optim.Adam(scorer.parameters(), lr=config.lr)
    loader = make_loader(sentences, tokenizer, config.batch_size, True, config.seed)
    log, step = [], 0
    bar = progress(config.steps, "SMP meta-training", mininterval=10)
    while step < config.steps:
        for batch in loader:
            if step >= config.steps:
                break
            batch = to_device(batch, device)
            with torch.no_grad():
                full = encoder(**batch, output_attentions=True)
            full_reps = sentence_representations(full.last_hidden_state, batch["attention_mask"])
            mask = gumbel_topk_mask(scorer(full.attentions, batch["attention_mask"]), counts,
                                    config.tau)
            masked = heads.masked(encoder, mask, **batch).last_hidden_state
            loss = similarity_kl(full_reps, sentence_representations(masked, batch["attention_mask"]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            log.append(loss.item())
            step += 1
            bar.update(1)
    bar.close()
    for p in pretrained.parameters():
        p.requires_grad_(True)
    return scorer.eval(), log


@torch.no_grad()
def smp_mask(scorer, pretrained, data, tokenizer, counts: list[int]) -> torch.Tensor:
    """Apply the trained scorer once to the target task's examples: per layer, the
    counts[l] heads with the highest mean score."""
    device = next(pretrained.parameters()).device
    total, n = 0.0, 0
    for batch in make_loader(data, tokenizer, 32, False):
        batch = to_device(batch, device)
        batch.pop("labels", None)
        out = pretrained.base_model(**batch, output_attentions=True)
        total = total + scorer(out.attentions, batch["attention_mask"]) * len(batch["input_ids"])
        n += len(batch["input_ids"])
    return gumbel_topk_mask(total / n, counts, noise=False).round()


def scorer_path(model_name: str, target: str, counts: list[int], config: SMPConfig,
                root="checkpoints") -> Path:
    h = config_hash({"model": model_name, "target": target, "counts": counts,
                     **config.to_dict()})
    return Path(root) / "smp" / model_name.replace("/", "__") / f"scorer-{target}-{h}.pt"


def smp(pretrained, model_name: str, task: str, train_data, tokenizer, keep: int,
        config: SMPConfig, glue_dir=None, root="checkpoints"):
    """The SMP mask for `task`; the scorer is trained once per configuration and reused
    from disk. Returns the mask and what the run should record."""
    n_layers = pretrained.config.num_hidden_layers
    n_heads = pretrained.config.num_attention_heads
    counts = uniform_counts(keep, n_layers, n_heads)
    path = scorer_path(model_name, task, counts, config, root)
    scorer, log = AttentionMapScorer(), None
    if path.is_file():
        scorer.load_state_dict(torch.load(path))
    else:
        sentences = meta_sentences(task, tokenizer, config.sentences, glue_dir,
                                   config.max_length, config.seed)
        scorer, log = train_scorer(pretrained, sentences, tokenizer, counts, config)
        with atomic_file(path) as tmp:
            torch.save(scorer.state_dict(), tmp)
    data = subsample(train_data, config.apply_examples, config.seed)
    mask = smp_mask(scorer.eval(), pretrained, data, tokenizer, counts)
    thin = log[:: max(1, len(log) // 50)] if log else None
    return mask, {"smp_scorer": str(path), "smp_meta_loss": thin}
