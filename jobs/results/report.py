"""report.html: one self-contained page per run (or several runs) for a person to read.

The results table (tasks x models, best per task in bold), pass@1 per task per model, pass@1 and
validation loss against the checkpoint step, training loss and learning rate from the run's
TensorBoard events, sample outcomes per language, and what the run cost per stage and per model.
Everything is inside the file: inline CSS, plots as base64 PNG data URIs, no script, no link to
anything outside, so it opens offline and can be mailed or attached as it is.
"""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Optional

from jobs.results import plots
from jobs.results.compare import compare, render_html_table
from jobs.results.run_results import RunResults, as_schema2, load_run_results
from jobs.results.training_curves import VALIDATION_LOSS, read_curves
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text, read_json

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 960px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: .9rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th[scope=row], thead th:first-child { text-align: left; }
thead th { background: #f3f3f3; }
td.best { font-weight: bold; background: #e8f5e9; } td.bad { color: #b71c1c; }
tr.mean th, tr.mean td { border-top: 2px solid #888; font-weight: 600; }
img.plot { display: block; max-width: 100%; height: auto; margin: .8rem 0; }
.warn { color: #8a4b00; } .note { color: #555; font-size: .9rem; }
"""


def page(title: str, sections: list[tuple[str, str]], meta: str = "") -> str:
    """A whole HTML document: `sections` are (heading, HTML fragment)."""
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{fragment}</section>" for h, fragment in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f'<body><h1>{html.escape(title)}</h1><p class="meta">{meta}</p>{body}</body></html>\n')


def _img(uri: Optional[str], alt: str) -> str:
    return f'<img class="plot" alt="{html.escape(alt)}" src="{uri}">' if uri else ""


def _best_line(run: RunResults) -> str:
    best = run.data.get("best") or {}
    if best.get("model"):
        mean = best.get("mean_competition")
        text = f"Best of {html.escape(run.name)}: <b>{html.escape(best['model'])}</b>"
        text += f" (13-task mean {mean:.4f})" if isinstance(mean, (int, float)) else ""
        if best.get("tied_with"):
            text += f", tied with {html.escape(', '.join(best['tied_with']))}"
        if best.get("reason"):
            text += f"; {html.escape(best['reason'])}"
        return f"<p>{text}.</p>"
    excluded = best.get("excluded") or {}
    why = "; ".join(f"{m}: {r}" for m, r in excluded.items())
    return f'<p class="warn">{html.escape(run.name)}: no model has all 13 tasks{": " + html.escape(why) if why else ""}.</p>'


def _hours(value: float) -> str:
    return f"{value:.3f}"


def _resources_fragment(resources: dict[str, Optional[dict[str, Any]]]) -> str:
    """Tables of GPU/CPU-hours per stage and per model for each run, and the per-stage bars."""
    parts = []
    by_stage = {}
    for run, res in resources.items():
        if not res:
            parts.append(f'<p class="note">{html.escape(run)}: no cost figures.</p>')
            continue
        by_stage[run] = res["by_stage"]
        rows = "".join(f"<tr><th scope='row'>{html.escape(s)}</th><td>{_hours(t['gpu_hours'])}</td>"
                       f"<td>{_hours(t['cpu_hours'])}</td><td>{t.get('attempts', '')}</td></tr>"
                       for s, t in res["by_stage"].items())
        total = res["total"]
        rows += (f"<tr class='mean'><th scope='row'>total</th><td>{_hours(total['gpu_hours'])}</td>"
                 f"<td>{_hours(total['cpu_hours'])}</td><td>{total['attempts']}</td></tr>")
        models = "".join(f"<tr><th scope='row'>{html.escape(m)}</th><td>{_hours(t['gpu_hours'])}</td>"
                         f"<td>{_hours(t['cpu_hours'])}</td></tr>" for m, t in res["by_model"].items())
        running = " (still running: figures so far)" if res.get("running") else ""
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in res.get("notes", []))
        parts.append(
            f"<h3>{html.escape(run)}</h3><p class='note'>From {html.escape(res['source'])}{running}; "
            f"every attempt of every element (requeues included) x its allocated GPUs and CPUs.</p>{notes}"
            f"<table class='resources-stage'><thead><tr><th>stage</th><th>GPU-hours</th><th>CPU-hours</th>"
            f"<th>attempts</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<table class='resources-model'><thead><tr><th>model</th><th>GPU-hours</th><th>CPU-hours</th></tr>"
            f"</thead><tbody>{models}</tbody></table>")
    return "".join(parts) + _img(plots.resources_bars(by_stage), "GPU-hours and CPU-hours per stage")


def _outcomes_fragment(uri: Optional[str], table: list[dict[str, Any]], several: bool) -> str:
    if not table:
        return '<p class="note">No per-sample outcomes recorded.</p>'
    head = ("<th>model</th>" if several else "") + "<th>language</th>" + "".join(
        f"<th>{html.escape(label)}</th>" for _s, label in plots.OUTCOMES)
    rows = "".join(
        "<tr>" + (f"<th scope='row'>{html.escape(r['model'])}</th><td>{html.escape(r['language'])}</td>" if several
                  else f"<th scope='row'>{html.escape(r['language'])}</th>")
        + "".join(f"<td>{r.get(status, 0)}</td>" for status, _l in plots.OUTCOMES) + "</tr>" for r in table)
    return _img(uri, "outcomes per language") + f"<table id='outcomes-table'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def build_report(runs: list[RunResults], resources: dict[str, Optional[dict[str, Any]]]) -> str:
    """The report of `runs` (compared even when measured differently: the differences are shown).
    `resources` maps each run's name to its cost (`RunCost.to_dict()`), or None."""
    from jobs.code_benchmarks.data import language_of

    comparison = compare(runs, force=True)
    cols, tasks = comparison.cols, comparison.tasks
    curves = {run.name: read_curves(run.run_dir.tensorboard_dir) for run in runs}
    sections = []
    warnings = "".join(f'<p class="warn">Measured differently: {html.escape(d)}</p>' for d in comparison.differences)
    limited = [r.name for r in runs if r.limited]
    if limited:
        warnings += (f'<p class="warn">Limited run ({html.escape(", ".join(limited))}): only the first problems of '
                     "each benchmark; not comparable with full runs, no submission.</p>")
    sections.append(("Results (pass@1)", "".join(_best_line(r) for r in runs) + render_html_table(comparison)
                     + '<p class="note">Best value of each row in bold; HumanEval is reported beside the 13-task '
                       "mean, not in it.</p>" + warnings))
    sections.append(("pass@1 per task", _img(plots.pass_at_1_bars(cols, tasks), "pass@1 per task per model")))
    validation = next((c[VALIDATION_LOSS] for c in curves.values() if VALIDATION_LOSS in c), None)
    step_plot = plots.step_lines(cols, validation)
    if step_plot:
        sections.append(("Checkpoints", _img(step_plot, "pass@1 and validation loss against the checkpoint step")))
    for name, run_curves in curves.items():
        uri = plots.training_curves(run_curves)
        if uri:
            title = "Training" + (f" ({name})" if len(runs) > 1 else "")
            sections.append((title, _img(uri, f"training loss and learning rate of {name}")))
    outcome_plot, outcome_table = plots.outcomes_by_language(cols, tasks, language_of)
    sections.append(("Outcomes per language", _outcomes_fragment(outcome_plot, outcome_table, len(cols) > 1)))
    sections.append(("Resources", _resources_fragment(resources)))
    title = "mftlaunch report: " + ", ".join(r.name for r in runs)
    meta = (f"{len(cols)} model(s) · {len(tasks) - 1} tasks · written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} · "
            + " · ".join(html.escape(str(r.run_dir.root)) for r in runs))
    return page(title, sections, meta)


def run_resources(run: RunResults) -> Optional[dict[str, Any]]:
    """The run's cost now (sacct or the local measurements), else what its results.json recorded."""
    from jobs.results.cost import run_cost

    try:
        return run_cost(run.run_dir).to_dict()
    except (OSError, ValueError, KeyError, RuntimeError):
        return run.data.get("resources")


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """`mftlaunch report RUN... --out F.html`; ResultsUnreadable for a run that cannot be read."""
    runs = [load_run_results(p) for p in run_dirs]
    html_text = build_report(runs, {r.name: run_resources(r) for r in runs})
    out = Path(out)
    atomic_write_text(out, html_text)
    return out


def add_resources(results_json: Path, cost: dict[str, Any]) -> None:
    """results.json gains the run's cost: top-level `resources`, and each model's share as
    `models[].resources` (/work/coord/results-schema.md)."""
    data = read_json(results_json)
    data["resources"] = cost
    for model in data.get("models", []):
        model["resources"] = cost["by_model"].get(model.get("name"))
    atomic_write_json(results_json, data)


def write_run_report(run_dir: RunDir) -> Path:
    """The collector's last step: the run's cost into results.json, then collect/report.html."""
    from jobs.results.cost import run_cost

    results_json = run_dir.results_table("json")
    try:
        cost: Optional[dict[str, Any]] = run_cost(run_dir).to_dict()
    except (OSError, ValueError, KeyError):  # no plan or manifest: metrics gathered by hand
        cost = None
    if cost is not None:
        add_resources(results_json, cost)
    run = RunResults(run_dir, as_schema2(read_json(results_json)))
    atomic_write_text(run_dir.report_file, build_report([run], {run.name: cost}))
    return run_dir.report_file
