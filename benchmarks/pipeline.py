"""What the whole method costs against one dense fine-tune of the same task and length.

    python benchmarks/pipeline.py [--profile quick] [--task mrpc] [--sparsity 0.58]

Runs, each in its own fresh process so that peak memory is its own: (1) the dense
fine-tune (the profile's teacher at its first learning rate), (2) the method (`apd`:
locator, merge, peer-distillation fine-tuning) on that teacher, with the same epochs.
Prints wall times, peak resident memory and their ratios, and writes them to
results/pipeline_benchmark.json, one row per profile, task and sparsity (a rerun replaces
its row). Both runs start from nothing, in a scratch folder of their
own (results, checkpoints, head choices, tokenised data), so that a run or a head choice
already on disk is never read back instead of timed; `--work DIR` keeps that folder.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from peerprune.results import atomic_write_text, read_rows, upsert_row

CHILD = r"""
import json, resource, sys, time
import torch
from peerprune.profiles import get_profile
what, profile, task, sparsity = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
from peerprune.glue import get_task
p = get_profile(profile).for_task(get_task(task).name)
start = time.perf_counter()
if what == "dense":
    from peerprune.teacher import train_teacher
    r = train_teacher(task, profile, p.teacher_lrs[0])
else:
    from peerprune.prune import PruneConfig, run_pruning
    r = run_pruning(PruneConfig.for_profile(p, task, method="apd", sparsity=sparsity))
print(json.dumps({"what": what, "wall_s": r["wall_s"], "score": r["score"],
                  "torch_threads": torch.get_num_threads(),
                  "timings": r.get("timings", {}),
                  "choice_reused": r.get("choice", {}).get("reused"),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(what: str, args, work: Path) -> dict:
    """One run in its own process, in `work`: its results and checkpoints go there."""
    code = Path(__file__).resolve().parents[1]
    glue = os.environ.get("PEERPRUNE_GLUE_DIR")
    env = {**os.environ, "PEERPRUNE_RESULTS_DIR": str(work / "results"),
           **({"PEERPRUNE_GLUE_DIR": str(Path(glue).resolve())} if glue else {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", CHILD, what, args.profile, args.task,
                          str(args.sparsity)], capture_output=True, text=True, cwd=work, env=env)
    if out.returncode:
        sys.exit(f"the {what} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


KEY = ("profile", "task", "sparsity")  # what a row measures; a rerun of it replaces it


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--task", default="mrpc")
    ap.add_argument("--sparsity", type=float, default=0.58)
    ap.add_argument("--work", help="the scratch folder (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=Path("results/pipeline_benchmark.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pipeline-benchmark-") as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        dense, method = run("dense", args, work), run("apd", args, work)
    row = {"profile": args.profile, "task": args.task, "sparsity": args.sparsity,
           "torch_threads": dense["torch_threads"], "cores": os.cpu_count(),
           "dense_wall_s": dense["wall_s"], "method_wall_s": method["wall_s"],
           "wall_ratio": round(method["wall_s"] / dense["wall_s"], 2),
           "method_timings": method["timings"], "method_choice_reused": method["choice_reused"],
           "dense_peak_rss_mb": round(dense["peak_rss_mb"]),
           "method_peak_rss_mb": round(method["peak_rss_mb"]),
           "memory_ratio": round(method["peak_rss_mb"] / dense["peak_rss_mb"], 2),
           "dense_score": dense["score"], "method_score": method["score"]}
    print(json.dumps(row, indent=2))
    atomic_write_text(args.out, json.dumps(upsert_row(read_rows(args.out), row, KEY), indent=2) + "\n")
    return row


if __name__ == "__main__":
    main()
