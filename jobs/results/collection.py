"""What a run scored, read back from its metrics files: one `TaskResult` per task and the
`Collection` of them, with the competition mean.

Reads a run directory (its recipe says which tasks, which model and which limit), or any
directory / list of `metrics_<task>_<model>.json` files (the reference harness's layout works
too). A task that was asked for but has no metrics, or whose metrics are broken or hold the
wrong number of problems, is kept with status "missing" / "failed" and a reason, so the caller
can name every problem at once instead of stopping at the first.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from launcher import contract
from jobs.code_benchmarks.data import expected_size
from jobs.results.data_identity import generation_data_sha256, generation_mismatch, mixed_pin_reasons
from launcher.rundir import RunDir, read_json

METRICS_RE = re.compile(r"^metrics_([a-z0-9-]+)_(.+)\.json$")
GENERATIONS_RE = re.compile(r"^generations_([a-z0-9-]+)_(.+)\.json$")


class IncompleteResults(Exception):
    """Some asked-for task is missing or failed. The message names them; exit code 1."""


class ResultsError(Exception):
    """The input cannot be collected at all (nothing found, ambiguous model, bad zip)."""


@dataclass
class TaskResult:
    """One task's score, or why it has none (`reason`), so a table can show every task."""

    task: str
    status: str  # "ok" | "missing" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    num_problems: Optional[int] = None
    expected_problems: Optional[int] = None
    limit: Optional[int] = None
    reason: str = ""
    metrics_path: Optional[str] = None
    data_sha256: Optional[str] = None
    #: why the numbers are not comparable with the reference harness's ("" when they are)
    not_comparable: str = ""
    status_counts: dict[str, int] = field(default_factory=dict)
    n_samples: Optional[int] = None  # the fewest samples any problem had

    @property
    def pass_at_1(self) -> Optional[float]:
        return self.metrics.get("pass@1") if self.status == "ok" else None


@dataclass
class Collection:
    """Every required task of one model, plus the generation files the submission zip needs."""

    model: str
    tasks: dict[str, TaskResult]
    required: list[str]
    limited: bool
    #: generation files per competition task (shards in order), for the zip
    generation_files: dict[str, list[Path]] = field(default_factory=dict)
    source: str = ""
    #: where the model came from in a run_dir: selector (step200 / best / last), step, path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def problems(self) -> list[TaskResult]:
        return [self.tasks[t] for t in self.required if self.tasks[t].status != "ok"]

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def competition_complete(self) -> bool:
        return all(t in self.tasks and self.tasks[t].status == "ok" for t in contract.COMPETITION_SUITE)

    @property
    def not_comparable(self) -> dict[str, str]:
        """{task: why} for tasks run with other limits than the reference harness's."""
        return {r.task: r.not_comparable for r in self.ordered() if r.not_comparable}

    @property
    def mean(self) -> Optional[float]:
        """Unweighted mean pass@1 of the 13 competition tasks; None unless all 13 are sound."""
        if not self.competition_complete:
            return None
        values = [self.tasks[t].pass_at_1 for t in contract.COMPETITION_SUITE]
        return sum(values) / len(values)  # type: ignore[arg-type]

    @property
    def humaneval(self) -> Optional[float]:
        result = self.tasks.get("humaneval")
        return result.pass_at_1 if result else None

    def ordered(self) -> list[TaskResult]:
        names = [t for t in contract.ALL_BENCHMARKS if t in self.tasks]
        return [self.tasks[t] for t in names]

    def problem_summary(self) -> str:
        parts = [f"{r.task} ({r.status}: {r.reason})" for r in self.problems]
        return f"{len(parts)} of {len(self.required)} tasks missing or failed: " + "; ".join(parts)

    @property
    def mean_stderr(self) -> Optional[float]:
        """Standard error of the 13-task mean, tasks taken as independent: sqrt(sum se^2) / 13."""
        if self.mean is None:
            return None
        errors = [self.tasks[t].metrics.get("pass@1_stderr") for t in contract.COMPETITION_SUITE]
        if any(e is None for e in errors):
            return None
        return sum(e * e for e in errors) ** 0.5 / len(errors)  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        mean = self.mean
        return {
            "name": self.model,
            **{k: self.info.get(k) for k in ("selector", "step", "path")},
            "competition_complete": self.competition_complete,
            "mean_competition_stderr": self.mean_stderr,
            "model": self.model,
            "source": self.source,
            "limited": self.limited,
            "complete": self.complete,
            "comparable": not self.limited and not self.not_comparable,
            "not_comparable": self.not_comparable,
            "mean_competition": mean,
            "humaneval": self.humaneval,
            "missing": [r.task for r in self.problems if r.status == "missing"],
            "failed": [r.task for r in self.problems if r.status == "failed"],
            "tasks": {r.task: asdict(r) for r in self.ordered()},
            # the shape of MFTCoder's leaderboard grouping, for tools that read it
            "results": [{"task": t, "pass@1": self.tasks[t].pass_at_1}
                        for t in contract.COMPETITION_SUITE if t in self.tasks],
            "average": mean,
        }


