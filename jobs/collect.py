"""Collect stage: one table of a run's results, the competition mean, and the submission zip.

Reads the metrics files the evaluate stage wrote (a run directory), or any directory / list of
`metrics_<task>_<model>.json` files (the reference harness's layout works too), and produces:

- a per-task table (terminal via rich, markdown, CSV, JSON);
- the mean pass@1 over the 13 competition tasks (MBPP counts as one task, as in the competition),
  only when all 13 are present and sound; HumanEval is reported beside the mean, never in it;
- `generations_<model>.zip` whose single top folder `generations_<model>/` holds exactly the 13
  competition generation files, shards merged, checked before it is written (atomically).

A task that was asked for but has no metrics, or whose metrics are broken or hold the wrong
number of problems, is named, and `IncompleteResults` is raised (the job / CLI exits 1).
A run with `limit` is complete when every benchmark has its N problems; it is labelled
"limited" and gets no zip (a submission needs every problem).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from jobs.benchmarks import suite
from jobs.benchmarks.data import expected_size, full_size, shard_key
from launcher.rundir import (RunDir, atomic_write_json, atomic_write_text, generations_name, read_json,
                             submission_folder)

METRICS_RE = re.compile(r"^metrics_([a-z0-9-]+)_(.+)\.json$")
GENERATIONS_RE = re.compile(r"^generations_([a-z0-9-]+)_(.+)\.json$")


class IncompleteResults(Exception):
    """Some asked-for task is missing or failed. The message names them; exit code 1."""


class CollectError(Exception):
    """The input cannot be collected at all (nothing found, ambiguous model, bad zip)."""


@dataclass
class TaskResult:
    task: str
    status: str  # "ok" | "missing" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    num_problems: Optional[int] = None
    expected_problems: Optional[int] = None
    limit: Optional[int] = None
    reason: str = ""
    metrics_path: Optional[str] = None
    data_sha256: Optional[str] = None

    @property
    def pass_at_1(self) -> Optional[float]:
        return self.metrics.get("pass@1") if self.status == "ok" else None


@dataclass
class Collection:
    model: str
    tasks: dict[str, TaskResult]
    required: list[str]
    limited: bool
    #: generation files per competition task (shards in order), for the zip
    generation_files: dict[str, list[Path]] = field(default_factory=dict)
    source: str = ""

    @property
    def problems(self) -> list[TaskResult]:
        return [self.tasks[t] for t in self.required if self.tasks[t].status != "ok"]

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def competition_complete(self) -> bool:
        return all(t in self.tasks and self.tasks[t].status == "ok" for t in suite.COMPETITION_SUITE)

    @property
    def mean(self) -> Optional[float]:
        """Unweighted mean pass@1 of the 13 competition tasks; None unless all 13 are sound."""
        if not self.competition_complete:
            return None
        values = [self.tasks[t].pass_at_1 for t in suite.COMPETITION_SUITE]
        return sum(values) / len(values)  # type: ignore[arg-type]

    @property
    def humaneval(self) -> Optional[float]:
        result = self.tasks.get("humaneval")
        return result.pass_at_1 if result else None

    def ordered(self) -> list[TaskResult]:
        names = [t for t in suite.ALL_BENCHMARKS if t in self.tasks]
        return [self.tasks[t] for t in names]

    def problem_summary(self) -> str:
        parts = [f"{r.task} ({r.status}: {r.reason})" for r in self.problems]
        return f"{len(parts)} of {len(self.required)} tasks missing or failed: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        mean = self.mean
        return {
            "model": self.model,
            "source": self.source,
            "limited": self.limited,
            "complete": self.complete,
            "mean_competition": mean,
            "humaneval": self.humaneval,
            "missing": [r.task for r in self.problems if r.status == "missing"],
            "failed": [r.task for r in self.problems if r.status == "failed"],
            "tasks": {r.task: asdict(r) for r in self.ordered()},
            # the shape of MFTCoder's leaderboard grouping, for tools that read it
            "results": [{"task": t, "pass@1": self.tasks[t].pass_at_1}
                        for t in suite.COMPETITION_SUITE if t in self.tasks],
            "average": mean,
        }


# ---------------------------------------------------------------------------------------------
# reading


def read_task_metrics(task: str, path: Optional[Path], limit: Optional[int] = None) -> TaskResult:
    """Check one metrics file: present, the reference shape, and the right number of problems.
    `limit` is the run's limit when known; otherwise the file's own `config.limit` is used."""
    if path is None or not path.is_file():
        return TaskResult(task, "missing", reason="no metrics file" + (f" at {path}" if path else ""),
                          metrics_path=str(path) if path else None)
    try:
        payload = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        return TaskResult(task, "failed", reason=f"unreadable metrics file {path}: {exc}", metrics_path=str(path))
    metrics = payload.get(task) if isinstance(payload, dict) else None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("pass@1"), (int, float)):
        return TaskResult(task, "failed", reason=f"{path} has no {task}.pass@1", metrics_path=str(path))
    config = payload.get("config") or {}
    file_limit = config.get("limit")
    use_limit = limit if limit is not None else file_limit
    expected = expected_size(task, use_limit)
    got = config.get("num_problems")
    result = TaskResult(
        task, "ok", metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        num_problems=got, expected_problems=expected, limit=use_limit, metrics_path=str(path),
        data_sha256=config.get("data_sha256"),
    )
    if got is None:
        result.status, result.reason = "failed", f"{path}: config.num_problems is missing"
    elif got != expected:
        result.status, result.reason = "failed", f"evaluated {got} of {expected} problems"
    elif limit is not None and file_limit != limit:
        result.status, result.reason = "failed", f"evaluated with limit {file_limit}, the run has limit {limit}"
    return result


def _element_errors(run: RunDir, stage: str, benchmark: str) -> list[str]:
    """One-line reasons of failed elements of `stage` for `benchmark`, from the run's state."""
    try:
        plan = read_json(run.plan_file)
        job = next(j for j in plan["jobs"] if j["stage"] == stage)
    except (OSError, ValueError, KeyError, StopIteration):
        return []
    out = []
    for index, item in enumerate(job.get("items", [])):
        if item.get("benchmark") != benchmark or run.is_done(stage, index):
            continue
        state_path = run.element_state(stage, index)
        state = read_json(state_path) if state_path.is_file() else {}
        what = state.get("state", "not run")
        error = state.get("error")
        out.append(f"{stage}[{index}] ({item.get('key')}) {what}" + (f": {error}" if error else ""))
    return out


