"""The results table in every format the collect stage writes: markdown, CSV, JSON, and the
terminal (rich).

One model: one row per competition task, then the 13-task mean, then the extras (HumanEval), so
the mean is never read as including them. Several models (a sweep): the same rows, one column per
model, the best value of each row marked `*`, and the chosen model named under the table. With
n_samples > 1 every pass@k the samples allow is shown with its standard error.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Optional

from launcher import contract
from jobs.results.collection import Collection, TaskResult
from jobs.results.sweep import Results

MEAN_ROW = f"mean ({len(contract.COMPETITION_SUITE)} tasks)"


def _fmt(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


def _ks(results: Results) -> list[str]:
    """pass@k names shown: pass@1, plus every larger k the samples allow (n_samples > 1)."""
    return results.to_dict()["ks"] or ["pass@1"]


def _with_se(results: Results) -> bool:
    return (results.n_samples or 1) > 1


# ---------------------------------------------------------------------------------------------
# one model


def _single_header(results: Results) -> list[str]:
    head = ["task", "pass@1"]
    if _with_se(results):
        for k in _ks(results):
            head += ([f"{k}"] if k != "pass@1" else []) + [f"{k} se"]
    return head + ["problems", "status", "note"]


def _single_row(results: Results, result: TaskResult) -> list[str]:
    row = [result.task, _fmt(result.pass_at_1)]
    if _with_se(results):
        for k in _ks(results):
            ok = result.status == "ok"
            if k != "pass@1":
                row.append(_fmt(result.metrics.get(k)) if ok else "")
            row.append(_fmt(result.metrics.get(f"{k}_stderr")) if ok else "")
    problems = "" if result.num_problems is None else str(result.num_problems)
    note = result.reason or ("limited" if result.limit is not None else "")
    if result.not_comparable:
        note = (note + "; " if note else "") + "not comparable: " + result.not_comparable
    return row + [problems, result.status, note]


def _single_rows(results: Results) -> list[list[str]]:
    collection = results.models[0]
    width = len(_single_header(results))
    rows = [_single_row(results, r) for r in collection.ordered() if r.task in contract.COMPETITION_SUITE]
    mean = collection.mean
    done = sum(1 for t in contract.COMPETITION_SUITE if t in collection.tasks and collection.tasks[t].status == "ok")
    note = "limited" if collection.limited and mean is not None else (
        "" if mean is not None else f"n/a: {done} of {len(contract.COMPETITION_SUITE)} competition tasks")
    mean_row = [MEAN_ROW, _fmt(mean)] + [""] * (width - 5) + ["", "ok" if mean is not None else "n/a", note]
    if _with_se(results):
        mean_row[2] = _fmt(collection.mean_stderr)
    rows.append(mean_row)
    rows += [_single_row(results, r) for r in collection.ordered() if r.task not in contract.COMPETITION_SUITE]
    return rows


# ---------------------------------------------------------------------------------------------
# several models


def _cell(result: Optional[TaskResult], k: str, se: bool, best: bool) -> str:
    if result is None:
        return ""
    if result.status != "ok":
        return result.status
    text = _fmt(result.metrics.get(k))
    if se and f"{k}_stderr" in result.metrics:
        text += f" ± {result.metrics[f'{k}_stderr']:.4f}"
    return text + (" *" if best else "")


def _matrix_rows(results: Results, k: str) -> list[list[str]]:
    se = _with_se(results)
    best = results.to_dict()["best_per_task"]
    tasks = [t for t in contract.ALL_BENCHMARKS if any(t in c.tasks for c in results.models)]
    rows = []
    for task in [t for t in tasks if t in contract.COMPETITION_SUITE]:
        rows.append([task] + [_cell(c.tasks.get(task), k, se, k == "pass@1" and c.model in best.get(task, []))
                              for c in results.models])
    if k == "pass@1":
        chosen = results.best.model
        mean_cells = []
        for c in results.models:
            if c.mean is None:
                mean_cells.append("n/a")
                continue
            text = _fmt(c.mean) + (f" ± {c.mean_stderr:.4f}" if se and c.mean_stderr is not None else "")
            mean_cells.append(text + (" *" if c.model == chosen else ""))
        rows.append([MEAN_ROW] + mean_cells)
    for task in [t for t in tasks if t not in contract.COMPETITION_SUITE]:
        rows.append([task] + [_cell(c.tasks.get(task), k, se, k == "pass@1" and c.model in best.get(task, []))
                              for c in results.models])
    return rows


def _matrix_header(results: Results, k: str) -> list[str]:
    return [f"task ({k})"] + [c.model for c in results.models]


def best_line(results: Results) -> str:
    best = results.best
    if best.model is None:
        return f"Best model: none ({best.reason})."
    line = f"Best model: {best.model} (13-task mean {best.mean:.4f}; {best.reason})."
    for name, why in best.excluded.items():
        line += f" Left out {name}: {why}."
    return line


# ---------------------------------------------------------------------------------------------
# formats


def _title(results: Results) -> str:
    label = " (limited)" if results.limited else ""
    if len(results.models) == 1:
        return f"Results of {results.models[0].model}{label}"
    return f"Results of {len(results.models)} models{label}"


def _tables(results: Results) -> list[tuple[list[str], list[list[str]]]]:
    if len(results.models) == 1:
        return [(_single_header(results), _single_rows(results))]
    return [(_matrix_header(results, k), _matrix_rows(results, k)) for k in _ks(results)]


def render_markdown(results: Results) -> str:
    lines = [f"# {_title(results)}", ""]
    for header, rows in _tables(results):
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        lines.append("")
    lines.append("HumanEval is reported beside the 13-task mean, not in it.")
    if len(results.models) > 1:
        lines.append("`*` marks the best value of each row (all of them on a tie). " + best_line(results))
    if _with_se(results):
        lines.append("`se`/`±`: standard error of the mean over problems.")
    if results.limited:
        lines.append("Limited run: only the first problems of each benchmark; not comparable, no submission.")
    for collection in results.models:
        if collection.not_comparable:
            lines.append(f"Not comparable with the reference harness ({collection.model}): other run-time limits for "
                         + ", ".join(collection.not_comparable) + " (the recipe's `stages.evaluate.timeout_s`).")
    if not results.complete:
        lines += ["", "**Incomplete:** " + results.problem_summary()]
    return "\n".join(lines) + "\n"


def render_csv(results: Results) -> str:
    """One model: task, pass@1, ..., status, note. Several: one column per model and pass@k."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if len(results.models) == 1:
        writer.writerow(_single_header(results))
        writer.writerows(_single_rows(results))
        return buffer.getvalue()
    tables = _tables(results)
    header = ["task"] + [f"{c.model} {k}" for k in _ks(results) for c in results.models]
    writer.writerow(header)
    by_task: dict[str, list[str]] = {}
    order: list[str] = []
    for _head, rows in tables:
        for row in rows:
            if row[0] not in by_task:
                by_task[row[0]] = []
                order.append(row[0])
            by_task[row[0]] += row[1:]
    width = len(header) - 1
    writer.writerows([task] + (by_task[task] + [""] * width)[:width] for task in order)
    return buffer.getvalue()


def render_json(results: Results, submission: Optional[dict[str, Any]] = None) -> str:
    return json.dumps(results.to_dict(submission), indent=2, sort_keys=True) + "\n"


def print_table(results: Results, console: Any = None) -> None:
    """The table(s) on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for header, rows in _tables(results):
        table = Table(title=_title(results))
        for name in header:
            table.add_column(name, justify="left" if name.startswith("task") or name in ("status", "note") else "right")
        for row in rows:
            style = "red" if any(cell in ("missing", "failed") for cell in row) else None
            if row[0] == MEAN_ROW:
                style = "bold"
            table.add_row(*row, style=style)
        console.print(table)
    if len(results.models) > 1:
        console.print(best_line(results))
    if not results.complete:
        console.print(f"[red]Incomplete:[/red] {results.problem_summary()}")


def render(results: Results, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(results)
    if fmt == "csv":
        return render_csv(results)
    if fmt == "json":
        return render_json(results)
    raise ValueError(f"unknown format {fmt!r} (md, csv, json; 'table' prints via rich)")
