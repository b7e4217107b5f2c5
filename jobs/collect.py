"""Collect stage: one table of a run's results (every model of a sweep), the competition mean,
the best model, and the submission zip.

Reads the metrics files the evaluate stage wrote (a run directory: every model its plan lists),
or any directory / list of `metrics_<task>_<model>.json` files (the reference harness's layout
works too), and produces:

- a table of tasks (x models) (terminal via rich, markdown, CSV, JSON: collect/results.json,
  schema in docs/CONTRACTS.md);
- the mean pass@1 over the 13 competition tasks (MBPP counts as one task, as in the competition),
  only when all 13 are present and sound; HumanEval is reported beside the mean, never in it;
- the best model by that mean (ties and incomplete models said, `jobs.results.sweep`);
- `generations_<model>.zip` for the best model (or `--model`), whose single top folder
  `generations_<model>/` holds exactly the 13 competition generation files, checked before it is
  written (atomically);
- the run's cost (GPU/CPU-hours per stage and per model) in results.json, and report.html
  (`jobs.results.report`: tables, plots, training curves, outcomes, cost; self-contained).

A task that was asked for but has no metrics, or whose metrics are broken or hold the wrong
number of problems, is named, and `IncompleteResults` is raised (the job / CLI exits 1) after
everything that can be written is. A run with `limit` is complete when every benchmark has its N
problems; it is labelled "limited" and gets no zip (a submission needs every problem).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from jobs.results.collection import (ResultsError, Collection, IncompleteResults, TaskResult, gather_collections,
                                     gather_file_results, gather_run_results, is_run_dir,
                                     read_task_metrics)
from jobs.results.submission import (missing_generations, submission_entries, validate_submission,
                                     write_submission_zip)
from jobs.results.report import write_run_report
from jobs.results.sweep import Results, choose_best
from jobs.results.tables import print_table, render, render_csv, render_json, render_markdown
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text, read_json, results_table_name, submission_folder

__all__ = [
    "ResultsError", "Collection", "IncompleteResults", "Results", "TaskResult", "choose_best", "gather_results",
    "gather_file_results", "gather_run_results", "print_table", "read_task_metrics", "render", "render_csv",
    "render_json", "render_markdown", "run_stage", "submission_entries", "validate_submission", "write_outputs",
    "write_submission_zip",
]


def gather_results(*sources: str | Path, model: Optional[str] = None) -> Results:
    """Every model of a run directory, or of metrics files / folders; `model` picks the one the
    zip is for. Never raises for missing tasks: look at `.complete` / `.problem_summary()`."""
    collections = gather_collections(*sources)
    if len(sources) == 1 and is_run_dir(sources[0]):
        run = RunDir(Path(sources[0]))
        return Results(collections, source=str(run.root), recipe=_recipe_name(run), requested=model)
    return Results(collections, source=", ".join(map(str, sources)), requested=model)


def _recipe_name(run: RunDir) -> Optional[str]:
    try:
        return read_json(run.plan_file).get("recipe")
    except (OSError, ValueError):
        return None


def _submission(results: Results, zip_dir: Path) -> dict[str, Any]:
    """Build the zip of the chosen model when it can be built; say why not otherwise."""
    chosen = results.submission_model
    out: dict[str, Any] = {"model": chosen.model if chosen else None, "zip": None, "no_zip_reason": None}
    if chosen is None:
        out["no_zip_reason"] = f"no model to submit ({results.best.reason})"
    elif chosen.limited:
        out["no_zip_reason"] = "limited run"
    elif not chosen.competition_complete:
        out["no_zip_reason"] = f"not all 13 competition tasks of {chosen.model} are complete"
    elif absent := missing_generations(chosen):
        out["no_zip_reason"] = f"no (complete set of) generation files of {chosen.model} for: {', '.join(absent)}"
    else:
        out["zip"] = str(write_submission_zip(chosen, zip_dir / f"{submission_folder(chosen.model)}.zip"))
    return out


def write_outputs(results: Results, out_dir: str | Path) -> dict[str, Any]:
    """results.md / .csv / .json always; the zip of the chosen model when it is complete,
    unlimited and has all 13 generation files. Zips of other models (an earlier choice) go."""
    out_dir = Path(out_dir)
    submission = _submission(results, out_dir)
    for stale in out_dir.glob("generations_*.zip"):
        if str(stale) != submission["zip"]:
            stale.unlink()  # an earlier choice, or an earlier complete attempt: no longer these results
    atomic_write_text(out_dir / results_table_name("md"), render_markdown(results))
    atomic_write_text(out_dir / results_table_name("csv"), render_csv(results))
    atomic_write_json(out_dir / results_table_name("json"), results.to_dict(submission))
    return {"tables": [str(out_dir / results_table_name(e)) for e in ("md", "csv", "json")], **submission}


def run_stage(ctx: Any) -> dict[str, Any]:
    """Stage entry: collect every model of the run, write the tables (and the zip), raise when
    something is incomplete (after writing)."""
    if not ctx.dist.is_main:
        return {}
    results = gather_results(ctx.run_dir.root)
    written = write_outputs(results, ctx.run_dir.collect_dir)
    print(f"collect: report {write_run_report(ctx.run_dir)}", flush=True)
    print_table(results)
    if written.get("zip"):
        print(f"collect: submission zip {written['zip']} ({written['model']})", flush=True)
    else:
        print(f"collect: no submission zip ({written['no_zip_reason']})", flush=True)
    if not results.complete:
        raise IncompleteResults(results.problem_summary())
    chosen = results.submission_model
    if chosen and chosen.competition_complete and not chosen.limited and not written.get("zip"):
        raise IncompleteResults(f"all 13 tasks scored but no submission zip: {written.get('no_zip_reason')}")
    best = results.best
    counts: dict[str, Any] = {"models": len(results.models), "best_model": best.model, "mean_competition": best.mean,
                              "limited": results.limited}
    if len(results.models) == 1:
        only = results.models[0]
        counts["tasks"] = sum(1 for r in only.tasks.values() if r.status == "ok")
        if only.humaneval is not None:
            counts["humaneval"] = only.humaneval
    return counts
