"""The results table of a `Collection` in every format the collect stage writes: markdown, CSV,
JSON, and the terminal (rich). One row per competition task, then the 13-task mean, then the
extras (HumanEval), so the mean is never read as including them.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Optional

from launcher import contract
from jobs.results.collection import Collection, TaskResult

def _fmt(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


def _rows(collection: Collection) -> list[list[str]]:
    """task, pass@1, problems, status, note — competition tasks, the mean, then the extras."""
    rows = []
    for result in collection.ordered():
        if result.task not in contract.COMPETITION_SUITE:
            continue
        rows.append(_row(result))
    mean = collection.mean
    done = sum(1 for t in contract.COMPETITION_SUITE if t in collection.tasks and collection.tasks[t].status == "ok")
    note = "limited" if collection.limited and mean is not None else (
        "" if mean is not None else f"n/a: {done} of {len(contract.COMPETITION_SUITE)} competition tasks")
    rows.append([f"mean ({len(contract.COMPETITION_SUITE)} tasks)", _fmt(mean), "", "ok" if mean is not None else "n/a", note])
    for result in collection.ordered():
        if result.task not in contract.COMPETITION_SUITE:
            rows.append(_row(result))
    return rows


def _row(result: TaskResult) -> list[str]:
    problems = "" if result.num_problems is None else str(result.num_problems)
    note = result.reason or ("limited" if result.limit is not None else "")
    if result.not_comparable:
        note = (note + "; " if note else "") + "not comparable: " + result.not_comparable
    return [result.task, _fmt(result.pass_at_1), problems, result.status, note]


HEADER = ["task", "pass@1", "problems", "status", "note"]


def _title(collection: Collection) -> str:
    label = " (limited)" if collection.limited else ""
    return f"Results of {collection.model}{label}"


def render_markdown(collection: Collection) -> str:
    lines = [f"# {_title(collection)}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in _rows(collection):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines.append("")
    lines.append("HumanEval is reported beside the 13-task mean, not in it.")
    if collection.limited:
        lines.append("Limited run: only the first problems of each benchmark; not comparable, no submission.")
    if collection.not_comparable:
        lines.append("Not comparable with the reference harness: other run-time limits for "
                     + ", ".join(collection.not_comparable) + " (the recipe's `stages.evaluate.timeout_s`).")
    if not collection.complete:
        lines.append("")
        lines.append("**Incomplete:** " + collection.problem_summary())
    return "\n".join(lines) + "\n"


def render_csv(collection: Collection) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(_rows(collection))
    return buffer.getvalue()


def render_json(collection: Collection) -> str:
    return json.dumps(collection.to_dict(), indent=2, sort_keys=True) + "\n"


def print_table(collection: Collection, console: Any = None) -> None:
    """The table on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=_title(collection))
    for name in HEADER:
        table.add_column(name, justify="right" if name in ("pass@1", "problems") else "left")
    for row in _rows(collection):
        style = None
        if row[3] in ("missing", "failed"):
            style = "red"
        elif row[0].startswith("mean"):
            style = "bold"
        table.add_row(*row, style=style)
    console.print(table)
    if not collection.complete:
        console.print(f"[red]Incomplete:[/red] {collection.problem_summary()}")


def render(collection: Collection, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(collection)
    if fmt == "csv":
        return render_csv(collection)
    if fmt == "json":
        return render_json(collection)
    raise ValueError(f"unknown format {fmt!r} (md, csv, json; 'table' prints via rich)")
