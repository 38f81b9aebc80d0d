"""How the locator's multiplier rate shapes the search: the evidence behind its default.

    python benchmarks/locator_probe.py [--profile full] [--task mrpc] [--lr-lambda 50 10 3]

Runs only the automatic locator (no merge, no final fine-tuning) on the profile's teacher,
once per multiplier rate, everything else as the profile's runs of the method, and reports for
each rate:
  - how the expected head count E follows the budget K_t: the lowest E after K_t reaches K*
    (an overshoot below K*), E at the end, and the mean |E - K_t| / N over the run;
  - what the chosen mask is worth before any recovery: the teacher's dev score with the
    pruned heads masked out, and the located student's dev score under the same mask;
  - how many of the kept heads each rate shares with the first rate's mask.
Writes results/<profile>/locator_probe/<task>.json (one row per rate; finished rates are
reused).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from peerprune.glue import get_task, task_data
from peerprune.heads import num_layers_heads
from peerprune.locator import locate
from peerprune.metrics import primary_score
from peerprune.profiles import get_profile
from peerprune.results import RESULTS_DIR, atomic_write_text
from peerprune.teacher import load_teacher
from peerprune.train import evaluate, make_loader


def probe(profile: str, task: str, lr_lambda: float, sparsity: float, seed: int = 0) -> dict:
    p = get_profile(profile)
    run = p.prune_config(task, sparsity=sparsity, seed=seed, lr_lambda=lr_lambda)
    teacher, tokenizer, t_result = load_teacher(task, profile, 0, p.model)
    n_layers, n_heads = num_layers_heads(teacher)
    n = n_layers * n_heads
    keep = run.budget(n)
    train, evals = task_data(task, tokenizer, max_length=p.max_length,
                             train_examples=p.train_examples, eval_examples=p.eval_examples, seed=0)
    dev = make_loader(evals[next(iter(evals))], tokenizer, 64, False)
    cfg = run.locator_config(t_result["lr"], p.batch_size)
    student = copy.deepcopy(teacher)
    start = time.perf_counter()
    mask, gates, log = locate(teacher, student, train, tokenizer, keep, cfg)
    reached = [e for e in log if e["k_t"] <= keep + 1e-9]
    return {"task": task, "profile": profile, "sparsity": sparsity, "lr_lambda": lr_lambda,
            "lr_gates": cfg.lr_gates, "keep": keep, "steps": len(log),
            "min_expected_after_budget": round(min(e["expected_heads"] for e in reached), 2),
            "final_expected": round(log[-1]["expected_heads"], 2),
            "mean_abs_gap": round(sum(abs(e["expected_heads"] - e["k_t"]) for e in log) / len(log) / n, 4),
            "masked_teacher_score": primary_score(task, evaluate(teacher, dev, task, head_mask=mask)),
            "located_student_score": primary_score(task, evaluate(student, dev, task, head_mask=mask)),
            "teacher_score": t_result["score"],
            "heads_per_layer": [int(x) for x in mask.sum(1).tolist()],
            "mask": mask.int().tolist(),
            "trajectory": [[e["step"], round(e["expected_heads"], 2), round(e["k_t"], 2)]
                           for e in log],
            "wall_s": round(time.perf_counter() - start, 1)}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--sparsity", type=float, default=0.58)
    ap.add_argument("--lr-lambda", nargs="+", type=float, default=[50.0, 10.0, 3.0])
    args = ap.parse_args(argv)
    try:
        get_profile(args.profile), get_task(args.task)
    except ValueError as e:
        ap.error(str(e))
    if not 0 <= args.sparsity < 1:
        ap.error(f"--sparsity {args.sparsity} is outside [0, 1)")
    path = Path(RESULTS_DIR) / args.profile / "locator_probe" / f"{args.task}.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for rate in args.lr_lambda:
        if any(r["lr_lambda"] == rate and r["sparsity"] == args.sparsity for r in rows):
            continue
        rows.append(probe(args.profile, args.task, rate, args.sparsity))
        atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
    these = [r for r in rows if r["sparsity"] == args.sparsity]
    for r in these:
        r["shared_with_first"] = sum(a and b for x, y in zip(r["mask"], these[0]["mask"])
                                     for a, b in zip(x, y))
        print(f"{r['task']} lr_lambda {r['lr_lambda']:g}: E min {r['min_expected_after_budget']:.1f} "
              f"end {r['final_expected']:.1f} (K* {r['keep']}), mean |E-K_t|/N "
              f"{r['mean_abs_gap']:.3f}; dev {r['masked_teacher_score']:.2f} masked teacher, "
              f"{r['located_student_score']:.2f} located student (teacher {r['teacher_score']:.2f}); "
              f"heads {r['heads_per_layer']}, {r['shared_with_first']} kept heads shared with "
              f"lr_lambda {these[0]['lr_lambda']:g}", flush=True)
    atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
