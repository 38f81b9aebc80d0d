"""Command line: `python -m peerprune <command> ...` (see `--help`)."""
from __future__ import annotations

import argparse
import os
import sys

from .profiles import PROFILES, get_profile


PROFILE_HELP = ("how big a run is: smoke (tiny model, seconds), quick (MiniLM on a subsample, "
                "minutes), full (MiniLM, full data, hours), paper (BERT-base, a GPU)")


def _teacher(args) -> None:
    from .glue import get_task
    from .models import check_model_name
    from .teacher import best_teacher, sweep_teacher
    p = get_profile(args.profile)
    for task in args.task or []:  # refuse a bad name before any training
        get_task(task)
    if args.model:
        check_model_name(args.model)
    for task in args.task or p.runnable_tasks():
        for seed in args.seed if args.seed is not None else p.seeds[:1]:
            for r in sweep_teacher(task, args.profile, args.lr, seed, model=args.model):
                print(f"{task} seed {seed} lr {r['lr']:g}: {r['metric']} {r['score']:.2f} "
                      f"({r['wall_s']:.0f} s)", flush=True)
            best = best_teacher(task, args.profile, seed, args.model)
            print(f"{task} seed {seed}: teacher lr {best['lr']:g}, {best['score']:.2f}", flush=True)


def _prune(args) -> None:
    from .prune import PruneConfig, ablation, check_config, run_pruning, with_calib_examples
    p = get_profile(args.profile)
    if args.data:  # your own data: one task, named by --task or the file
        from .glue import csv_task
        if len(args.data) > 2 or (args.task and len(args.task) > 1):
            raise ValueError("--data takes TRAIN.csv [DEV.csv] and at most one --task name")
        spec = csv_task(*args.data, name=args.task[0] if args.task else None)
        print(f"data: {spec.name}, {spec.num_labels} label(s) "
              f"{list(spec.label_names) or ''} from {' and '.join(args.data)}", flush=True)
        args.task = [spec.name]
    # the profile's option overrides apply, as in the notebooks, so both share finished runs
    configs = [ablation(PruneConfig.for_profile(p, task, method=method, sparsity=sparsity,
                                                keep=args.keep, seed=seed, model=args.model,
                                                teacher=args.teacher,
                                                distill=distill, epochs=args.epochs,
                                                merge=merge, calibration=calibration,
                                                bias=bias), name)
               for task in args.task or p.runnable_tasks() for method in args.method
               for sparsity in args.sparsity
               for seed in (args.seed if args.seed is not None else p.seeds[:1])
               for distill in args.distill or [None] for merge in args.merge or [None]
               for calibration in args.calibration for bias in args.bias
               for name in args.ablation]
    if args.calib_examples:
        configs = [with_calib_examples(c, n) for c in configs for n in args.calib_examples]
    for c in configs:  # refuse a bad setting before any run starts
        check_config(c.resolved())
    for c in configs:
        r = run_pruning(c)
        print(f"{r['task']} {c.method} {r['variant']} sparsity {r['sparsity']:.3f} seed {c.seed}: "
              f"{r['metric']} {r['score']:.2f} (teacher {r['teacher_score']:.2f}), "
              f"heads {r['heads_per_layer']}, {r['wall_s']:.0f} s", flush=True)


def _report(args) -> None:
    from .report import DOCUMENTS, update_documents
    changed = update_documents(args.profile, root=args.root)
    print(f"tables of profile {args.profile} written to results/{args.profile}/tables/; "
          + (f"rewrote {', '.join(map(str, changed))}" if changed
             else f"{', '.join(DOCUMENTS)} already up to date"))


def load_plugins(argv) -> None:
    """Import the modules named by `--plugin M` (before the parser is built, so that the
    head-selection criteria they register are among `--method`'s choices)."""
    import importlib
    argv = list(argv)
    for i, arg in enumerate(argv):
        names = [argv[i + 1]] if arg == "--plugin" and i + 1 < len(argv) else (
            [arg.split("=", 1)[1]] if arg.startswith("--plugin=") else [])
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError as e:
                raise SystemExit(f"error: --plugin {name!r} cannot be imported ({e})") from None