def _limits_note(config: dict[str, Any]) -> str:
    """The run-time limits differ from the reference harness's: say how (the score still stands)."""
    if config.get("limits_comparable") is not False:
        return ""
    return f"timeout {config.get('timeout_s')} s, the reference uses {config.get('reference_timeout_s')} s"


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
        data_sha256=config.get("data_sha256"), not_comparable=_limits_note(config),
        status_counts=dict(config.get("status_counts") or {}), n_samples=config.get("n_samples_min"),
    )
    if got is None:
        result.status, result.reason = "failed", f"{path}: config.num_problems is missing"
    elif got != expected:
        result.status, result.reason = "failed", f"evaluated {got} of {expected} problems"
    elif limit is not None and file_limit != limit:
        result.status, result.reason = "failed", f"evaluated with limit {file_limit}, the run has limit {limit}"
    return result


def _refuse_mixed_data(tasks: dict[str, TaskResult]) -> None:
    """Fail the tasks scored on other data than the pinned copy that the others used."""
    reasons = mixed_pin_reasons((t, r.data_sha256) for t, r in tasks.items() if r.status == "ok")
    for task, reason in reasons.items():
        tasks[task].status, tasks[task].reason = "failed", reason


def _element_errors(run_dir: RunDir, plan: dict[str, Any], stage: str, model: str, benchmark: str) -> list[str]:
    """One-line reasons of the unfinished elements of `stage` holding a piece of (model, benchmark)."""
    job = next((j for j in plan.get("jobs", []) if j["stage"] == stage), None)
    if job is None:
        return []
    out = []
    for index, item in enumerate(job.get("items", [])):
        mine = any(p["model"] == model and p["benchmark"] == benchmark for p in item.get("pieces", []))
        if not mine or run_dir.is_done(stage, index):
            continue
        state = _element_state(run_dir, stage, index)
        what = state.get("state", "not run")
        error = state.get("error")
        out.append(f"{stage}[{index}] ({item.get('key')}) {what}" + (f": {error}" if error else ""))
    return out


def _element_state(run_dir: RunDir, stage: str, index: int) -> dict[str, Any]:
    """An unfinished element's state record; a damaged one is named, not a reason to stop."""
    try:
        return run_dir.read_state(stage, index)
    except (OSError, ValueError):
        return {"state": f"unknown ({run_dir.element_state(stage, index).name} is damaged)"}


def _merge_error(run_dir: RunDir, plan: dict[str, Any], entry: dict[str, Any]) -> Optional[str]:
    """Why a checkpoint model has no merged model, when its merge element did not complete."""
    if entry.get("merge_index") is None:
        return None
    index = entry["merge_index"]
    if run_dir.is_done("merge", index):
        return None
    state = _element_state(run_dir, "merge", index)
    return f"merge[{index}] {state.get('state', 'not run')}" + (f": {state['error']}" if state.get("error") else "")