def _shard_files(run: RunDir, benchmark: str, model: str, num_shards: int) -> list[Path]:
    """Generation files of `benchmark`, shards in order (the keys the planner gave them).
    Empty when a shard's file is missing (the zip step then names the task)."""
    paths = [run.generations_file(shard_key(benchmark, s, num_shards), benchmark, model)
             for s in range(num_shards)]
    return paths if all(p.is_file() for p in paths) else []


def collect_run(run_dir: str | Path) -> Collection:
    """Collect a run directory: the recipe says which tasks, which model and which limit."""
    from launcher.recipe import load_recipe

    run = RunDir(Path(run_dir))
    recipe = load_recipe(run.recipe_file)
    model = recipe.model.model_name
    required = list(recipe.benchmarks)
    tasks: dict[str, TaskResult] = {}
    for task in required:
        path = run.metrics_file(task, model)
        result = read_task_metrics(task, path, recipe.limit)
        if result.status == "missing":
            reasons = _element_errors(run, "evaluate", task) + _element_errors(run, "generate", task)
            if reasons:
                result.reason += "; " + "; ".join(reasons)
        tasks[task] = result
    shards = recipe.stages.generate.shards if recipe.stages.generate else {}
    gen_files = {t: _shard_files(run, t, model, shards.get(t, 1)) for t in suite.COMPETITION_SUITE if t in required}
    return Collection(model=model, tasks=tasks, required=required, limited=recipe.limit is not None,
                      generation_files=gen_files, source=str(run.root))


def _scan(paths: Iterable[Path], pattern: re.Pattern) -> list[tuple[str, str, Path]]:
    out = []
    for path in paths:
        candidates = [path] if path.is_file() else sorted(path.rglob("*.json")) if path.is_dir() else []
        for candidate in candidates:
            match = pattern.match(candidate.name)
            if match and match.group(1) in suite.ALL_BENCHMARKS:
                out.append((match.group(1), match.group(2), candidate))
    return out


