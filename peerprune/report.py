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


TABLES = {"dense-teacher": dense_teacher_table}


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
