"""Figures (seaborn/matplotlib), each saved as PNG and PDF under `figures/`, and shown
inline in a notebook.

Files are byte-stable where matplotlib allows: no creation date in the PDF, no software
tag in the PNG, fixed size and DPI.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script or a test: draw to files only
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

FIGURES_DIR = Path("figures")


def in_notebook() -> bool:
    """True in a Jupyter kernel (JupyterLab, papermill), where figures are shown inline."""
    return "ipykernel" in sys.modules and "inline" in matplotlib.get_backend().lower()


def save(fig, name: str, out_dir=None) -> list[Path]:
    """Write `name`.png and `name`.pdf, show the figure inline in a notebook, close it;
    return both paths."""
    out = Path(out_dir or FIGURES_DIR)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=120, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "ModDate": None, "Producer": None,
                                    "Creator": None})
    if in_notebook():
        from IPython.display import display
        display(fig)
    plt.close(fig)
    return paths


def similarity_heatmaps(similarity, title: str, assignment=None):
    """One heatmap per layer of the (H x H) head similarity; with a peer assignment
    ({pruned: peer} per layer), each pruned head's row marks its peer with a box."""
    sim = np.asarray(similarity)
    n_layers = sim.shape[0]
    cols = min(n_layers, 3)
    rows = -(-n_layers // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for l, ax in enumerate(axes.flat):
        if l >= n_layers:
            ax.axis("off")
            continue
        sns.heatmap(sim[l], ax=ax, vmin=-1 if sim.min() < 0 else 0, vmax=1, cmap="vlag",
                    square=True, cbar=l % cols == cols - 1)
        ax.set_title(f"layer {l}")
        ax.set_xlabel("head")
        ax.set_ylabel("head")
        if assignment is not None:
            for p, r in assignment[l].items():
                ax.add_patch(plt.Rectangle((int(r), int(p)), 1, 1, fill=False, lw=2, ec="black"))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def locator_dynamics(log: list[dict], title: str):
    """Expected open heads E against the budget K_t; what keeps E there (the projection's
    shift and temperature, or the learned multipliers); open gates per layer."""
    df = pd.DataFrame(log)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].plot(df["step"], df["expected_heads"], label="expected heads E")
    axes[0].plot(df["step"], df["k_t"], "--", label="budget K_t")
    axes[0].set_xlabel("step")
    axes[0].legend()
    if "shift" in df:  # the projection
        axes[1].plot(df["step"], np.array(df["shift"].tolist()).mean(1), label="shift c")
        twin = axes[1].twinx()
        twin.plot(df["step"], df["temperature"], "--", c="gray", label="temperature T")
        twin.set_ylabel("temperature T")
        twin.legend(loc="lower left")
    else:
        axes[1].plot(df["step"], np.array(df["lambda1"].tolist()).mean(1), label="lambda1")
        axes[1].plot(df["step"], np.array(df["lambda2"].tolist()).mean(1), label="lambda2")
    axes[1].set_xlabel("step")
    axes[1].legend(loc="upper right")
    opened = np.array(df["open_per_layer"].tolist())
    for l in range(opened.shape[1]):
        axes[2].plot(df["step"], opened[:, l], label=f"layer {l}")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("open gates")
    axes[2].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def score_vs_sparsity(frame: pd.DataFrame, dense: pd.DataFrame):
    """Score against heads removed, a line per (method, distill), a panel per task; the
    dense teacher as a dashed line."""
    tasks = sorted(frame["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = frame[frame["task"] == task].copy()
        sub["run"] = [f"{m} ({d})" if v == "default" else f"{m} ({d}, {v})"
                      for m, d, v in zip(sub["method"], sub["distill"], sub["variant"])]
        sns.lineplot(sub, x="sparsity", y="score", hue="run", marker="o", ax=ax,
                     errorbar=None, hue_order=sorted(sub["run"].unique()))
        d = dense[dense["task"] == task]
        if len(d):
            ax.axhline(float(d["score"].max()), ls="--", c="gray", label="dense teacher")
        ax.set_title(task)
        ax.set_xlabel("share of heads removed")
        ax.set_ylabel(sub["metric"].iloc[0])
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def kept_heads_heatmap(choices: dict[str, list[int]]):
    """Kept heads per layer, a row per head choice (`report.head_choices`: "task rest"),
    a panel per task."""
    tasks = sorted({name.split(" ", 1)[0] for name in choices})
    panels = [{name.split(" ", 1)[1]: row for name, row in choices.items()
               if name.split(" ", 1)[0] == task} for task in tasks]
    label = max((len(n) for p in panels for n in p), default=0)  # room for the row names
    n_layers = max((len(r) for r in choices.values()), default=1)
    width = 0.3 * n_layers + 0.075 * label + 0.4
    fig, axes = plt.subplots(1, len(tasks), squeeze=False, figsize=(
        width * len(tasks), 0.3 * max((len(p) for p in panels), default=1) + 1.2))
    for ax, task, panel in zip(axes[0], tasks, panels):
        data = pd.DataFrame(panel).T
        data.columns = [f"L{c}" for c in data.columns]
        sns.heatmap(data, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, vmin=0,
                    vmax=12, square=True, annot_kws={"fontsize": 7})
        ax.set_anchor("N")  # a short panel at the top, its cells the size of the others
        ax.set_title(task)
        ax.set_xlabel("layer")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def cost_vs_sparsity(frame: pd.DataFrame):
    """Parameters and FLOPs (128 tokens) against heads removed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sns.scatterplot(frame, x="sparsity", y="params", hue="task", ax=axes[0])
    sns.scatterplot(frame, x="sparsity", y="flops", hue="task", ax=axes[1])
    axes[0].set_ylabel("parameters")
    axes[1].set_ylabel("FLOPs per 128-token sequence")
    for ax in axes:
        ax.set_xlabel("share of heads removed")
    fig.tight_layout()
    return fig


def latency_vs_sparsity(rows: list[dict]):
    """Inference latency and speed-up against heads removed, from the speed benchmark's
    rows (results/benchmark.json): a panel per batch size; the FLOPs-predicted speed-up
    dashed."""
    df = pd.DataFrame(rows)
    sizes = sorted(df["batch_size"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False)
    for ax, b in zip(axes[0], sizes):
        sub = df[df["batch_size"] == b].sort_values("sparsity")
        ax.plot(sub["sparsity"], sub["speedup"], "o-", label="measured speed-up")
        ax.plot(sub["sparsity"], sub["flops_speedup"], "s--", label="FLOPs-predicted")
        ax.axhline(1.0, c="gray", lw=0.8)
        ax.set_xlabel("share of heads removed")
        ax.set_ylabel("dense / pruned latency")
        dense_ms = float(sub["dense_ms"].median())
        ax.set_title(f"batch {b}, seq {int(sub['seq_len'].iloc[0])} "
                     f"(dense {dense_ms:.1f} ms, {sub['device'].iloc[0]})")
        for r in sub.itertuples():
            ax.annotate(f"{r.pruned_ms:.1f} ms", (r.sparsity, r.speedup), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