def _merged_step(run_dir: RunDir, entry: dict[str, Any]) -> Optional[int]:
    """The step a best/last checkpoint resolved to, from the merge stage's record."""
    if entry.get("merged_subdir") is None:
        return entry.get("step")
    info = run_dir.merged_model_dir(entry["merged_subdir"]) / "mftlaunch_merge.json"
    try:
        return int(read_json(info)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return entry.get("step")


def _plan(run_dir: RunDir) -> dict[str, Any]:
    try:
        return read_json(run_dir.plan_file)
    except (OSError, ValueError):
        return {}


def gather_model_results(run_dir: RunDir, recipe: Any, plan: dict[str, Any], entry: dict[str, Any]) -> Collection:
    """One model of a run_dir: every benchmark of the recipe, finishing any whose scored pieces were
    not joined yet, with the reasons of unfinished elements for what is missing."""
    from jobs.results.pieces import finish_from_files

    model = entry["name"]
    required = list(recipe.benchmarks)
    merge_error = _merge_error(run_dir, plan, entry)
    tasks: dict[str, TaskResult] = {}
    for task in required:
        path = run_dir.metrics_file(task, model)
        if not path.is_file():
            finish_from_files(run_dir, plan, model, task, expected_size(task, recipe.limit))
        result = read_task_metrics(task, path, recipe.limit)
        if result.status == "missing":
            reasons = ([merge_error] if merge_error else []) + _element_errors(run_dir, plan, "evaluate", model, task) \
                + _element_errors(run_dir, plan, "generate", model, task)
            if reasons:
                result.reason += "; " + "; ".join(reasons)
        elif result.status == "ok":
            mismatch = generation_mismatch(task, result.data_sha256, generation_data_sha256(run_dir, task, model))
            if mismatch:
                result.status, result.reason = "failed", mismatch
        tasks[task] = result
    _refuse_mixed_data(tasks)
    gen_files = {t: [run_dir.generations_file(t, model)] if run_dir.generations_file(t, model).is_file() else []
                 for t in contract.COMPETITION_SUITE if t in required}
    info = {"selector": entry.get("selector"), "step": _merged_step(run_dir, entry), "path": entry.get("path")}
    return Collection(model=model, tasks=tasks, required=required, limited=recipe.limit is not None,
                      generation_files=gen_files, source=str(run_dir.root), info=info)


def gather_run_results(run_dir: str | Path) -> list[Collection]:
    """Every model of a run directory, in the plan's order (its recipe says which tasks and limit)."""
    from jobs.run_models import plan_models
    from launcher.recipe import load_recipe

    run_dir = RunDir(Path(run_dir))
    recipe = load_recipe(run_dir.recipe_file)
    plan = _plan(run_dir)
    entries = plan_models(plan) if plan.get("models") else [{"name": recipe.base_model.model_name}]
    return [gather_model_results(run_dir, recipe, plan, entry) for entry in entries]


def _scan(paths: Iterable[Path], pattern: re.Pattern) -> list[tuple[str, str, Path]]:
    """(task, model, path) of every file under `paths` whose name matches `pattern`."""
    out = []
    for path in paths:
        candidates = [path] if path.is_file() else sorted(path.rglob("*.json")) if path.is_dir() else []
        for candidate in candidates:
            match = pattern.match(candidate.name)
            if match and match.group(1) in contract.ALL_BENCHMARKS:
                out.append((match.group(1), match.group(2), candidate))
    return out


def _file_collection(paths: list[Path], found: list[tuple[str, str, Path]], model: str) -> Collection:
    by_task: dict[str, Path] = {}
    for task, file_model, path in found:
        if file_model != model:
            continue
        if task in by_task and by_task[task] != path:
            raise ResultsError(f"two metrics files for {task} of {model}: {by_task[task]} and {path}")
        by_task[task] = path
    required = list(contract.COMPETITION_SUITE) + [t for t in contract.EXTRA_BENCHMARKS if t in by_task]
    tasks = {t: read_task_metrics(t, by_task.get(t)) for t in required}
    _refuse_mixed_data(tasks)
    limited = any(r.limit is not None for r in tasks.values())
    gen_files: dict[str, list[Path]] = {}
    for task, file_model, path in _scan(paths, GENERATIONS_RE):
        if file_model == model and task in contract.COMPETITION_SUITE:
            gen_files.setdefault(task, []).append(path)
    gen_files = {t: (files if len(files) == 1 else []) for t, files in gen_files.items()}
    return Collection(model=model, tasks=tasks, required=required, limited=limited,
                      generation_files=gen_files, source=", ".join(map(str, paths)))


def gather_file_results(sources: Sequence[str | Path]) -> list[Collection]:
    """Collect loose metrics files / directories of them, one Collection per model found (sorted
    by name). All 13 competition tasks are required; HumanEval is reported when present.
    Generation files found under the same directories (e.g. the reference's
    `generations_<model>/`) feed the zip."""
    paths = [Path(p) for p in sources]
    missing_paths = [str(p) for p in paths if not p.exists()]
    if missing_paths:
        raise ResultsError(f"not found: {', '.join(missing_paths)}")
    found = _scan(paths, METRICS_RE)
    models = sorted({m for _t, m, _p in found})
    if not models:
        raise ResultsError(f"no metrics_<task>_<model>.json files under {', '.join(map(str, paths))}")
    return [_file_collection(paths, found, model) for model in models]


def is_run_dir(path: str | Path) -> bool:
    """A directory with a recipe file: collected by its recipe, not by scanning file names."""
    return Path(path).is_dir() and RunDir(Path(path)).recipe_file.is_file()


def gather_collections(*sources: str | Path) -> list[Collection]:
    """A run directory (every model of it), or metrics files / directories (every model found).
    Never raises for missing tasks: look at each `.complete` / `.problems`."""
    if not sources:
        raise ResultsError("nothing to collect: give a run directory or metrics files")
    if len(sources) == 1 and is_run_dir(sources[0]):
        return gather_run_results(sources[0])
    if any(is_run_dir(s) for s in sources):
        raise ResultsError("give one run directory, or metrics files / folders (to compare runs: mftlaunch compare)")
    return gather_file_results(sources)
