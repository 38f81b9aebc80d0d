"""What a mask is worth before any fine-tuning: the teacher's dev score under each saved
head choice, masked, and after the pairwise and joint peer merges.

    python benchmarks/mask_quality.py [--profile full] [--task cola]

Reads every head choice the task's runs saved (checkpoints/<profile>/<model>/<task>/
choice-*/, see peerprune/choices.py), so it runs after the pruning runs and recomputes
no mask. For apd choices it also scores the locator's own weights under their mask.
Prints one line per choice and writes results/<profile>/mask_quality/<task>.json.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from peerprune import anatomy, peers
from peerprune.glue import get_task, subsample, task_data
from peerprune.metrics import primary_score
from peerprune.models import load_model
from peerprune.profiles import get_profile
from peerprune.results import RESULTS_DIR, atomic_write_text, load_results
from peerprune.teacher import load_teacher, task_checkpoints
from peerprune.train import evaluate, make_loader


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--task", default="cola")
    ap.add_argument("--calib-examples", type=int, default=512)
    ap.add_argument("--rho", type=float, default=1e-3)
    args = ap.parse_args(argv)
    try:
        p, spec = get_profile(args.profile), get_task(args.task)
    except ValueError as e:
        ap.error(str(e))
    task = spec.name
    root = task_checkpoints(args.profile, p.model, task)
    saved = sorted(root.glob("choice-*/choice.json"))
    if not saved:
        ap.error(f"no saved head choices under {root}: run some pruning runs first")
    teacher, tokenizer, _ = load_teacher(task, args.profile, 0, p.model)
    train, evals = task_data(task, tokenizer, max_length=p.max_length,
                             train_examples=p.train_examples, eval_examples=p.eval_examples, seed=0)
    dev = make_loader(evals[next(iter(evals))], tokenizer, 64, False)
    calib = make_loader(subsample(train, args.calib_examples, 0), tokenizer, 32, False)

    def score(model, **kw) -> float:
        return round(primary_score(task, evaluate(model, dev, task, **kw)), 2)

    runs = {}  # choice folder -> the runs that used it
    for r in load_results(profile=args.profile, model=p.model, task=task):
        if "choice" in r:
            runs.setdefault(Path(r["choice"]["path"]).name, []).append(
                f"{r['method']}/{r['distill']}/{r['variant']} s={r['target_sparsity']}")
    stats = anatomy.collect_stats(teacher, calib)
    similarity = anatomy.similarity(stats, "cosine")
    rows = [{"choice": "none (dense teacher)", "teacher": score(teacher)}]
    print(f"{task} dense teacher: {rows[0]['teacher']:.2f}", flush=True)
    for path in saved:
        mask = torch.tensor(json.loads(path.read_text())["mask"])
        row = {"choice": path.parent.name, "runs": sorted(runs.get(path.parent.name, [])),
               "heads_per_layer": [int(x) for x in mask.sum(1)],
               "masked": score(teacher, mask=mask)}
        assignment = peers.assign_peers(similarity, mask)
        for merge in ("pairwise", "joint"):
            merged = copy.deepcopy(teacher)
            peers.merge_and_prune(merged, peers.merged_weights(stats, mask, assignment, merge,
                                                               args.rho), mask)
            row[f"{merge}_merge"] = score(merged)
        if (path.parent / "located" / "config.json").is_file():
            row["located_masked"] = score(load_model(str(path.parent / "located")), mask=mask)
        rows.append(row)
        located = row.get("located_masked")
        print(f"{task} {row['choice']} ({', '.join(row['runs']) or 'no result yet'}) heads "
              f"{row['heads_per_layer']}: masked {row['masked']:.2f}, pairwise merge "
              f"{row['pairwise_merge']:.2f}, joint merge {row['joint_merge']:.2f}"
              + (f", locator's weights {located:.2f}" if located is not None else ""), flush=True)
    out = Path(RESULTS_DIR) / args.profile / "mask_quality" / f"{task}.json"
    atomic_write_text(out, json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
