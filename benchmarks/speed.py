"""Inference speed of pruned models against the dense one, side by side in one process.

    python benchmarks/speed.py [--model minilm] [--sparsity 0.25 0.5 0.58 0.75]
                               [--batch-size 1 32] [--seq-len 128] [--device cpu|cuda]

For each sparsity, heads are removed by a seeded random mask with the budget's count
(speed depends only on how many heads each layer keeps), then the dense and the pruned
model are timed alternately (warm-up first, then repeated runs) on the same random
input, and the medians, their ratio and the FLOPs-predicted ratio are printed and
written to results/benchmark.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from peerprune import heads
from peerprune.baselines import random_mask
from peerprune.models import model_for_task
from peerprune.results import atomic_write_text


def timed(model, inputs, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model(**inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


@torch.inference_mode()
def compare(dense, pruned, batch_size: int, seq_len: int, device, warmup: int, repeats: int):
    """Median milliseconds of dense and pruned on one input, measured alternately."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, dense.config.vocab_size, (batch_size, seq_len), generator=g)
    inputs = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
    for _ in range(warmup):
        timed(dense, inputs, device)
        timed(pruned, inputs, device)
    d, p = [], []
    for _ in range(repeats):
        d.append(timed(dense, inputs, device))
        p.append(timed(pruned, inputs, device))
    return statistics.median(d), statistics.median(p)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--sparsity", nargs="+", type=float, default=[0.25, 0.5, 0.58, 0.75])
    ap.add_argument("--batch-size", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="results/benchmark.json")
    args = ap.parse_args(argv)
    for s in args.sparsity:
        if not 0 <= s < 1:
            ap.error(f"--sparsity {s} is outside [0, 1)")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        ap.error(f"--device {args.device!r} is not a torch device (try cpu or cuda)")
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no CUDA device is visible here; use --device cpu")
    dense = model_for_task(args.model, "mrpc").to(device).eval()
    n_layers, n_heads = heads.num_layers_heads(dense)
    rows = []
    for s in args.sparsity:
        keep = max(1, round(n_layers * n_heads * (1 - s)))
        pruned = heads.prune(copy.deepcopy(dense), random_mask(n_layers, n_heads, keep, seed=0))
        flops_speedup = heads.flops(dense, args.seq_len) / heads.flops(pruned, args.seq_len)
        for b in args.batch_size:
            d_ms, p_ms = compare(dense, pruned, b, args.seq_len, device, args.warmup, args.repeats)
            row = {"sparsity": s, "heads_kept": keep, "heads_per_layer": heads.heads_per_layer(pruned),
                   "batch_size": b, "seq_len": args.seq_len, "device": device.type,
                   "threads": torch.get_num_threads(), "dense_ms": round(d_ms, 2),
                   "pruned_ms": round(p_ms, 2), "speedup": round(d_ms / p_ms, 3),
                   "flops_speedup": round(flops_speedup, 3),
                   "share_of_predicted": round((d_ms / p_ms) / flops_speedup, 3)}
            rows.append(row)
            print(f"sparsity {s:.2f} ({keep} heads) batch {b}: dense {d_ms:.1f} ms, pruned "
                  f"{p_ms:.1f} ms, speed-up {row['speedup']:.2f} (FLOPs predict "
                  f"{flops_speedup:.2f}, {row['share_of_predicted']:.0%} of it)", flush=True)
    path = Path(args.out)
    atomic_write_text(path, json.dumps(rows, indent=2) + "\n")
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