def single_process_launch_note() -> str | None:
    """What to tell a user whose `accelerate launch --cpu --num_processes N` started one
    process: accelerate's --cpu ignores the count (data parallelism on CPUs takes
    --multi_gpu), and nothing inside the process can see what was asked for."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "WORLD_SIZE" not in os.environ:
        return ("note: accelerate launch --cpu starts one process whatever --num_processes says; "
                "for data parallelism on CPUs use accelerate launch --multi_gpu --num_processes N")
    return None


def _options(args) -> None:
    from .prune import describe_options
    print(describe_options())


def build_parser() -> argparse.ArgumentParser:
    """The commands; the prune options' defaults, help and valid values come from the
    fields of `PruneConfig` (prune.py), which declare them once."""
    from .prune import ABLATIONS, default_of, option_help, valid_values
    several = "; several values: one run each"
    parser = argparse.ArgumentParser(prog="python -m peerprune")
    sub = parser.add_subparsers(dest="command", required=True)
    profile_help = f"{PROFILE_HELP}; default: {default_of('profile')}"
    t = sub.add_parser("teacher", help="fine-tune dense teachers (a learning-rate sweep)")
    t.add_argument("--profile", default=default_of("profile"), choices=list(PROFILES),
                   help=profile_help)
    t.add_argument("--task", nargs="+", help="GLUE tasks (default: the profile's)")
    t.add_argument("--lr", nargs="+", type=float, help="learning rates (default: the profile's)")
    t.add_argument("--seed", nargs="+", type=int, help="seeds (default: the profile's first)")
    t.add_argument("--model", help=option_help("model"))
    t.set_defaults(run=_teacher)
    pr = sub.add_parser("prune", help="prune a task's teacher and fine-tune (one run per setting)")
    pr.add_argument("--profile", default=default_of("profile"), choices=list(PROFILES),
                    help=profile_help)
    pr.add_argument("--task", nargs="+", help="GLUE tasks (default: the profile's)")
    for name, kind in (("method", str), ("sparsity", float)):
        pr.add_argument(f"--{name}", nargs="+", type=kind, default=[default_of(name)],
                        help=f"{option_help(name)}{several} (default: {default_of(name)})")
    pr.add_argument("--keep", type=int, help=option_help("keep"))
    pr.add_argument("--seed", nargs="+", type=int,
                    help=f"{option_help('seed')}{several} (default: the profile's first)")
    pr.add_argument("--ablation", nargs="+", default=["default"],
                    help=f"variants of the method: {', '.join(ABLATIONS)}{several}")
    pr.add_argument("--distill", nargs="+", help=option_help("distill") + several)
    pr.add_argument("--model", help=option_help("model"))
    pr.add_argument("--teacher", metavar="FOLDER", help=option_help("teacher"))
    pr.add_argument("--data", nargs="+", metavar="CSV",
                    help="your own data instead of a GLUE task: TRAIN.csv [DEV.csv] with columns "
                         "text, label (and text_pair); --task names it; needs --teacher")
    pr.add_argument("--epochs", type=int, help=option_help("epochs"))
    pr.add_argument("--merge", nargs="+", help=option_help("merge") + several)
    pr.add_argument("--calibration", nargs="+", default=[default_of("calibration")],
                    help=option_help("calibration") + several)
    pr.add_argument("--bias", nargs="+", default=[default_of("bias")],
                    help=option_help("bias") + several)
    pr.add_argument("--calib-examples", nargs="+", type=int, metavar="N",
                    help=f"{option_help('calib_examples')}: its size, named in the variant "
                         f"(calib128) when not the profile's{several} (default: the "
                         f"profile's, {default_of('calib_examples')} unless it says)")
    pr.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import MODULE first: the criteria it registers with "
                         "peerprune.selectors.register become methods, the losses it "
                         "registers with peerprune.losses.register_loss --distill choices")
    pr.set_defaults(run=_prune)
    o = sub.add_parser("options", help="every option of a run (PruneConfig), by concern, with "
                                       "its default")
    o.set_defaults(run=_options)
    r = sub.add_parser("report", help="rewrite the results tables of README.md and "
                                          "docs/findings.md from results/")
    r.add_argument("--root", default=".", help="the folder holding README.md and docs/")
    r.add_argument("--profile", default="full", choices=list(PROFILES),
                   help="the profile whose tables to write (default: full)")
    r.set_defaults(run=_report)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if note := single_process_launch_note():
        print(note, file=sys.stderr)
    load_plugins(argv)
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, LookupError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
