"""A run's collected results (collect/results.json, /work/coord/results-schema.md) read back for
`compare` and `report`, and the tasks x models table they share.

A run directory that is missing, empty, not collected yet or damaged is answered with
`ResultsUnreadable`, whose message is one line naming the directory and what to do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from launcher import contract
from launcher.rundir import RunDir, read_json

MEAN_ROW = "mean (13 tasks)"


class ResultsUnreadable(Exception):
    """The run directory cannot be read as collected results; the message says why, in one line."""


@dataclass
class RunResults:
    """One run's results.json (schema 2; a schema-1 single-model file is read as one model)."""

    run_dir: RunDir
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.run_dir.root.name

    @property
    def models(self) -> list[dict[str, Any]]:
        return self.data["models"]

    @property
    def limited(self) -> bool:
        return bool(self.data.get("limited"))

    @property
    def best_model(self) -> Optional[str]:
        return (self.data.get("best") or {}).get("model")


def as_schema2(data: dict[str, Any]) -> dict[str, Any]:
    """Today's single-model results.json → the schema-2 shape (one entry in `models`)."""
    if data.get("schema") == 2 or "models" in data:
        return data
    tasks = data.get("tasks") or {}
    model = {key: data.get(key) for key in ("complete", "mean_competition", "humaneval", "missing", "failed")}
    model.update(name=data["model"], tasks=tasks, step=None, competition_complete=data.get("mean_competition") is not None)
    return {"schema": 1, "limited": data.get("limited"), "models": [model],
            "competition_tasks": [t for t in contract.COMPETITION_SUITE if t in tasks],
            "extra_tasks": [t for t in tasks if t not in contract.COMPETITION_SUITE],
            "best": {"model": data["model"] if model["competition_complete"] else None}}


def load_run_results(path: str | Path) -> RunResults:
    """Read RUN/collect/results.json; ResultsUnreadable (one line) when it cannot be. The run
    directory itself was checked by the command line (launcher.run_dir_check) before."""
    root = Path(path)
    run_dir = RunDir(root)
    results = run_dir.results_table("json")
    if not results.is_file():
        raise ResultsUnreadable(f"{root}: no {results.relative_to(run_dir.root)} yet: its collect stage "
                                f"has not run (see `mftlaunch status {root}`)")
    try:
        data = read_json(results)
        data = as_schema2(data)
        if not isinstance(data["models"], list) or not all(
                isinstance(m["name"], str) and isinstance(m["tasks"], dict)
                and all(isinstance(entry, dict) for entry in m["tasks"].values()) for m in data["models"]):
            raise ValueError("models[] needs a name and tasks, each task an object")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ResultsUnreadable(f"{results}: damaged ({type(exc).__name__}: {reason}); collect the run "
                                f"again (`mftlaunch resume {root}` reruns its collect stage)") from None
    return RunResults(run_dir, data)


# ---------------------------------------------------------------------------------------------
# the table


@dataclass
class Column:
    """One model of one run: a column of the tasks x models table."""

    label: str
    run: RunResults
    model: dict[str, Any]

    def task(self, task: str) -> dict[str, Any]:
        return self.model["tasks"].get(task) or {"status": "missing", "reason": "not asked for"}

    def pass_at_1(self, task: str) -> Optional[float]:
        """pass@1 of `task` (None unless "ok"); the row MEAN_ROW is the 13-task mean."""
        if task == MEAN_ROW:
            return self.model.get("mean_competition")
        entry = self.task(task)
        value = (entry.get("metrics") or {}).get("pass@1")
        return float(value) if entry.get("status") == "ok" and value is not None else None


def status_counts(col: Column, task: str) -> dict[str, int]:
    """Sandbox outcomes of `task`'s samples (passed, failed, compile_error, timeout, ...): from
    results.json, else from the task's metrics file."""
    entry = col.task(task)
    counts = entry.get("status_counts")
    if counts is None and entry.get("metrics_path"):
        try:
            counts = (read_json(Path(entry["metrics_path"])).get("config") or {}).get("status_counts")
        except (OSError, ValueError, AttributeError):
            counts = None
    return {str(k): int(v) for k, v in (counts or {}).items()}


def columns(runs: list[RunResults]) -> list[Column]:
    """Every model of every run, in the runs' order; labels carry the run when there are several."""
    several = len(runs) > 1
    return [Column(f"{run.name}/{model['name']}" if several else model["name"], run, model)
            for run in runs for model in run.models]


def task_rows(runs: list[RunResults]) -> list[str]:
    """The competition tasks in suite order, the mean row, then the extras (HumanEval): those
    that some model of some run was asked for."""
    competition: list[str] = []
    extras: list[str] = []
    for run in runs:
        competition += [t for t in run.data.get("competition_tasks", []) if t not in competition]
        extras += [t for t in run.data.get("extra_tasks", []) if t not in extras]
        for model in run.models:  # tasks a run asked for beyond its listed ones
            extras += [t for t in model["tasks"] if t not in competition and t not in extras]
    asked = {t for run in runs for model in run.models for t in model["tasks"]}
    return [t for t in competition if t in asked] + [MEAN_ROW] + [t for t in extras if t in asked]


def best_labels(cols: list[Column], task: str) -> list[str]:
    """Labels of the columns at the row's top pass@1 (all of them when tied); none without a value."""
    values = {c.label: c.pass_at_1(task) for c in cols}
    present = [v for v in values.values() if v is not None]
    if not present:
        return []
    top = max(present)
    return [label for label, v in values.items() if v is not None and abs(v - top) < 1e-12]


def cell(col: Column, task: str) -> str:
    """pass@1 with four decimals, or why there is none ("missing", "failed", "n/a")."""
    value = col.pass_at_1(task)
    if value is not None:
        return f"{value:.4f}"
    if task == MEAN_ROW:
        return "n/a"
    return str(col.task(task).get("status") or "missing")
