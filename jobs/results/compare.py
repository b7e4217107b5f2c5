"""`mftlaunch compare RUN [RUN...]`: the tasks x models table across runs (and across the models
inside each run), the best per task, and the difference per task.

Numbers are only comparable when they were measured on the same problems with the same prompts:
runs whose benchmark data (sha256) or prompt/decoding settings differ are refused, with every
difference named, unless the caller forces the comparison.
"""
from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from jobs.results.run_results import MEAN_ROW, Column, RunResults, best_labels, cell, columns, task_rows
from launcher.rundir import read_json

#: per-task settings that change what a pass@1 means, read from each metrics file's `config`
PROMPT_SETTINGS = ("prompt_format", "n_samples", "greedy", "temperature", "top_p", "max_length",
                   "max_new_tokens", "eos", "limit")
FORMATS = ("table", "md", "csv", "json", "html")


class MismatchedRuns(Exception):
    """The runs were measured differently; the message lists every difference."""


def _config(col: Column, task: str, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    path = col.task(task).get("metrics_path")
    if not path:
        return {}
    if path not in cache:
        try:
            cache[path] = dict(read_json(Path(path)).get("config") or {})
        except (OSError, ValueError, AttributeError):
            cache[path] = {}
    return cache[path]


def settings_of(col: Column, task: str, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What must agree for `task` to be comparable: its data sha256 and prompt settings."""
    entry = col.task(task)
    config = _config(col, task, cache)
    out = {key: config[key] for key in PROMPT_SETTINGS if key in config}
    if entry.get("limit") is not None or "limit" not in out:
        out["limit"] = entry.get("limit", out.get("limit"))
    sha = entry.get("data_sha256") or config.get("data_sha256")
    if sha:
        out["data_sha256"] = sha
    return out


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:12] + "…" if len(text) > 16 else text


def mismatches(cols: list[Column], tasks: list[str]) -> list[str]:
    """One line per setting that differs between models of different runs: the tasks it differs
    on and one example. Models inside one run may differ (a sweep chose their prompt formats)."""
    cache: dict[str, dict[str, Any]] = {}
    found: dict[str, list[tuple[str, str]]] = {}
    for task in tasks:
        if task == MEAN_ROW:
            continue
        values = [(c, settings_of(c, task, cache)) for c in cols if c.task(task).get("status") == "ok"]
        for key in sorted({k for _c, s in values for k in s}):
            for i, (a, sa) in enumerate(values):
                pair = next(((b, sb) for b, sb in values[i + 1:]
                             if b.run is not a.run and key in sa and key in sb and sa[key] != sb[key]), None)
                if pair:
                    b, sb = pair
                    found.setdefault(key, []).append(
                        (task, f"{a.label} {_show(sa[key])} vs {b.label} {_show(sb[key])}"))
                    break
    lines = []
    for key, where in found.items():
        task, example = where[0]
        more = f" and {len(where) - 1} more task(s)" if len(where) > 1 else ""
        lines.append(f"{key} differs on {task}{more}: {example}")
    return lines


@dataclass
class Comparison:
    runs: list[RunResults]
    cols: list[Column]
    tasks: list[str]
    differences: list[str] = field(default_factory=list)

    @property
    def delta_name(self) -> str:
        if len(self.cols) == 2:
            return f"Δ ({self.cols[1].label} − {self.cols[0].label})"
        return "Δ (max − min)"

    def delta(self, task: str) -> Optional[float]:
        """The second column minus the first with two columns, else the spread of the row."""
        values = [c.pass_at_1(task) for c in self.cols]
        if len(values) == 2:
            return None if None in values else values[1] - values[0]  # type: ignore[operator]
        present = [v for v in values if v is not None]
        return max(present) - min(present) if len(present) >= 2 else None

    def header(self) -> list[str]:
        return ["task", *[c.label for c in self.cols], "best", self.delta_name]

    def rows(self) -> list[list[str]]:
        out = []
        for task in self.tasks:
            delta = self.delta(task)
            shown = "" if delta is None else f"{delta:+.4f}" if len(self.cols) == 2 else f"{delta:.4f}"
            best = best_labels(self.cols, task)
            named = "all tied" if len(self.cols) > 1 and len(best) == len(self.cols) else ", ".join(best)
            out.append([task, *[cell(c, task) for c in self.cols], named, shown])
        return out


def compare(runs: list[RunResults], force: bool = False) -> Comparison:
    """The comparison of `runs`; MismatchedRuns when they differ in data or prompts (unless
    `force`, which keeps the differences in `.differences` for the caller to print)."""
    cols = columns(runs)
    tasks = task_rows(runs)
    differences = mismatches(cols, tasks)
    if differences and not force:
        raise MismatchedRuns("refusing to compare runs measured differently (--force compares anyway):\n  "
                             + "\n  ".join(differences))
    return Comparison(runs, cols, tasks, differences)


# ---------------------------------------------------------------------------------------------
# formats


def render_markdown(c: Comparison) -> str:
    lines = ["| " + " | ".join(c.header()) + " |", "|" + "---|" * len(c.header())]
    for row in c.rows():
        best = set(best_labels(c.cols, row[0]))
        cells = [f"**{v}**" if label in best else v for label, v in zip([x.label for x in c.cols], row[1:-2])]
        lines.append("| " + " | ".join([row[0], *cells, row[-2], row[-1]]) + " |")
    return "\n".join(lines) + "\n"


def render_csv(c: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(c.header())
    writer.writerows(c.rows())
    return buffer.getvalue()


def to_dict(c: Comparison) -> dict[str, Any]:
    return {
        "runs": [str(r.run_dir.root) for r in c.runs],
        "models": [col.label for col in c.cols],
        "pass@1": {t: {col.label: col.pass_at_1(t) for col in c.cols} for t in c.tasks},
        "status": {t: {col.label: col.task(t).get("status") for col in c.cols} for t in c.tasks if t != MEAN_ROW},
        "best": {t: best_labels(c.cols, t) for t in c.tasks},
        "delta": {"meaning": c.delta_name, "values": {t: c.delta(t) for t in c.tasks}},
        "differences": c.differences,
    }


def render_html_table(c: Comparison) -> str:
    """The table as an HTML fragment (id="results-table"); the best value of each row is bold."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in c.header())
    body = []
    for task, row in zip(c.tasks, c.rows()):
        best = set(best_labels(c.cols, task))
        cells = [f'<th scope="row">{html.escape(task)}</th>']
        for col, value in zip(c.cols, row[1:-2]):
            cls = ' class="best"' if col.label in best else (' class="bad"' if value in ("missing", "failed") else "")
            cells.append(f"<td{cls}>{html.escape(value)}</td>")
        cells += [f"<td>{html.escape(row[-2])}</td>", f"<td>{html.escape(row[-1])}</td>"]
        css = ' class="mean"' if task == MEAN_ROW else ""
        body.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    return f'<table id="results-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_html(c: Comparison) -> str:
    from jobs.results.report import page

    notes = [f"Differences (compared with --force): {d}" for d in c.differences]
    return page("Comparison of " + ", ".join(r.name for r in c.runs),
                [("Results (pass@1)", render_html_table(c) + "".join(f'<p class="warn">{html.escape(n)}</p>' for n in notes))])


def render(c: Comparison, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(c)
    if fmt == "csv":
        return render_csv(c)
    if fmt == "json":
        return json.dumps(to_dict(c), indent=2) + "\n"
    if fmt == "html":
        return render_html(c)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")


def print_table(c: Comparison, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # pipes and logs: wide enough for every column
            console = Console(width=max(120, 30 + 16 * len(c.header())))
    table = Table(title="pass@1: " + ", ".join(r.name for r in c.runs))
    for i, name in enumerate(c.header()):
        table.add_column(name, justify="left" if i == 0 or name == "best" else "right", no_wrap=i == 0)
    for task, row in zip(c.tasks, c.rows()):
        best = set(best_labels(c.cols, task))
        cells = [f"[bold green]{v}[/]" if col.label in best else v for col, v in zip(c.cols, row[1:-2])]
        table.add_row(row[0], *cells, row[-2], row[-1], style="bold" if task == MEAN_ROW else None)
    console.print(table)
    for line in c.differences:
        console.print(f"[yellow]warning:[/] {line}")
