"""The report's figures, drawn with matplotlib's Agg backend (no display, no network) and returned
as PNG data URIs, so report.html carries them inside itself.

Sizes are chosen for a laptop screen: 9 inches wide at 100 dpi (900 px), labels at 10 pt.
"""
from __future__ import annotations

import base64
import io
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jobs.results.run_results import MEAN_ROW, Column, status_counts  # noqa: E402
from jobs.results.training_curves import LEARNING_RATE, TRAIN_LOSS, VALIDATION_LOSS, Curve  # noqa: E402

WIDTH_IN = 9.0
DPI = 100
#: sandbox outcomes in the order they are stacked, with the label the report shows
OUTCOMES = (("passed", "passed"), ("failed", "failed"), ("runtime_error", "runtime error"),
            ("compile_error", "compile error"), ("timeout", "timeout"), ("killed", "killed"))
OUTCOME_COLOURS = ("#2e7d32", "#c62828", "#ef6c00", "#6a1b9a", "#1565c0", "#424242")
#: columns drawn in the per-model figures; beyond that the figure would not be readable
MAX_MODELS_DRAWN = 6

plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "figure.dpi": DPI})


def to_data_uri(fig: Any) -> str:
    """The figure as a base64 PNG data URI; the figure is closed."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pass_at_1_bars(cols: list[Column], tasks: list[str]) -> Optional[str]:
    """Grouped horizontal bars: pass@1 per task (rows) per model (bars); the 13-task mean last."""
    cols = cols[:MAX_MODELS_DRAWN]
    rows = [t for t in tasks if t != MEAN_ROW] + [MEAN_ROW]
    if not any(c.pass_at_1(t) is not None for c in cols for t in rows):
        return None
    bar = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 0.9 + len(rows) * max(0.32, 0.16 * len(cols))))
    for k, col in enumerate(cols):
        values = [col.pass_at_1(t) or 0.0 for t in rows]
        ys = [i + (k - (len(cols) - 1) / 2) * bar for i in range(len(rows))]
        ax.barh(ys, values, height=bar, label=col.label)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("pass@1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title("pass@1 per task" + (" and model" if len(cols) > 1 else ""))
    return to_data_uri(fig)


def step_lines(cols: list[Column], validation: Optional[Curve]) -> Optional[str]:
    """pass@1 (13-task mean, HumanEval) of each checkpoint against its step, and the validation
    loss on a second axis. None when no model is a checkpoint with a step."""
    stepped = sorted((int(c.model["step"]), c) for c in cols if isinstance(c.model.get("step"), int))
    if not stepped:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.2))
    steps = [s for s, _c in stepped]
    for name, row in (("13-task mean pass@1", MEAN_ROW), ("HumanEval pass@1", "humaneval")):
        values = [c.pass_at_1(row) for _s, c in stepped]
        if any(v is not None for v in values):
            ax.plot(steps, [float("nan") if v is None else v for v in values], marker="o", label=name)
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("pass@1")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if validation:
        twin = ax.twinx()
        twin.plot([s for s, _v in validation], [v for _s, v in validation], color="#888888", linestyle="--",
                  marker=".", label="validation loss")
        twin.set_ylabel("validation loss")
        more_h, more_l = twin.get_legend_handles_labels()
        handles, labels = handles + more_h, labels + more_l
    ax.legend(handles, labels, loc="best", fontsize=9)
    ax.set_title("pass@1 and validation loss against the checkpoint step")
    return to_data_uri(fig)


def training_curves(curves: dict[str, Curve]) -> Optional[str]:
    """Training (and validation) loss, and the learning rate, against the step."""
    if TRAIN_LOSS not in curves and LEARNING_RATE not in curves:
        return None
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.6))
    for tag, label, style in ((TRAIN_LOSS, "training loss", "-"), (VALIDATION_LOSS, "validation loss", "--")):
        if tag in curves:
            loss_ax.plot([s for s, _v in curves[tag]], [v for _s, v in curves[tag]], style, label=label)
    loss_ax.set_xlabel("step")
    loss_ax.set_title("loss")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=9)
    if LEARNING_RATE in curves:
        lr_ax.plot([s for s, _v in curves[LEARNING_RATE]], [v for _s, v in curves[LEARNING_RATE]], color="#6a1b9a")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    lr_ax.set_xlabel("step")
    lr_ax.set_title("learning rate")
    lr_ax.grid(alpha=0.3)
    return to_data_uri(fig)


def outcomes_by_language(cols: list[Column], tasks: list[str], language_of: Any) -> tuple[Optional[str], list[dict[str, Any]]]:
    """Stacked bars of sample outcomes per language (per model when several), and the counts."""
    table: list[dict[str, Any]] = []
    for col in cols:
        by_language: dict[str, dict[str, int]] = {}
        for task in tasks:
            if task == MEAN_ROW:
                continue
            counts = status_counts(col, task)
            if counts:
                bucket = by_language.setdefault(language_of(task), {})
                for status, n in counts.items():
                    bucket[status] = bucket.get(status, 0) + n
        table += [{"model": col.label, "language": lang, **counts} for lang, counts in sorted(by_language.items())]
    if not table:
        return None, table
    order = {c.label: i for i, c in enumerate(cols)}
    table.sort(key=lambda r: (r["language"], order[r["model"]]))  # a language's models side by side
    drawn = [r for r in table if order[r["model"]] < MAX_MODELS_DRAWN]
    labels = [r["language"] if len(cols) == 1 else f"{r['language']} · {r['model']}" for r in drawn]
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.0 + 0.32 * len(drawn)))
    left = [0] * len(drawn)
    for (status, label), colour in zip(OUTCOMES, OUTCOME_COLOURS):
        values = [r.get(status, 0) for r in drawn]
        if any(values):
            ax.barh(range(len(drawn)), values, left=left, color=colour, label=label)
            left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(range(len(drawn)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("samples")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title("outcomes per language")
    return to_data_uri(fig), table


def resources_bars(by_stage: dict[str, dict[str, dict[str, float]]]) -> Optional[str]:
    """GPU-hours and CPU-hours per stage ({run: {stage: totals}}), side by side (CPU-hours alone
    when no stage used a GPU)."""
    stages = list(dict.fromkeys(s for stages in by_stage.values() for s in stages))
    if not stages:
        return None
    kinds = [("gpu_hours", "GPU-hours"), ("cpu_hours", "CPU-hours")]
    if not any(t.get("gpu_hours") for stages in by_stage.values() for t in stages.values()):
        kinds = kinds[1:]  # a CPU-only run: an empty GPU panel would only take room
    fig, axes = plt.subplots(1, len(kinds), figsize=(WIDTH_IN, max(2.8, 1.2 + 0.4 * len(stages) * len(by_stage))),
                             squeeze=False)
    axes = list(axes[0])
    bar = 0.8 / len(by_stage)
    for ax, (key, title) in zip(axes, kinds):
        for k, (run, totals) in enumerate(by_stage.items()):
            ys = [i + (k - (len(by_stage) - 1) / 2) * bar for i in range(len(stages))]
            ax.barh(ys, [totals.get(s, {}).get(key, 0.0) for s in stages], height=bar, label=run)
        ax.set_yticks(range(len(stages)), stages)
        ax.invert_yaxis()
        ax.set_title(f"{title} per stage")
        ax.grid(axis="x", alpha=0.3)
    if len(by_stage) > 1:
        axes[0].legend(fontsize=9)
    return to_data_uri(fig)