def collect_files(sources: Sequence[str | Path], model: Optional[str] = None) -> Collection:
    """Collect loose metrics files / directories of them. All 13 competition tasks are required;
    HumanEval is reported when present. Generation files found under the same directories
    (e.g. the reference's `generations_<model>/`) feed the zip."""
    paths = [Path(p) for p in sources]
    missing_paths = [str(p) for p in paths if not p.exists()]
    if missing_paths:
        raise CollectError(f"not found: {', '.join(missing_paths)}")
    found = _scan(paths, METRICS_RE)
    models = sorted({m for _t, m, _p in found})
    if model is None:
        if not models:
            raise CollectError(f"no metrics_<task>_<model>.json files under {', '.join(map(str, paths))}")
        if len(models) > 1:
            raise CollectError(f"metrics of several models ({', '.join(models)}): pick one with --model")
        model = models[0]
    by_task: dict[str, Path] = {}
    for task, file_model, path in found:
        if file_model != model:
            continue
        if task in by_task and by_task[task] != path:
            raise CollectError(f"two metrics files for {task}: {by_task[task]} and {path}")
        by_task[task] = path
    required = list(suite.COMPETITION_SUITE) + [t for t in suite.EXTRA_BENCHMARKS if t in by_task]
    tasks = {t: read_task_metrics(t, by_task.get(t)) for t in required}
    limited = any(r.limit is not None for r in tasks.values())
    gen_files: dict[str, list[Path]] = {}
    for task, file_model, path in _scan(paths, GENERATIONS_RE):
        if file_model == model and task in suite.COMPETITION_SUITE:
            gen_files.setdefault(task, []).append(path)
    gen_files = {t: (files if len(files) == 1 else []) for t, files in gen_files.items()}
    return Collection(model=model, tasks=tasks, required=required, limited=limited,
                      generation_files=gen_files, source=", ".join(map(str, paths)))


def is_run_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and RunDir(Path(path)).recipe_file.is_file()


def collect(*sources: str | Path, model: Optional[str] = None) -> Collection:
    """A run directory, or metrics files / directories. Never raises for missing tasks: look at
    `.complete` / `.problems` (or call `require_complete`)."""
    if not sources:
        raise CollectError("nothing to collect: give a run directory or metrics files")
    if len(sources) == 1 and is_run_dir(sources[0]):
        collection = collect_run(sources[0])
        if model is not None and model != collection.model:
            raise CollectError(f"{sources[0]} is a run of model {collection.model}, not {model}")
        return collection
    return collect_files(sources, model)


def require_complete(collection: Collection) -> None:
    if not collection.complete:
        raise IncompleteResults(collection.problem_summary())


# ---------------------------------------------------------------------------------------------
# rendering


