"""How long the post-training path takes from a fine-tuned teacher, on the machine alone.

    python benchmarks/post_training.py --task mrpc --sparsity 0.58 0.75 --method kwon \
        [--ablation default one-per-layer] [--merge joint] [--calibration teacher sequential] \
        [--bias keep mean] [--calib-examples 512 2048] [--threads 2]

The wall times in the results files were measured beside another job, on one thread each.
This times each path as a user would run it: one `python -m peerprune prune --epochs 0`
command on the profile's trained teacher (`--teacher FOLDER`), in a scratch folder of its own
so that no head choice, tokenised split or finished run is read back, with `--threads`
threads. Run it with nothing else on the machine. Each path's whole command (imports and the
teacher's loading included) and the run's own steps are written to
results/post_training_speed.json, one row per path and thread count (a rerun replaces it).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peerprune.results import atomic_write_text, read_rows, upsert_row

ROOT = Path(__file__).resolve().parents[1]  # the package the commands import
OUT = Path("results") / "post_training_speed.json"  # like every results folder: from here


def teacher_folder(task: str, profile: str) -> Path:
    """The profile's trained teacher of `task`, which must be on this machine."""
    from peerprune.teacher import best_teacher
    best = best_teacher(task, profile)
    folder = Path(best["checkpoint"]).resolve()
    if not (folder / "config.json").is_file():
        sys.exit(f"the {task} teacher {folder} is not on this machine: train it with "
                 f"`python -m peerprune teacher --task {task} --profile {profile}`")
    return folder


def time_path(task, sparsity, method, ablation, merge, calibration, bias, calib_examples,
              threads, profile, teacher: Path) -> dict:
    """One post-training path as one command in a fresh scratch folder: its result and the
    command's wall time."""
    glue = os.environ.get("PEERPRUNE_GLUE_DIR")
    with tempfile.TemporaryDirectory(prefix="post-training-") as scratch:
        env = {**os.environ, "PEERPRUNE_RESULTS_DIR": str(Path(scratch) / "results"),
               "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "TQDM_DISABLE": "1",
               **({"PEERPRUNE_GLUE_DIR": str(Path(glue).resolve())} if glue else {}),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "peerprune", "prune", "--profile", profile, "--task", task,
               "--method", method, "--sparsity", str(sparsity), "--epochs", "0", "--merge",
               merge, "--calibration", calibration, "--bias", bias, "--ablation", ablation,
               "--teacher", str(teacher)]
        if calib_examples is not None:
            cmd += ["--calib-examples", str(calib_examples)]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=scratch, env=env)
        seconds = time.perf_counter() - start
        if out.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        [found] = Path(scratch, "results").rglob(f"{method}-*.json")
        r = json.loads(found.read_text())
    return {"task": r["task"], "sparsity": sparsity, "method": method, "ablation": ablation,
            "merge": merge, "calibration": calibration, "bias": r["options"]["bias"],
            "threads": threads,
            "torch_threads": r["versions"]["torch_threads"], "cores": os.cpu_count(),
            "calib_examples": r["options"]["calib_examples"], "command_s": round(seconds, 1),
            "wall_s": r["wall_s"], "timings": r["timings"],
            "choice_reused": r["choice"]["reused"], "score": r["score"],
            "teacher_score": r["teacher_score"], "metric": r["metric"],
            "heads_per_layer": r["heads_per_layer"]}


KEY = ("task", "sparsity", "method", "ablation", "merge", "calibration", "bias", "threads",
       "calib_examples")


def main(argv=None) -> list[dict]:
    from peerprune.prune import default_of
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--task", nargs="+", default=["mrpc"])
    ap.add_argument("--sparsity", nargs="+", type=float, default=[0.58])
    ap.add_argument("--method", nargs="+", default=["kwon"])
    ap.add_argument("--ablation", nargs="+", default=["default"])
    ap.add_argument("--merge", nargs="+", default=["joint"])
    ap.add_argument("--calibration", nargs="+", default=["teacher"])
    ap.add_argument("--bias", nargs="+", default=[default_of("bias")])
    ap.add_argument("--calib-examples", nargs="+", type=int, default=[None],
                    help="calibration sample sizes (default: the profile's)")
    ap.add_argument("--threads", nargs="+", type=int, default=[2])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from peerprune.sequential import SEQUENTIAL_MERGES
    rows = read_rows(args.out)
    for task in args.task:
        teacher = teacher_folder(task, args.profile)
        for sparsity, method, abl, merge, calib, bias, n, threads in itertools.product(
                args.sparsity, args.method, args.ablation, args.merge, args.calibration,
                args.bias, args.calib_examples, args.threads):
            if calib == "sequential" and merge not in SEQUENTIAL_MERGES:
                continue  # the sequential fit solves joint and rescale only
            row = time_path(task, sparsity, method, abl, merge, calib, bias, n, threads,
                            args.profile, teacher)
            print(json.dumps(row), flush=True)
            rows = upsert_row(rows, row, KEY)
            atomic_write_text(args.out, json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
