"""How the locator's budget control shapes the search: the evidence behind its default.

    python benchmarks/locator_probe.py [--profile full] [--task mrpc] [--sparsity 0.58]
        [--seed 0] [--budget projection lagrangian] [--final-temperature 0.1]
        [--lr-lambda 50 10 3]

Runs only the automatic locator (no merge, no final fine-tuning) on the profile's teacher,
once per setting (each final temperature of the projection, each multiplier rate of the
Lagrangian), everything else as the profile's runs of the method, and reports for each:
  - how the expected head count E follows the budget K_t: the lowest E after K_t reaches K*
    (an overshoot below K*), E at the end, the largest |E - K_t| over the second half;
  - how decisive the gates end: the lowest P(open) of a kept head, the highest of the rest;
  - what the chosen mask is worth before any recovery: the teacher's dev score with the
    pruned heads masked out, and the located student's dev score under the same mask;
  - how many of the kept heads each setting shares with the first setting's mask.
Writes results/<profile>/locator_probe/<task>.json (one row per setting; finished settings
are reused).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from peerprune.glue import get_task, task_data
from peerprune.heads import num_layers_heads
from peerprune.locator import BUDGETS, locate
from peerprune.metrics import primary_score
from peerprune.profiles import get_profile
from peerprune.prune import PruneConfig
from peerprune.report import probe_label, probe_setting
from peerprune.results import RESULTS_DIR, atomic_write_text
from peerprune.teacher import load_teacher
from peerprune.train import evaluate, make_loader


def probe(profile: str, task: str, sparsity: float, seed: int = 0, **options) -> dict:
    """One locator search with `options` (PruneConfig fields) over the profile's run."""
    p = get_profile(profile)
    run = PruneConfig.for_profile(p, task, sparsity=sparsity, seed=seed, **options)
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
    wall = time.perf_counter() - start
    reached = [e for e in log if e["k_t"] <= keep + 1e-9]
    p_open = torch.tensor(log[-1]["open_probability"])
    return {"task": task, "profile": profile, "sparsity": sparsity, "seed": seed,
            "budget": cfg.budget_control, "lr_lambda": cfg.lr_lambda,
            "final_temperature": cfg.final_temperature,
            "lr_gates": cfg.lr_gates, "keep": keep, "steps": len(log),
            "min_expected_after_budget": round(min(e["expected_heads"] for e in reached), 2),
            "final_expected": round(log[-1]["expected_heads"], 2),
            "max_gap_second_half": round(max_gap_second_half(
                [(e["expected_heads"], e["k_t"]) for e in log]), 2),
            "kept_min_open": round(float(p_open[mask > 0].min()), 4),
            "pruned_max_open": round(float(p_open[mask == 0].max()), 4) if (mask == 0).any() else 0.0,
            "mean_abs_gap": round(sum(abs(e["expected_heads"] - e["k_t"]) for e in log) / len(log) / n, 4),
            "masked_teacher_score": primary_score(task, evaluate(teacher, dev, task, mask=mask)),
            "located_student_score": primary_score(task, evaluate(student, dev, task, mask=mask)),
            "teacher_score": t_result["score"],
            "heads_per_layer": [int(x) for x in mask.sum(1).tolist()],
            "mask": mask.int().tolist(),
            "trajectory": [[e["step"], round(e["expected_heads"], 2), round(e["k_t"], 2)]
                           for e in log],
            "wall_s": round(wall, 1)}


def max_gap_second_half(pairs: list[tuple[float, float]]) -> float:
    """The largest |E - K_t| over the second half of a search's (E, K_t) steps."""
    return max(abs(e - k) for e, k in pairs[len(pairs) // 2:])


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="full", help="run profile (default: full)")
    ap.add_argument("--task", default="mrpc", help="GLUE task (default: mrpc)")
    ap.add_argument("--sparsity", type=float, default=0.58, help="share of heads removed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", nargs="+", default=["projection"], choices=BUDGETS,
                    help="budget controls to probe (default: projection)")
    ap.add_argument("--final-temperature", nargs="+", type=float, default=[0.1],
                    help="projection: the logits' final temperatures to probe")
    ap.add_argument("--lr-lambda", nargs="+", type=float, default=[50.0, 10.0, 3.0],
                    help="lagrangian: the multiplier rates to probe")
    args = ap.parse_args(argv)
    try:
        get_profile(args.profile), get_task(args.task)
    except ValueError as e:
        ap.error(str(e))
    if not 0 <= args.sparsity < 1:
        ap.error(f"--sparsity {args.sparsity} is outside [0, 1)")
    settings = [{"budget": b, **({"final_temperature": t} if b == "projection" else {"lr_lambda": r})}
                for b in args.budget
                for t, r in ([(t, None) for t in args.final_temperature] if b == "projection"
                             else [(None, r) for r in args.lr_lambda])]
    path = Path(RESULTS_DIR) / args.profile / "locator_probe" / f"{args.task}.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for setting in settings:
        wanted = {"sparsity": args.sparsity, "seed": args.seed, **setting}
        if any(probe_setting(r) == wanted for r in rows):
            continue
        knob = {k: v for k, v in setting.items() if k != "budget"}
        rows.append(probe(args.profile, args.task, args.sparsity, args.seed,
                          budget_control=setting["budget"], **knob))
        atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
    these = [r for r in rows if r["sparsity"] == args.sparsity and r.get("seed", 0) == args.seed]
    for r in these:
        shared = sum(a and b for x, y in zip(r["mask"], these[0]["mask"]) for a, b in zip(x, y))
        gap = max_gap_second_half([(e, k) for _, e, k in r["trajectory"]])
        print(f"{r['task']} {probe_label(r)}: E min {r['min_expected_after_budget']:.1f} "
              f"end {r['final_expected']:.1f} (K* {r['keep']}), max |E-K_t| in the second half "
              f"{gap:.1f}; dev {r['masked_teacher_score']:.2f} masked teacher, "
              f"{r['located_student_score']:.2f} located student (teacher {r['teacher_score']:.2f}); "
              f"heads {r['heads_per_layer']}, {shared} kept heads shared with {probe_label(these[0])}",
              flush=True)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