def _fmt(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"


def _rows(collection: Collection) -> list[list[str]]:
    """task, pass@1, problems, status, note — competition tasks, the mean, then the extras."""
    rows = []
    for result in collection.ordered():
        if result.task not in suite.COMPETITION_SUITE:
            continue
        rows.append(_row(result))
    mean = collection.mean
    done = sum(1 for t in suite.COMPETITION_SUITE if t in collection.tasks and collection.tasks[t].status == "ok")
    note = "limited" if collection.limited and mean is not None else (
        "" if mean is not None else f"n/a: {done} of {len(suite.COMPETITION_SUITE)} competition tasks")
    rows.append([f"mean ({len(suite.COMPETITION_SUITE)} tasks)", _fmt(mean), "", "ok" if mean is not None else "n/a", note])
    for result in collection.ordered():
        if result.task not in suite.COMPETITION_SUITE:
            rows.append(_row(result))
    return rows


def _row(result: TaskResult) -> list[str]:
    problems = "" if result.num_problems is None else str(result.num_problems)
    note = result.reason or ("limited" if result.limit is not None else "")
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


# ---------------------------------------------------------------------------------------------
# the submission zip


def _load_generations_list(path: Path) -> list:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise CollectError(f"{path}: not a JSON list")
    return data


def submission_entries(collection: Collection) -> dict[str, bytes]:
    """{archive name: JSON bytes} of the 13 competition generation files (shards merged)."""
    if collection.limited:
        raise CollectError("a limited run gets no submission zip (it lacks problems)")
    top = submission_folder(collection.model)
    entries: dict[str, bytes] = {}
    absent = [t for t in suite.COMPETITION_SUITE if not collection.generation_files.get(t)]
    if absent:
        raise CollectError(f"no (complete) generation files for: {', '.join(absent)}")
    for task in suite.COMPETITION_SUITE:
        merged: list = []
        for path in collection.generation_files[task]:
            merged.extend(_load_generations_list(path))
        name = f"{top}/{generations_name(task, collection.model)}"
        entries[name] = (json.dumps(merged, ensure_ascii=False) + "\n").encode("utf-8")
    return entries


def validate_submission(zip_path: Path, model: str) -> None:
    """The competition's rules: one top folder `generations_<model>/`, exactly the 13 files with
    the exact names, each a list (full problem count) of non-empty lists of strings."""
    top = submission_folder(model) + "/"
    want = {top + generations_name(t, model): t for t in suite.COMPETITION_SUITE}
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if n != top]
        if sorted(names) != sorted(want):
            extra = sorted(set(names) - set(want))
            lacking = sorted(set(want) - set(names))
            raise CollectError(f"{zip_path}: wrong entries (unexpected {extra}, missing {lacking})")
        for name, task in want.items():
            try:
                data = json.loads(archive.read(name).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CollectError(f"{zip_path}:{name}: not valid JSON ({exc})") from None
            if not isinstance(data, list) or len(data) != full_size(task):
                got = len(data) if isinstance(data, list) else type(data).__name__
                raise CollectError(f"{zip_path}:{name}: {got} problems, {task} has {full_size(task)}")
            for index, samples in enumerate(data):
                if not (isinstance(samples, list) and samples and all(isinstance(s, str) for s in samples)):
                    raise CollectError(f"{zip_path}:{name}: problem {index} is not a non-empty list of strings")


def write_submission_zip(collection: Collection, out_path: Path) -> Path:
    """Build the zip in a temporary file beside `out_path`, validate it, then move it in place."""
    entries = submission_entries(collection)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(submission_folder(collection.model) + "/", b"")
            for name, payload in entries.items():
                archive.writestr(name, payload)
        validate_submission(Path(tmp), collection.model)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def write_outputs(collection: Collection, out_dir: str | Path) -> dict[str, Any]:
    """results.md / .csv / .json always; the zip when complete, unlimited and all 13 are there.
    Returns what was written and, when no zip, why."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "results.md", render_markdown(collection))
    atomic_write_text(out_dir / "results.csv", render_csv(collection))
    atomic_write_json(out_dir / "results.json", collection.to_dict())
    written: dict[str, Any] = {"tables": [str(out_dir / f"results.{e}") for e in ("md", "csv", "json")]}
    zip_path = out_dir / f"{submission_folder(collection.model)}.zip"
    if collection.limited:
        written["zip"] = None
        written["no_zip_reason"] = "limited run"
    elif not collection.competition_complete:
        written["zip"] = None
        written["no_zip_reason"] = "not all 13 competition tasks are complete"
    elif any(not collection.generation_files.get(t) for t in suite.COMPETITION_SUITE):
        absent = [t for t in suite.COMPETITION_SUITE if not collection.generation_files.get(t)]
        written["zip"] = None
        written["no_zip_reason"] = f"no (complete set of) generation files for: {', '.join(absent)}"
    else:
        written["zip"] = str(write_submission_zip(collection, zip_path))
    if written["zip"] is None and zip_path.exists():
        zip_path.unlink()  # a zip from an earlier, complete attempt would not match these results
    return written


# ---------------------------------------------------------------------------------------------
# stage entry


def run(ctx: Any) -> dict[str, Any]:
    """Stage entry: collect the run, write the tables (and the zip), raise when incomplete."""
    if not ctx.dist.is_main:
        return {}
    collection = collect_run(ctx.run.root)
    written = write_outputs(collection, ctx.run.collect_dir)
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
