"""Collect stage: one table of a run's results, the competition mean, and the submission zip.

Reads the metrics files the evaluate stage wrote (a run directory), or any directory / list of
`metrics_<task>_<model>.json` files (the reference harness's layout works too), and produces:

- a per-task table (terminal via rich, markdown, CSV, JSON);
- the mean pass@1 over the 13 competition tasks (MBPP counts as one task, as in the competition),
  only when all 13 are present and sound; HumanEval is reported beside the mean, never in it;
- `generations_<model>.zip` whose single top folder `generations_<model>/` holds exactly the 13
  competition generation files, shards merged, checked before it is written (atomically);
- the run's cost (GPU/CPU-hours per stage and per model) in results.json, and report.html
  (`jobs.results.report`: tables, plots, training curves, outcomes, cost; self-contained).

A task that was asked for but has no metrics, or whose metrics are broken or hold the wrong
number of problems, is named, and `IncompleteResults` is raised (the job / CLI exits 1).
A run with `limit` is complete when every benchmark has its N problems; it is labelled
"limited" and gets no zip (a submission needs every problem).

The reading, the tables and the zip live in `jobs.results`; this module writes them for a run
and keeps the names the CLI (launcher/cli_eval.py) and the tests import from here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.results.collection import (ResultsError, Collection, IncompleteResults, TaskResult, gather_results,
                                     gather_file_results, gather_run_results, read_task_metrics, require_complete)
from jobs.results.submission import (missing_generations, submission_entries, validate_submission,
                                     write_submission_zip)
from jobs.results.report import write_run_report
from jobs.results.tables import print_table, render, render_csv, render_json, render_markdown
from launcher.rundir import atomic_write_json, atomic_write_text, results_table_name, submission_folder

__all__ = [
    "ResultsError", "Collection", "IncompleteResults", "TaskResult", "gather_results", "gather_file_results",
    "gather_run_results", "print_table", "read_task_metrics", "render", "render_csv", "render_json",
    "render_markdown", "require_complete", "run_stage", "submission_entries", "validate_submission",
    "write_outputs", "write_submission_zip",
]


def write_outputs(collection: Collection, out_dir: str | Path) -> dict[str, Any]:
    """results.md / .csv / .json always; the zip when complete, unlimited and all 13 are there.
    Returns what was written and, when no zip, why."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / results_table_name("md"), render_markdown(collection))
    atomic_write_text(out_dir / results_table_name("csv"), render_csv(collection))
    atomic_write_json(out_dir / results_table_name("json"), collection.to_dict())
    written: dict[str, Any] = {"tables": [str(out_dir / results_table_name(e)) for e in ("md", "csv", "json")]}
    zip_path = out_dir / f"{submission_folder(collection.model)}.zip"
    if collection.limited:
        written["zip"] = None
        written["no_zip_reason"] = "limited run"
    elif not collection.competition_complete:
        written["zip"] = None
        written["no_zip_reason"] = "not all 13 competition tasks are complete"
    elif absent := missing_generations(collection):
        written["zip"] = None
        written["no_zip_reason"] = f"no (complete set of) generation files for: {', '.join(absent)}"
    else:
        written["zip"] = str(write_submission_zip(collection, zip_path))
    if written["zip"] is None and zip_path.exists():
        zip_path.unlink()  # a zip from an earlier, complete attempt would not match these results
    return written


def run_stage(ctx: Any) -> dict[str, Any]:
    """Stage entry: collect the run, write the tables (and the zip), raise when incomplete."""
    if not ctx.dist.is_main:
        return {}
    collection = gather_run_results(ctx.run_dir.root)
    written = write_outputs(collection, ctx.run_dir.collect_dir)
    print(f"collect: report {write_run_report(ctx.run_dir)}", flush=True)
    print_table(collection)
    if written.get("zip"):
        print(f"collect: submission zip {written['zip']}", flush=True)
    elif written.get("no_zip_reason"):
        print(f"collect: no submission zip ({written['no_zip_reason']})", flush=True)
    require_complete(collection)
    if collection.competition_complete and not collection.limited and not written.get("zip"):
        raise IncompleteResults(f"all 13 tasks scored but no submission zip: {written.get('no_zip_reason')}")
    counts = {"tasks": sum(1 for r in collection.tasks.values() if r.status == "ok"),
              "mean_competition": collection.mean, "limited": collection.limited}
    if collection.humaneval is not None:
        counts["humaneval"] = collection.humaneval
    return counts
