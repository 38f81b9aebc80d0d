"""Tables generated from results/*.json, and the document sections that show them.

A section of README.md or docs/findings.md between `<!-- table:NAME:PROFILE -->` and
`<!-- /table:NAME:PROFILE -->` is rewritten from the results; nothing in it is typed by hand.
"""
from __future__ import annotations

import re
import statistics
from pathlib import Path

from . import grid
from .glue import get_task
from .profiles import PROFILES, get_profile
from .prune import (ABLATIONS, AFTER_THE_CHOICE, LATER_OPTIONS, ROLES, choice_options, default_of,
                    valid_values)
from .results import RESULTS_DIR, atomic_write_text, load_results, read_rows
from .sequential import SEQUENTIAL_MERGES


def _fmt(x, digits=2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _spread(scores) -> str:
    """One seed: its score; several: `mean ± sample standard deviation (n seeds)`."""
    scores = list(scores)
    if len(scores) == 1:
        return _fmt(scores[0])
    return f"{statistics.mean(scores):.2f} ± {statistics.stdev(scores):.2f} ({len(scores)})"


def dense_teacher_table(profile: str, results_root=None) -> str:
    """Markdown: per task and model, the dev score of each learning rate of the sweep,
    the selected teacher (best dev score) and its wall time."""
    runs = load_results(results_root, profile=profile, method="dense")
    if not runs:
        return f"_No dense-teacher results for profile `{profile}` yet._\n"
    lrs = sorted({r["lr"] for r in runs})
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["task"], r["seed"]), []).append(r)
    head = ["task", "model", "seed", "metric", *[f"lr {lr:g}" for lr in lrs], "teacher lr",
            "teacher score", "train examples", "epochs", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, task, seed), rs in sorted(groups.items()):
        by_lr = {r["lr"]: r for r in rs}
        best = max(rs, key=lambda r: (r["score"], -r["lr"]))
        row = [task, model, str(seed), get_task(task).primary_metric,
               *[_fmt(by_lr[lr]["score"]) if lr in by_lr else "–" for lr in lrs],
               f"{best['lr']:g}", f"**{best['score']:.2f}**", str(best["train_size"]),
               str(best["epochs"]), f"{best['wall_s']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def pruning_table(profile: str, results_root=None) -> str:
    """Markdown: every pruning run (mean over seeds) against its task's dense teacher."""
    groups = _configurations(profile, results_root)
    if not groups:
        return f"_No pruning results for profile `{profile}` yet._\n"
    head = ["task", "model", "metric", "heads removed", "method", "distill", "variant", "seeds",
            "teacher", "score", "Δ teacher", "heads per layer", "params (M)", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, model, target, method, distill, variant), by_seed in sorted(groups.items()):
        rs = list(by_seed.values())
        mean = sum(r["score"] for r in rs) / len(rs)
        teacher = rs[0]["teacher_score"]
        row = [task, model, rs[0]["metric"], f"{rs[0]['sparsity']:.1%}", method, distill, variant,
               str(len(rs)), _fmt(teacher), f"**{mean:.2f}**", f"{mean - teacher:+.2f}",
               str(rs[0]["heads_per_layer"]) if len(rs) == 1 else "varies",
               f"{rs[0]['params'] / 1e6:.2f}", f"{sum(r['wall_s'] for r in rs) / len(rs):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def results_frame(profile: str, results_root=None):
    """Every result of a profile as a pandas DataFrame (one row per run)."""
    import pandas as pd
    return pd.DataFrame(load_results(results_root, profile=profile))


def frame_to_markdown(table) -> str:
    """A DataFrame as a Markdown table (index first), numbers with two decimals."""
    def cell(v):
        if isinstance(v, float):
            return "" if v != v else f"{v:.2f}"
        return str(v)
    head = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [cell(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


# Variants beside the defaults in the comparison and the sweep: the method with the locator's
# learned multipliers (the default before the projection), so that before and after share
# one table.
COMPARED_VARIANTS = ("default", "lagrangian")


def column_name(method: str, distill: str, variant: str = "default") -> str:
    """A comparison column: `method (distill)`, or `method (distill, variant)`."""
    return f"{method} ({distill})" if variant == "default" else f"{method} ({distill}, {variant})"


def comparison_frame(profile: str, target: float = 0.58, results_root=None):
    """The GLUE-style table: per task, the dense teacher and every (method, distill) at one
    target sparsity (mean over seeds), with the share of heads removed."""
    import pandas as pd
    df = results_frame(profile, results_root)
    if df.empty:
        return pd.DataFrame()
    dense = df[df["method"] == "dense"].groupby("task")["score"].max().rename("dense")
    runs = df[(df["method"] != "dense") & df["variant"].isin(COMPARED_VARIANTS)
              & ((df["target_sparsity"] - target).abs() < 0.01)]
    if runs.empty:
        return dense.to_frame()
    runs = runs.assign(column=[column_name(m, d, v) for m, d, v in
                               zip(runs["method"], runs["distill"], runs["variant"])])
    wide = runs.pivot_table(index="task", columns="column", values="score", aggfunc="mean")
    metric = df.groupby("task")["metric"].first()
    removed = runs.groupby("task")["sparsity"].mean().rename("heads removed")
    return pd.concat([metric, dense, wide, removed], axis=1).loc[wide.index]


def write_tables(profile: str, out_dir, results_root=None) -> list[Path]:
    """The comparison table as Markdown, CSV and LaTeX under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_frame(profile, results_root=results_root)
    paths = [out / "comparison.md", out / "comparison.csv", out / "comparison.tex"]
    if table.empty:
        return []
    atomic_write_text(paths[0], frame_to_markdown(table))
    atomic_write_text(paths[1], table.round(4).to_csv())
    atomic_write_text(paths[2], table.round(2).to_latex(float_format="%.2f"))
    return paths


def comparison_table(profile: str, results_root=None, target: float = 0.58) -> str:
    """The comparison as Markdown; a cell averaged over several seeds shows
    `mean ± standard deviation (n seeds)`."""
    table = comparison_frame(profile, target, results_root)
    if table.empty:
        return f"_No results for profile `{profile}` yet._\n"
    spread = {(g["task"], column_name(g["method"], g["distill"], g["variant"])): g
              for g in _seed_groups(profile, results_root)
              if g["variant"] in COMPARED_VARIANTS and abs(g["target_sparsity"] - target) < 0.01}
    cells = table.astype(object)
    for (task, column), g in spread.items():
        if task in cells.index and column in cells.columns:
            cells.loc[task, column] = _spread(g["scores"].values())
    return frame_to_markdown(cells)


def _configurations(profile: str, results_root=None) -> dict[tuple, dict[int, dict]]:
    """The pruning runs of a profile by configuration, (task, model, target sparsity, method,
    distill, variant), each a {seed: result} of the runs that differ only in their seed."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in load_results(results_root, profile=profile):
        if r["method"] != "dense":
            key = (r["task"], r["model"], r["target_sparsity"], r["method"], r["distill"],
                   r["variant"])
            groups.setdefault(key, {})[r["seed"]] = r
    return groups


def _seed_groups(profile: str, results_root=None) -> list[dict]:
    """The configurations run with more than one seed: each seed's score, the mean and the
    sample standard deviation."""
    import statistics
    out = []
    for (task, model, target, method, distill, variant), by_seed in sorted(
            _configurations(profile, results_root).items()):
        if len(by_seed) < 2:
            continue
        scores = {seed: by_seed[seed]["score"] for seed in sorted(by_seed)}
        first = by_seed[min(by_seed)]
        out.append({"task": task, "model": model, "target_sparsity": target, "method": method,
                    "distill": distill, "variant": variant, "metric": first["metric"],
                    "teacher_score": first["teacher_score"], "scores": scores,
                    "mean": statistics.mean(scores.values()),
                    "std": statistics.stdev(scores.values())})
    return out


def seeds_table(profile: str, results_root=None) -> str:
    """Markdown: every pruning configuration run with more than one seed, each seed's score,
    the mean and the sample standard deviation."""
    groups = _seed_groups(profile, results_root)
    if not groups:
        return f"_No configuration of profile `{profile}` has run with more than one seed yet._\n"
    head = ["task", "model", "metric", "heads removed", "method", "distill", "variant", "teacher",
            "score per seed", "mean", "std", "Δ teacher (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        per_seed = ", ".join(f"{seed}: {score:.2f}" for seed, score in g["scores"].items())
        lines.append("| " + " | ".join([
            g["task"], g["model"], g["metric"], f"{g['target_sparsity']:.0%}", g["method"],
            g["distill"], g["variant"], _fmt(g["teacher_score"]), per_seed,
            f"**{g['mean']:.2f}**", f"{g['std']:.2f}",
            f"{g['mean'] - g['teacher_score']:+.2f}"]) + " |")
    return "\n".join(lines) + "\n"


def _ablation_of(variant: str) -> tuple[str, str] | None:
    """(ablation, budget control) of a variant of the method: `no-merge` is the projection's
    no-merge, `no-merge-lagrangian` and `lagrangian` the learned multipliers' (see
    `migrations.lagrangian_variant`); None for any other variant."""
    if variant == "lagrangian":
        return "default", "lagrangian"
    if variant.endswith("-lagrangian") and variant[:-len("-lagrangian")] in ABLATIONS:
        return variant[:-len("-lagrangian")], "lagrangian"
    return (variant, "projection") if variant in ABLATIONS else None


def ablation_table(profile: str, results_root=None, target: float = 0.58) -> str:
    """Markdown: per task and budget control, the method's default and each of its ablations
    (`prune.ABLATIONS`) at one target sparsity; a cell averaged over seeds shows
    `mean ± standard deviation (n seeds)`, and the default's first seed has a column of its
    own, to compare with the ablations run on that seed only. Other variants (such as runs
    relabelled after a multiplier rate changed) are left to the table of every run."""
    cells: dict[tuple, dict[str, list[float]]] = {}
    meta: dict[str, tuple] = {}
    for (task, model, t, method, distill, variant), by_seed in _configurations(
            profile, results_root).items():
        named = _ablation_of(variant)
        if method != "apd" or named is None or named == ("lagrangian", "projection") \
                or abs(t - target) >= 0.01:
            continue
        scores = [by_seed[seed]["score"] for seed in sorted(by_seed)]
        cells.setdefault((task, named[1]), {})[named[0]] = scores
        first = next(iter(by_seed.values()))
        meta[task] = (first["metric"], first["teacher_score"])
    rows = [key for key in sorted(cells, key=lambda k: (k[0], k[1] != "projection"))
            if set(cells[key]) - {"default"}]
    if not rows:
        return f"_No ablation of the method for profile `{profile}` yet._\n"
    variants = [v for v in ABLATIONS if v != "lagrangian" and any(v in cells[k] for k in rows)]
    head = ["task", "budget control", "metric", "dense", "default, first seed", *variants]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, control in rows:
        these = cells[(task, control)]
        default = these.get("default")
        row = [task, control, meta[task][0], _fmt(meta[task][1]),
               _fmt(default[0] if default else None)]
        row += [_spread(these[v]) if v in these else "" for v in variants]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def sweep_rows(profile: str, results_root=None) -> list[dict]:
    """The sparsity sweep: for every task run at more than one target sparsity, one row per
    target sparsity with the dense teacher and each (method, distill) of the default variant,
    averaged over seeds (`{column: (mean, n seeds)}`)."""
    groups = _configurations(profile, results_root)
    by_task: dict[str, dict[float, dict]] = {}
    for (task, model, target, method, distill, variant), by_seed in groups.items():
        if variant not in COMPARED_VARIANTS:
            continue
        rs = list(by_seed.values())
        row = by_task.setdefault(task, {}).setdefault(target, {
            "task": task, "metric": rs[0]["metric"], "target_sparsity": target,
            "heads_kept": sum(rs[0]["heads_per_layer"]), "teacher": rs[0]["teacher_score"],
            "scores": {}})
        row["scores"][column_name(method, distill, variant)] = (
            sum(r["score"] for r in rs) / len(rs), len(rs))
    return [row for task in sorted(by_task) if len(by_task[task]) > 1
            for _, row in sorted(by_task[task].items())]


def _sweep_points(rows: list[dict], task: str, column: str, tolerance: float):
    """The task's rows that have `column`, by sparsity, each with whether its score is within
    `tolerance` points of the teacher (a score above the teacher counts as within)."""
    runs = sorted((r for r in rows if r["task"] == task and column in r["scores"]),
                  key=lambda r: r["target_sparsity"])
    return [(r, r["scores"][column][0] >= r["teacher"] - tolerance) for r in runs]


def lossless_share(rows: list[dict], column: str = "apd (peer)", tolerance: float = 0.5):
    """Per task, the highest share of heads removed up to which `column` stays within
    `tolerance` points of its teacher at every sparsity run below it. None when it falls
    short already at the lowest sparsity run."""
    out: dict[str, float | None] = {}
    for task in sorted({r["task"] for r in rows if column in r["scores"]}):
        out[task] = None
        for r, within in _sweep_points(rows, task, column, tolerance):
            if not within:
                break
            out[task] = r["target_sparsity"]
    return out


def sweep_table(profile: str, results_root=None, column: str = "apd (peer)",
                tolerance: float = 0.5) -> str:
    """Markdown: score against heads removed for every method on the sweep's tasks, then, per
    task, how far `column` goes within `tolerance` points of its teacher."""
    rows = sweep_rows(profile, results_root)
    if not rows:
        return f"_No task of profile `{profile}` has run at more than one sparsity yet._\n"
    columns = sorted({c for r in rows for c in r["scores"]})
    head = ["task", "metric", "heads removed", "heads kept", "dense"] + columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for c in columns:
            mean, n = r["scores"].get(c, (None, 0))
            cells.append("" if mean is None else f"{mean:.2f}" + (f" ({n})" if n > 1 else ""))
        lines.append("| " + " | ".join([r["task"], r["metric"], f"{r['target_sparsity']:.0%}",
                                         str(r["heads_kept"]), _fmt(r["teacher"])] + cells) + " |")
    lines.append("")
    for task, share in lossless_share(rows, column, tolerance).items():
        points = _sweep_points(rows, task, column, tolerance)
        within = [f"{r['target_sparsity']:.0%}" for r, ok in points if ok]
        run = [f"{r['target_sparsity']:.0%}" for r, _ in points]
        lines.append(f"- {task}: `{column}` is within {tolerance:g} points of the teacher at "
                     f"{', '.join(within) or 'none'} (of {', '.join(run)}); at every sparsity "
                     f"up to: {'none' if share is None else f'**{share:.0%}**'}.")
    return "\n".join(lines) + "\n"


def locator_probe_table(profile: str, results_root=None) -> str:
    """Markdown of results/<profile>/locator_probe/*.json (benchmarks/locator_probe.py): per
    task, sparsity, seed and budget control, how E followed the budget and what the mask is
    worth."""
    import json
    files = sorted((Path(results_root or RESULTS_DIR) / profile / "locator_probe").glob("*.json"))
    rows = [r for f in files for r in json.loads(f.read_text())]
    if not rows:
        return f"_No locator probe for profile `{profile}` yet: run `python benchmarks/locator_probe.py`._\n"
    head = ["task", "heads removed", "seed", "budget control", "steps", "K*",
            "lowest E after K_t = K*", "E at the end", "max abs(E - K_t), second half",
            "teacher", "teacher, masked", "located student, masked", "kept heads per layer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def order(r):
        s = probe_setting(r)
        return (r["task"], r["sparsity"], s["seed"], s["budget"],
                -s.get("lr_lambda", 0), -s.get("final_temperature", 0))
    for r in sorted(rows, key=order):
        s = probe_setting(r)
        control = probe_label(r)
        gap = max(abs(e - k) for _, e, k in r["trajectory"][len(r["trajectory"]) // 2:])
        lines.append("| " + " | ".join([
            r["task"], f"{r['sparsity']:.0%}", str(s["seed"]), control, str(r["steps"]),
            str(r["keep"]), f"{r['min_expected_after_budget']:.1f}", f"{r['final_expected']:.1f}",
            f"{gap:.1f}", _fmt(r["teacher_score"]), _fmt(r["masked_teacher_score"]),
            _fmt(r["located_student_score"]), str(r["heads_per_layer"])]) + " |")
    return "\n".join(lines) + "\n"


def probe_setting(row: dict) -> dict:
    """What a probe row varied: its sparsity, seed, budget control and that control's knob
    (rows made before the projection existed are the Lagrangian's, at seed 0)."""
    budget = row.get("budget", "lagrangian")
    knob = ({"final_temperature": row["final_temperature"]} if budget == "projection"
            else {"lr_lambda": row["lr_lambda"]})
    return {"sparsity": row["sparsity"], "seed": row.get("seed", 0), "budget": budget, **knob}


def probe_label(row: dict) -> str:
    """A probe row's budget control in words: `projection, final T 0.1`."""
    s = probe_setting(row)
    return (f"projection, final T {s['final_temperature']:g}" if s["budget"] == "projection"
            else f"lagrangian, rate {s['lr_lambda']:g}")


def locator_budget_rows(profile: str, results_root=None) -> list[dict]:
    """For every fine-tuned run of the method with a locator log (the post-training runs
    reuse those searches): its budget control, K*, E at the
    end, the largest |E - K_t| over the second half of the search, and the kept heads per
    layer."""
    out = []
    for r in load_results(results_root, profile=profile, method="apd"):
        log = r.get("locator_log")
        if not log or r.get("train", {}).get("epochs") == 0:  # post-training: a reused search
            continue
        second = log[len(log) // 2:]
        out.append({"task": r["task"], "target_sparsity": r["target_sparsity"], "seed": r["seed"],
                    "variant": r["variant"], "distill": r["distill"],
                    "budget": r["options"].get("budget_control", LATER_OPTIONS["budget_control"]),
                    "keep": sum(r["heads_per_layer"]), "final_expected": log[-1]["expected_heads"],
                    "max_gap": max(abs(e["expected_heads"] - e["k_t"]) for e in second),
                    "decisive": _decisiveness(log[-1], r["kept_heads"]),
                    "heads_per_layer": r["heads_per_layer"], "score": r["score"]})
    return sorted(out, key=lambda x: (x["task"], x["target_sparsity"], x["budget"] != "projection",
                                      x["variant"], x["seed"]))


def _decisiveness(last: dict, kept: list[list[int]]):
    """(lowest P(open) of a kept head, highest of a pruned one) at the search's last step, or
    None for a log that did not record them."""
    p = last.get("open_probability")
    if p is None:
        return None
    on = [p[l][h] for l, hs in enumerate(kept) for h in hs]
    off = [p[l][h] for l in range(len(p)) for h in range(len(p[l])) if h not in kept[l]]
    return min(on), max(off, default=0.0)


def locator_budget_table(profile: str, results_root=None) -> str:
    """Markdown: the locator on budget, one line per run of the method (`locator_budget_rows`);
    on budget means max |E - K_t| <= 1 over the second half and |E - K*| <= 0.5 at the end."""
    rows = locator_budget_rows(profile, results_root)
    if not rows:
        return f"_No run of the method with a locator log for profile `{profile}` yet._\n"
    head = ["task", "heads removed", "budget control", "variant", "seed", "K*", "E at the end",
            "max abs(E - K_t), second half", "on budget", "P(open) kept, lowest",
            "P(open) pruned, highest", "kept heads per layer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tally: dict[str, list[int]] = {}
    for x in rows:
        ok = x["max_gap"] <= 1 and abs(x["final_expected"] - x["keep"]) <= 0.5
        tally.setdefault(x["budget"], [0, 0])[0] += ok
        tally[x["budget"]][1] += 1
        lines.append("| " + " | ".join([
            x["task"], f"{x['target_sparsity']:.0%}", x["budget"], x["variant"], str(x["seed"]),
            str(x["keep"]), f"{x['final_expected']:.1f}", f"{x['max_gap']:.1f}",
            "yes" if ok else "no",
            *(["", ""] if x["decisive"] is None else [f"{v:.3f}" for v in x["decisive"]]),
            str(x["heads_per_layer"])]) + " |")
    lines.append("")
    lines += [f"- {control}: {ok} of {n} runs on budget." for control, (ok, n) in sorted(tally.items())]
    return "\n".join(lines) + "\n"


def headline_table(profile: str, results_root=None, target: float = 0.58) -> str:
    """Markdown: per task at one target sparsity, the teacher, the method (each budget
    control) and the best baseline, each a mean over its seeds."""
    groups = _configurations(profile, results_root)
    rows: dict[str, dict] = {}
    for (task, model, t, method, distill, variant), by_seed in groups.items():
        if abs(t - target) >= 0.01 or variant not in COMPARED_VARIANTS:
            continue
        rs = list(by_seed.values())
        row = rows.setdefault(task, {"metric": rs[0]["metric"], "teacher": rs[0]["teacher_score"],
                                     "runs": {}})
        row["runs"][column_name(method, distill, variant)] = (
            sum(r["score"] for r in rs) / len(rs), len(rs))
    if not rows:
        return f"_No results at {target:.0%} of heads removed for profile `{profile}` yet._\n"
    head = ["task", "metric", "teacher", "the method", "the method, learned multipliers",
            "best baseline", "its score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(run):
        return "" if run is None else f"{run[0]:.2f}" + (f" ({run[1]} seeds)" if run[1] > 1 else "")
    for task in sorted(rows):
        runs = rows[task]["runs"]
        baselines = {k: v for k, v in runs.items() if not k.startswith("apd ")}
        best = max(baselines, key=lambda k: baselines[k][0]) if baselines else None
        lines.append("| " + " | ".join([
            task, rows[task]["metric"], _fmt(rows[task]["teacher"]), cell(runs.get("apd (peer)")),
            cell(runs.get("apd (peer, lagrangian)")), best or "",
            cell(baselines.get(best))]) + " |")
    return "\n".join(lines) + "\n"


def recovery_of(options: dict) -> str:
    """A post-training run's recovery, as the table names it: the merge, how it was fitted
    when not on the teacher's own activations, and its bias when not kept."""
    calibration = options.get("calibration", default_of("calibration"))
    bias = options.get("bias", default_of("bias"))
    return (options["merge"] + ("" if calibration == default_of("calibration")
                                else f", {calibration}")
            + ("" if bias == default_of("bias") else f", {bias} bias"))


POST_RECOVERIES = ("none", "rescale", "pairwise", "joint")
# shown where run: fitted on the model merged below each layer (calibration "sequential"),
# then each recovery with the mean bias (`peers.BIASES`)
SEQUENTIAL_RECOVERIES = tuple(recovery_of({"merge": m, "calibration": "sequential"})
                              for m in SEQUENTIAL_MERGES)
# each recovery with another bias (`peers.BIASES`), against the same with the bias kept
BIAS_PAIRS = {recovery_of({"merge": m, "calibration": c, "bias": b}):
              recovery_of({"merge": m, "calibration": c})
              for b in valid_values("bias") if b != default_of("bias")
              for m, c in [(m, "teacher") for m in POST_RECOVERIES]
              + [(m, "sequential") for m in SEQUENTIAL_MERGES]}
BIAS_RECOVERIES = tuple(BIAS_PAIRS)
# no merge (the bias kept or moved), and Kwon's rescaling however fitted (with the mean bias
# too): the other recoveries are our merges
NO_MERGE = tuple(recovery_of({"merge": "none", "bias": b}) for b in valid_values("bias"))
KWON_RECOVERIES = tuple(recovery_of({"merge": "rescale", "calibration": c, "bias": b})
                        for c in valid_values("calibration") for b in valid_values("bias"))


def post_training_table(profile: str, results_root=None) -> str:
    """Markdown: the post-training path (no fine-tuning), per task, sparsity and mask: the
    teacher, the pruned model with each recovery (`none` = the teacher masked, `rescale` =
    Kwon et al.'s mask tuning, the pairwise and joint merges), the wall time of the fastest
    path and of the slowest (`path_seconds`: head choice included), and the fine-tuned
    method at that sparsity for comparison (seed 0). A mask made under other options of the
    choice (`choice_label`: an ablation that changes it, an option a run does not have
    unless it sets it) is its own row."""
    rows: dict[tuple, dict] = {}
    method_runs = {}
    runs = load_results(results_root, profile=profile)
    choice_s = choice_seconds(runs)
    for r in runs:
        if r["method"] == "dense":
            continue
        if r.get("train", {}).get("epochs") != 0:
            if r["method"] == "apd" and r["variant"] == "default" and r["seed"] == 0:
                method_runs[(r["task"], r["target_sparsity"])] = r["score"]
            continue
        # a mask made under other options of the choice is its own row (the calibration
        # sample's size has a column)
        mask = ", ".join([r["method"], *choice_label(r["options"], r["method"],
                                                     leave_out=("calib_examples",))])
        key = (r["task"], r["target_sparsity"], mask, r["seed"],
               r["options"].get("calib_examples", default_of("calib_examples")))
        row = rows.setdefault(key, {"teacher": r["teacher_score"], "metric": r["metric"],
                                    "scores": {}, "seconds": {}})
        row["scores"][recovery_of(r["options"])] = r["score"]
        row["seconds"][recovery_of(r["options"])] = path_seconds(r, choice_s)
    if not rows:
        return f"_No post-training run (epochs 0) for profile `{profile}` yet._\n"
    recoveries = POST_RECOVERIES + tuple(k for k in SEQUENTIAL_RECOVERIES + BIAS_RECOVERIES
                                         if any(k in row["scores"] for row in rows.values()))
    head = ["task", "heads removed", "mask", "seed", "calibration", "teacher", *recoveries,
            "wall time (s), head choice included, fastest / slowest", "the method, fine-tuned"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, target, method, seed, calib), row in sorted(rows.items()):
        cells = [_fmt(row["scores"].get(k)) for k in recoveries]
        seconds = row["seconds"].values()
        lines.append("| " + " | ".join([
            task, f"{target:.0%}", method, str(seed), str(calib), _fmt(row["teacher"]), *cells,
            f"{min(seconds):.0f} / {max(seconds):.0f}",
            _fmt(method_runs.get((task, target)))]) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(post_training_summary(rows)) + "\n"


FAST_PATH_S = 120.0  # the post-training path's time budget (#30): two minutes, choice included


def choice_seconds(runs) -> dict[str, float]:
    """How long each head choice took where it was made (not read back), by its path."""
    return {r["choice"]["path"]: r["timings"]["locate_s"] for r in runs
            if r.get("choice") and not r["choice"]["reused"]}


def path_seconds(run: dict, choice_s: dict[str, float]) -> float:
    """A run's wall time with its head choice included: a choice read back from an earlier
    run costs what it cost there (`choice_seconds`), not the moment of reading it."""
    choice = run.get("choice")
    if not choice or not choice["reused"]:
        return run["wall_s"]
    return run["wall_s"] - run["timings"]["locate_s"] + choice_s[choice["path"]]


def choice_ablations(options: dict) -> list[str]:
    """The ablations (`prune.ABLATIONS`) that change the head choice and that a run's options
    match: a post-training run with one of them is its own row."""
    return [name for name, changes in ABLATIONS.items()
            if changes and not set(changes) & set(AFTER_THE_CHOICE)
            and all(options.get(k) == v for k, v in changes.items())]


def head_choices(frame) -> dict[str, list[int]]:
    """Kept heads per layer of each seed-0 head choice, one row per choice: runs that differ
    only after it (fine-tuning losses, recoveries, the post-training path) share a row. A
    row names the task, the method, the choice-changing ablations and any other option of
    the choice away from what a run that does not set it has (`choice_label`), and the
    share of heads removed."""
    rows = {}
    for r in frame[(frame["method"] != "dense") & (frame["seed"] == 0)].itertuples():
        label = ", ".join(choice_label(r.options, r.method))
        rows[f"{r.task} {r.method}" + (f" ({label})" if label else "")
             + f" {r.target_sparsity:.0%}"] = list(r.heads_per_layer)
    return dict(sorted(rows.items()))


def choice_label(options: dict, method: str, leave_out=()) -> list[str]:
    """What sets a run's head choice apart from its method's default one: the ablations that
    change the choice (`choice_ablations`), then any other option of the choice (of this
    method) away from what a run that does not set it has (`usual_values`), as
    `name=value`; none of `leave_out`."""
    named = choice_ablations(options)
    covered = {k for a in named for k in ABLATIONS[a]}
    other = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
             for k, v in sorted(choice_options(options).items())
             if ROLES[k]["group"] != "run" and k not in covered and k not in leave_out
             and v not in usual_values(options, k)
             and method in (ROLES[k]["methods"] or (method,))]
    return named + other


def usual_values(options: dict, name: str) -> tuple:
    """What option `name` is in a run that does not set it: the field's default
    (`PruneConfig(...)`), and the profile's own value for the task when it has one
    (`PruneConfig.for_profile`, `Profile.for_task`: SST-2's cap on the search's steps in
    `full`, say)."""
    profile = PROFILES.get(options.get("profile"))
    own = profile.for_task(options.get("task")).prune_options if profile else {}
    return (default_of(name), own[name]) if name in own else (default_of(name),)


def post_training_summary(rows: dict[tuple, dict]) -> list[str]:
    """Lines computed from the post-training rows: per task, the sparsities at which the best
    path (any mask, any recovery) is within 0.5 and within 1 point of the teacher, and the
    same among the paths that took at most `FAST_PATH_S` seconds, head choice included; and
    on how many masks the better merge is ahead of Kwon's rescaling, level with it (a mask
    that empties a layer leaves every recovery with the bias kept at the same score) and
    behind it (named)."""
    best: dict[tuple, float] = {}
    fast: dict[tuple, float] = {}
    ahead = level = 0
    behind: list[str] = []
    for (task, target, mask, seed, *_), row in rows.items():
        scores = row["scores"]
        gap = row["teacher"] - max(scores.values())
        best[(task, target)] = min(best.get((task, target), gap), gap)
        quick = [v for k, v in scores.items() if row["seconds"][k] <= FAST_PATH_S]
        if quick:
            gap = row["teacher"] - max(quick)
            fast[(task, target)] = min(fast.get((task, target), gap), gap)
        merged = [v for m, v in scores.items() if m not in NO_MERGE + KWON_RECOVERIES]
        kwon = [v for m, v in scores.items() if m in KWON_RECOVERIES]
        if merged and kwon:
            ours, theirs = max(merged), max(kwon)
            ahead += ours > theirs
            level += ours == theirs
            if ours < theirs:
                behind.append(f"{task} {target:.0%} {mask}" + (f" seed {seed}" if seed else ""))
    def within(gaps: dict[tuple, float], task: str, tol: float) -> str:
        return ", ".join(f"{x:.0%}" for (t, x), gap in sorted(gaps.items())
                         if t == task and gap <= tol) or "none"
    lines = []
    for task in sorted({t for t, _ in best}):
        points = sorted(x for t, x in best if t == task)
        lines.append(f"- {task}: the best post-training path is within 0.5 points of the "
                     f"teacher at {within(best, task, 0.5)}, within 1 point at "
                     f"{within(best, task, 1.0)} (of {', '.join(f'{x:.0%}' for x in points)}); "
                     f"in at most {FAST_PATH_S:.0f} s, head choice included, within 0.5 at "
                     f"{within(fast, task, 0.5)}, within 1 at {within(fast, task, 1.0)}.")
    compared = ahead + level + len(behind)
    lines.append(f"- The best of our merges is ahead of the best of Kwon's rescalings on the "
                 f"same mask in {ahead} of {compared} rows, level in {level}, behind in "
                 f"{len(behind)}" + (f" ({', '.join(behind)})." if behind else "."))
    lines += bias_summary(rows)
    return lines


def bias_summary(rows: dict[tuple, dict]) -> list[str]:
    """A line on each recovery run with another bias than kept (`BIAS_PAIRS`) against the same
    recovery of the same mask with the bias kept: how often it scores higher, level, lower,
    and the range of the change."""
    pairs = []
    for (task, target, mask, seed, calib), row in sorted(rows.items()):
        for other, kept in BIAS_PAIRS.items():
            if other in row["scores"] and kept in row["scores"]:
                gain = row["scores"][other] - row["scores"][kept]
                pairs.append((gain, f"{task} {target:.0%} {mask}, {other}"
                              + (f", seed {seed}" if seed else "")
                              + ("" if calib == default_of("calib_examples")
                                 else f", {calib} examples")))
    if not pairs:
        return []
    up, down = max(pairs), min(pairs)
    return [f"- The mean bias against the bias kept, same mask and recovery: higher in "
            f"{sum(g > 0 for g, _ in pairs)} of {len(pairs)}, level in "
            f"{sum(g == 0 for g, _ in pairs)}, lower in {sum(g < 0 for g, _ in pairs)}; the "
            f"change goes from {down[0]:+.2f} ({down[1]}) to {up[0]:+.2f} ({up[1]})."]


def headline_92_table(profile: str, results_root=None) -> str:
    """`headline_table` at 92% of heads removed (6 of MiniLM's 72 heads kept)."""
    return headline_table(profile, results_root, target=0.92)


def run_all_table(profile: str, results_root=None) -> str:
    """Markdown of results/<profile>/run_all.json: what the last `./run_all.sh` cost."""
    import json
    path = Path(results_root or RESULTS_DIR) / profile / "run_all.json"
    if not path.is_file():
        return f"_No `./run_all.sh --profile {profile}` recorded yet._\n"
    r = json.loads(path.read_text())
    head = ["profile", "task", "wall time (min)", "cores", "torch threads", "runs found done",
            "runs added", "commit"]
    row = [r["profile"], r["task"], f"{r['seconds'] / 60:.0f}", str(r["cores"]),
           str(r["torch_threads"]), str(r["runs_before"]),
           str(r["runs_after"] - r["runs_before"]), f"`{r['commit']}`"]
    return ("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n| "
            + " | ".join(row) + " |\n")


def to_run_table(profile: str, results_root=None) -> str:
    """Markdown: the runs of notebooks 05 and 06 (`grid`) with no results file yet, what of
    them `./run_all.sh --profile P` would still make (`runs_to_make`)."""
    p = get_profile(profile)
    todo = grid.missing(grid.comparison_runs(p) + grid.ablation_runs(p), results_root)
    if not todo:
        return (f"_Every run of profile `{profile}`'s comparison and ablations has its "
                f"results file._\n")
    return runs_to_make(todo, profile, results_root)


def seeds_to_run_table(profile: str, results_root=None) -> str:
    """Markdown: notebook 05's comparison over every seed of the profile but its first (which
    `to_run_table` covers), the runs with no results file yet (`runs_to_make`)."""
    p = get_profile(profile)
    if len(p.seeds) == 1:
        return f"_Profile `{profile}` has one seed._\n"
    todo = grid.missing([c for c in grid.comparison_runs(p, n_seeds=len(p.seeds))
                         if c.seed != p.seeds[0]], results_root)
    if not todo:
        return f"_Every seed of profile `{profile}`'s comparison has its results file._\n"
    return runs_to_make(todo, profile, results_root)


def runs_to_make(todo: list, profile: str, results_root=None) -> str:
    """Markdown of runs still to make, by task, method, loss and variant, with an estimate
    of their time: the median wall time of the task's finished fine-tuned runs of the same
    method, loss and variant, else of the method's default variant, else of the method,
    else of any method; on the threads those ran with."""
    done = [r for r in load_results(results_root, profile=profile)
            if r["method"] != "dense" and r.get("train", {}).get("epochs") != 0]

    def median_s(*wheres):
        """The median wall time of the runs matching the first of `wheres` that any match."""
        for where in wheres:
            times = [r["wall_s"] for r in done if all(r[k] == v for k, v in where.items())]
            if times:
                return statistics.median(times)
        return None
    groups: dict[tuple, list] = {}
    for c in todo:
        groups.setdefault((c.task, c.method, c.distill, c.variant), []).append(c)
    head = ["task", "method", "distill", "variant", "heads removed", "seeds", "runs",
            "hours, estimated"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total_h, unknown = 0.0, 0
    for (task, method, distill, variant), cs in sorted(groups.items()):
        each = median_s({"task": task, "method": method, "distill": distill, "variant": variant},
                        {"task": task, "method": method, "variant": "default"},
                        {"task": task, "method": method}, {"task": task})
        hours = None if each is None else each * len(cs) / 3600
        total_h += hours or 0.0
        unknown += hours is None
        lines.append("| " + " | ".join([
            task, method, distill, variant,
            ", ".join(f"{x:.0%}" for x in sorted({c.sparsity for c in cs})),
            ", ".join(str(x) for x in sorted({c.seed for c in cs})),
            str(len(cs)), "" if hours is None else f"{hours:.1f}"]) + " |")
    lines.append("")
    lines.append(f"{len(todo)} runs, about {total_h:.0f} hours by the estimates"
                 + (f" ({unknown} groups with no finished run to estimate from)." if unknown
                    else "."))
    return "\n".join(lines) + "\n"


TABLES = {"dense-teacher": dense_teacher_table, "headline": headline_table,
          "headline-92": headline_92_table, "pruning": pruning_table,
          "comparison": comparison_table, "seeds": seeds_table, "ablations": ablation_table,
          "sweep": sweep_table, "locator-probe": locator_probe_table,
          "locator-budget": locator_budget_table, "post-training": post_training_table,
          "run-all": run_all_table, "to-run": to_run_table, "seeds-to-run": seeds_to_run_table}


def benchmark_table(results_root=None) -> str:
    """Markdown of results/benchmark.json (written by benchmarks/speed.py)."""
    rows = read_rows(Path(results_root or RESULTS_DIR) / "benchmark.json")
    if not rows:
        return "_No benchmark yet: run `python benchmarks/speed.py`._\n"
    head = ["heads removed", "heads kept", "batch", "seq len", "device", "threads", "dense ms",
            "pruned ms", "speed-up", "FLOPs-predicted", "measured / predicted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            f"{r['sparsity']:.0%}", str(r["heads_kept"]), str(r["batch_size"]), str(r["seq_len"]),
            r["device"], str(r["threads"]), f"{r['dense_ms']:.1f}", f"{r['pruned_ms']:.1f}",
            f"{r['speedup']:.2f}", f"{r['flops_speedup']:.2f}",
            f"{r['share_of_predicted']:.2f}"]) + " |")
    return "\n".join(lines) + "\n"


def pipeline_table(results_root=None) -> str:
    """Markdown of results/pipeline_benchmark.json (written by benchmarks/pipeline.py), one
    line per profile, task and sparsity."""
    rows = read_rows(Path(results_root or RESULTS_DIR) / "pipeline_benchmark.json")
    if not rows:
        return "_No pipeline benchmark yet: run `python benchmarks/pipeline.py`._\n"
    head = ["profile", "task", "heads removed", "threads (cores)", "dense fine-tune (s)",
            "method (s)", "of which locator / merge / fine-tune (s)", "time ratio",
            "dense peak RSS (MB)", "method peak RSS (MB)", "memory ratio", "dense score",
            "method score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = list(PROFILES)  # a profile of a plugin's, not among ours, goes last
    for r in sorted(rows, key=lambda r: (order.index(r["profile"]) if r["profile"] in order
                                         else len(order), r["profile"], r["task"],
                                         r["sparsity"])):
        t = r["method_timings"]
        lines.append("| " + " | ".join([
            r["profile"], r["task"], f"{r['sparsity']:.0%}",
            f"{r.get('torch_threads', '?')} ({r.get('cores', '?')})",
            f"{r['dense_wall_s']:.0f}", f"{r['method_wall_s']:.0f}",
            f"{t.get('locate_s', 0):.0f} / {t.get('merge_s', 0):.1f} / "
            f"{t.get('fine_tune_s', 0):.0f}",
            f"{r['wall_ratio']:.2f}", str(r["dense_peak_rss_mb"]), str(r["method_peak_rss_mb"]),
            f"{r['memory_ratio']:.2f}", f"{r['dense_score']:.2f}",
            f"{r['method_score']:.2f}"]) + " |")
    return "\n".join(lines) + "\n"


def post_training_speed_table(results_root=None) -> str:
    """Markdown of results/post_training_speed.json (written by benchmarks/post_training.py):
    each post-training path timed alone from a fine-tuned teacher, its head choice made in
    the run; `FAST_PATH_S` is the budget the run is held to."""
    rows = read_rows(Path(results_root or RESULTS_DIR) / "post_training_speed.json")
    if not rows:
        return "_No timed post-training path yet: run `python benchmarks/post_training.py`._\n"
    rows = sorted(rows, key=lambda r: (
        r["task"], r["sparsity"], r["method"], r["ablation"], r["merge"], r["calibration"],
        r.get("bias", default_of("bias")), r["calib_examples"], r["threads"]))
    head = ["task", "heads removed", "mask", "recovery", "calibration", "threads (cores)",
            "head choice / merge / evaluation (s)", "run (s)", "whole command (s)",
            f"run within {FAST_PATH_S:.0f} s", "teacher", "score", "below the teacher"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["timings"]
        mask = r["method"] + ("" if r["ablation"] == "default" else f", {r['ablation']}")
        lines.append("| " + " | ".join([
            r["task"], f"{r['sparsity']:.0%}", mask, recovery_of(r), str(r["calib_examples"]),
            f"{r['threads']} ({r['cores']})",
            f"{t.get('locate_s', 0):.0f} / {t.get('merge_s', 0):.0f} / "
            f"{t.get('evaluate_s', 0):.0f}",
            f"{r['wall_s']:.0f}", f"{r['command_s']:.0f}",
            "yes" if r["wall_s"] <= FAST_PATH_S else "no", _fmt(r["teacher_score"]),
            _fmt(r["score"]), _fmt(r["teacher_score"] - r["score"])]) + " |")
    return "\n".join(lines) + "\n"


# Tables that belong to no profile: README sections `<!-- table:NAME -->`.
GLOBAL_TABLES = {"benchmark": benchmark_table, "pipeline": pipeline_table,
                 "post-training-speed": post_training_speed_table}


def replace_section(text: str, name: str, profile: str | None, body: str) -> tuple[str, bool]:
    tag = f"{name}:{profile}" if profile else name
    start, end = f"<!-- table:{tag} -->", f"<!-- /table:{tag} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return text, False
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text), True


# The documents whose table sections `report` rewrites.
DOCUMENTS = ("README.md", "docs/findings.md")


def update_documents(profile: str = "full", results_root=None, root: str | Path = ".",
                     documents=DOCUMENTS) -> list[Path]:
    """Write every table to results/<profile>/tables/ and into the sections of each document
    (README.md, docs/findings.md) under `root`; return the documents whose text changed."""
    out_dir = Path(results_root or RESULTS_DIR) / profile / "tables"
    bodies = {}
    for name, make in TABLES.items():
        bodies[(name, profile)] = make(profile, results_root)
        atomic_write_text(out_dir / f"{name}.md", bodies[(name, profile)])
    for name, make in GLOBAL_TABLES.items():
        bodies[(name, None)] = make(results_root)
    changed = []
    for doc in documents:
        path = Path(root) / doc
        if not path.is_file():
            continue
        text = old = path.read_text()
        for (name, prof), body in bodies.items():
            text, _ = replace_section(text, name, prof, body)
        if text != old:
            atomic_write_text(path, text)
            changed.append(path)
    return changed
