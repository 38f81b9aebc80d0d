"""Tables generated from results/*.json, and the README sections that show them.

A README section between `<!-- table:NAME:PROFILE -->` and `<!-- /table:NAME:PROFILE -->`
is rewritten from the results; nothing in it is typed by hand.
"""
from __future__ import annotations

import re
from pathlib import Path

from .glue import get_task
from .results import RESULTS_DIR, atomic_write_text, load_results


def _fmt(x, digits=2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


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
    runs = [r for r in load_results(results_root, profile=profile) if r["method"] != "dense"]
    if not runs:
        return f"_No pruning results for profile `{profile}` yet._\n"
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["task"], r["model"], r["target_sparsity"], r["method"], r["distill"], r["variant"])
        groups.setdefault(key, []).append(r)
    head = ["task", "model", "metric", "heads removed", "method", "distill", "variant", "seeds",
            "teacher", "score", "Δ teacher", "heads per layer", "params (M)", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, model, target, method, distill, variant), rs in sorted(groups.items()):
        mean = sum(r["score"] for r in rs) / len(rs)
        teacher = rs[0]["teacher_score"]
        row = [task, model, rs[0]["metric"], f"{rs[0]['sparsity']:.1%}", method, distill, variant,
               str(len(rs)), _fmt(teacher), f"**{mean:.2f}**", f"{mean - teacher:+.2f}",
               str(rs[0]["heads_per_layer"]) if len(rs) == 1 else "varies",
               f"{rs[0]['params'] / 1e6:.2f}", f"{sum(r['wall_s'] for r in rs) / len(rs):.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


TABLES = {"dense-teacher": dense_teacher_table, "pruning": pruning_table}


def replace_section(text: str, name: str, profile: str, body: str) -> tuple[str, bool]:
    start, end = f"<!-- table:{name}:{profile} -->", f"<!-- /table:{name}:{profile} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return text, False
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text), True


def update_readme(readme: str | Path = "README.md", profile: str = "full",
                  results_root=None) -> Path:
    """Write every table to results/<profile>/tables/ and into the README's sections."""
    readme = Path(readme)
    out_dir = Path(results_root or RESULTS_DIR) / profile / "tables"
    text = readme.read_text() if readme.is_file() else ""
    for name, make in TABLES.items():
        body = make(profile, results_root)
        atomic_write_text(out_dir / f"{name}.md", body)
        text, _ = replace_section(text, name, profile, body)
    if readme.is_file():
        atomic_write_text(readme, text)
    return readme
