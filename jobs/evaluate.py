"""Evaluate stage: run the generated programs of one benchmark against its tests, in the sandbox.

Per element (pieces: model, benchmark, problems [start, stop)): read the generations of the
generated pieces that overlap each piece (docs/CONTRACTS.md, `jobs.results.pieces`), assemble
each program with the benchmark's tests (`jobs.code_benchmarks.assembly`), execute them through
`eval_sandbox.execute_many` with the recipe's `stages.evaluate` settings, and write

- `metrics_<benchmark>_<model>.json` in the reference harness's shape
  `{"<benchmark>": {"pass@1": x, ...}, "config": {..., "data_sha256": ...}}`;
- `results_<benchmark>_<model>.jsonl`: one line per sample (passed, status, error class,
  stderr tail, time), so a failure can be read without re-running anything.

Both are written atomically. Results of finished chunks are kept in a `.partial.jsonl` beside
them, so a requeued element (USR2 / time budget) resumes instead of starting over.

pass@k (`jobs.results.scoring`) is the unbiased estimator of Chen et al. (2021), emitted for k in
(1, 10, 100) where every problem has at least k samples, as the reference does; greedy runs
therefore report pass@1 only. Generations files are read by `jobs.results.generations`.
No torch here.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from jobs.code_benchmarks.data import (
    BenchmarkData,
    DataError,
    data_provenance,
    language_of,
    load_benchmark,
    warn_if_not_pinned,
)
from jobs.code_benchmarks.limits import reference_timeout_s
from jobs.progress_meter import ProgressMeter
from jobs.results.data_identity import generation_data_sha256, generation_mismatch
from jobs.results.generations import GenerationsError, fit_generations, load_generations
from jobs.results.pieces import finish_benchmark, read_generated_range, read_records, write_piece_results
from jobs.results.scoring import KS, pass_at_k, pass_at_k_summary, summarize
from launcher.rundir import atomic_write_json, atomic_write_text, results_name

__all__ = [  # the CLI (launcher/cli_eval.py) and the tests import these from here
    "KS", "EvalSettings", "GenerationsError", "SandboxError", "StopRequested", "default_workers",
    "error_class", "evaluate_file", "execute_generations", "fit_generations", "load_generations",
    "pass_at_k", "pass_at_k_summary", "resolve_backend", "run_stage", "summarize",
    "write_results",
]

CHUNK_PER_WORKER = 4
STDERR_TAIL_CHARS = 2000


# ---------------------------------------------------------------------------------------------
# execution


@dataclass
class EvalSettings:
    """How programs are executed: the recipe's `stages.evaluate` or the CLI's flags."""

    sandbox: str = "auto"
    workers: Optional[int] = None
    timeout_s: Optional[float] = None  # None: the reference harness's timeout of each benchmark
    apptainer_image: Optional[str] = None

    @classmethod
    def from_stage(cls, stage: Any) -> "EvalSettings":
        if stage is None:
            return cls()
        return cls(sandbox=stage.sandbox, workers=stage.workers, timeout_s=stage.timeout_s,
                   apptainer_image=stage.apptainer_image)

    def resolved_workers(self) -> int:
        return self.workers or default_workers()

    def run_timeout_s(self, benchmark: str) -> float:
        """Per-program run timeout: the recipe's, else the reference harness's for `benchmark`."""
        return float(self.timeout_s) if self.timeout_s is not None else reference_timeout_s(benchmark)


def default_workers() -> int:
    """The CPUs of the allocation: SLURM_CPUS_PER_TASK, else every CPU of the machine."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


_EXC_NAME = re.compile(r"\b([A-Z][A-Za-z0-9_]*(?:Error|Exception|Exit|Interrupt))\b")


def error_class(result: Any) -> Optional[str]:
    """A short name for why a sample failed: the exception named last in stderr for a test
    failure or crash (AssertionError, NameError, ...), else the sandbox status."""
    if result.passed:
        return None
    status = getattr(result, "status", "failed")
    if status in ("failed", "runtime_error"):
        names = _EXC_NAME.findall(getattr(result, "stderr_tail", "") or "")
        if names:
            return names[-1]
    return status


def is_internal_error(result: Any) -> bool:
    """The sandbox itself failed (not the program): such a sample is run again, never scored."""
    return getattr(result, "status", "") == "killed" and str(getattr(result, "detail", "")).startswith("internal error")


def _program_key(index: int, sample: int, program: str) -> str:
    digest = hashlib.sha256(program.encode("utf-8")).hexdigest()[:16]
    return f"{index}:{sample}:{digest}"


def _record(index: int, sample: int, task_id: Any, program: str, result: Any) -> dict[str, Any]:
    return {
        "index": index,
        "task_id": task_id,
        "sample": sample,
        "passed": bool(result.passed),
        "status": getattr(result, "status", "passed" if result.passed else "failed"),
        "error": error_class(result),
        "stderr_tail": (getattr(result, "stderr_tail", "") or "")[-STDERR_TAIL_CHARS:],
        "duration_s": round(float(getattr(result, "duration_s", 0.0) or 0.0), 4),
        "detail": getattr(result, "detail", ""),
        "key": _program_key(index, sample, program),
    }


def _default_assemble() -> Callable[[str, dict, str], tuple[str, ...]]:
    from jobs.code_benchmarks import assembly  # written beside the sandbox; imported when needed

    return assembly.assemble_checked


def _default_execute_many() -> Callable[..., list]:
    import eval_sandbox

    return eval_sandbox.execute_many


class StopRequested(Exception):
    """Execution stopped early on request; the partial results are saved."""


class SandboxError(Exception):
    """No sandbox backend of the requested kind works here; the message says what to install."""


def resolve_backend(settings: EvalSettings) -> Any:
    """The sandbox backend, resolved once (so a missing bubblewrap fails before any work).
    The apptainer image travels as MFTLAUNCH_SANDBOX_IMAGE, where eval_sandbox looks for it."""
    import eval_sandbox

    if settings.apptainer_image:
        os.environ["MFTLAUNCH_SANDBOX_IMAGE"] = settings.apptainer_image
    try:
        return eval_sandbox.get_backend(settings.sandbox)
    except eval_sandbox.SandboxUnavailable as exc:
        raise SandboxError(f"sandbox '{settings.sandbox}' is not available: {exc}") from None


Item = tuple[int, int, str]  # (problem index, sample number, program)


class PartialResults:
    """The `.partial.jsonl` beside the results: records of finished chunks, appended and fsynced
    after each chunk, so a requeued element resumes where it stopped."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if self.path is None or not self.path.is_file():
            return done
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                done[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a kill: that sample runs again
        return done

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        if self.path is None or not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(rec) + "\n" for rec in records))
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class BatchOutcome:
    """What one batch gave: scored records, and the items the sandbox itself failed on (with why)."""

    records: list[dict[str, Any]]
    internal: list[tuple[Item, str]]


@dataclass
class BatchEvaluator:
    """Assembles a batch of generations into test programs, runs them, and returns their records.
    Holds no results itself: the caller decides what to keep."""

    benchmark: str
    data: BenchmarkData
    assemble: Callable[[str, dict, str], tuple[str, ...]]
    execute_many: Callable[..., list]
    workers: int
    execute_kwargs: dict[str, Any]

    def run(self, batch: Sequence[Item]) -> BatchOutcome:
        jobs = [self.assemble(self.benchmark, self.data.problems[i], program) for i, _s, program in batch]
        results = self.execute_many(jobs, self.workers, **self.execute_kwargs)
        if len(results) != len(jobs):
            raise RuntimeError(f"sandbox returned {len(results)} results for {len(jobs)} programs")
        outcome = BatchOutcome(records=[], internal=[])
        for (i, s, program), result in zip(batch, results):
            if is_internal_error(result):
                outcome.internal.append(((i, s, program), f"problem {i} sample {s}: {result.detail}"))
            else:
                outcome.records.append(_record(i, s, self.data.problems[i].get("task_id"), program, result))
        return outcome


def _evaluator(benchmark: str, data: BenchmarkData, settings: EvalSettings,
               assemble: Optional[Callable[[str, dict, str], tuple[str, ...]]],
               execute_many: Optional[Callable[..., list]], backend: Any = None) -> BatchEvaluator:
    """The evaluator with the real sandbox (backend resolved once, up front) unless hooks are given."""
    if execute_many is None:
        execute_many = _default_execute_many()
        backend = backend or resolve_backend(settings)
    else:
        backend = settings.sandbox
    kwargs: dict[str, Any] = {"backend": backend, "timeout": settings.run_timeout_s(benchmark)}
    return BatchEvaluator(benchmark, data, assemble or _default_assemble(), execute_many,
                          settings.resolved_workers(), kwargs)


def _pending(generations: list[list[str]], done: dict[str, dict[str, Any]]) -> list[Item]:
    return [(index, sample, program)
            for index, samples in enumerate(generations)
            for sample, program in enumerate(samples)
            if _program_key(index, sample, program) not in done]


def _keep(outcome: BatchOutcome, done: dict[str, dict[str, Any]], partial: PartialResults) -> None:
    for rec in outcome.records:
        done[rec["key"]] = rec
    partial.append(outcome.records)


def _run_chunks(evaluator: BatchEvaluator, todo: list[Item], total: int, done: dict[str, dict[str, Any]],
                partial: PartialResults, should_stop: Callable[[], bool],
                meter: ProgressMeter) -> list[Item]:
    """Run `todo` chunk by chunk, asking `should_stop` before each and updating `meter` after
    each; returns the internal errors."""
    chunk = max(1, evaluator.workers * CHUNK_PER_WORKER)
    internal: list[Item] = []
    for offset in range(0, len(todo), chunk):
        if should_stop():
            raise StopRequested(f"stopped with {len(todo) - offset} of {total} samples left")
        outcome = evaluator.run(todo[offset: offset + chunk])
        _keep(outcome, done, partial)
        internal += [item for item, _why in outcome.internal]
        meter.update(total - len(todo) + offset + min(chunk, len(todo) - offset))
    return internal


def _retry_internal(evaluator: BatchEvaluator, items: list[Item], done: dict[str, dict[str, Any]],
                    partial: PartialResults, log: Callable[[str], None]) -> None:
    """Run sandbox failures once more, one at a time: a transient fault should not cost a score."""
    if not items:
        return
    log(f"evaluate {evaluator.benchmark}: {len(items)} programs hit a sandbox error, running them again")
    still: list[str] = []
    for item in items:
        outcome = evaluator.run([item])
        _keep(outcome, done, partial)
        still += [why for _item, why in outcome.internal]
    if still:
        raise SandboxError(f"{len(still)} programs failed inside the sandbox (not in the program), "
                           f"e.g. {still[0]}; results so far are kept, re-run to resume")


def execute_generations(
    benchmark: str,
    data: BenchmarkData,
    generations: list[list[str]],
    settings: EvalSettings,
    *,
    partial_path: Optional[Path] = None,
    should_stop: Callable[[], bool] = lambda: False,
    assemble: Optional[Callable[[str, dict, str], tuple[str, ...]]] = None,
    execute_many: Optional[Callable[..., list]] = None,
    backend: Any = None,
    log: Callable[[str], None] = lambda msg: print(msg, flush=True),
    on_progress: Optional[Callable[[str], None]] = None,
) -> list[dict[str, Any]]:
    """Run every (problem, sample) and return one record per sample, problem-major order.

    Work goes in chunks; after each chunk the records are appended to `partial_path`, a progress
    line (programs, rate, ETA) is logged and handed to `on_progress`, and `should_stop()` is asked.
    When it says stop, `StopRequested` is raised (the records so far are kept in the partial file
    and reused on the next call)."""
    evaluator = _evaluator(benchmark, data, settings, assemble, execute_many, backend)
    partial = PartialResults(partial_path)
    done = partial.load()
    todo = _pending(generations, done)
    total = sum(len(s) for s in generations)
    if done:
        log(f"evaluate {benchmark}: resuming, {total - len(todo)} of {total} samples already ran")
    meter = ProgressMeter(f"evaluate {benchmark}", total, "programs", initial=total - len(todo), log=log,
                          sink=on_progress)
    internal = _run_chunks(evaluator, todo, total, done, partial, should_stop, meter)
    _retry_internal(evaluator, internal, done, partial, log)
    return [done[_program_key(index, sample, program)]
            for index, samples in enumerate(generations)
            for sample, program in enumerate(samples)]


# ---------------------------------------------------------------------------------------------
# metrics


def write_results(
    benchmark: str,
    metrics: dict[str, float],
    config: dict[str, Any],
    records: Sequence[dict[str, Any]],
    metrics_path: Path,
    results_path: Path,
) -> dict[str, Any]:
    """Write the per-sample JSONL, then the metrics file (its presence means: complete)."""
    atomic_write_text(results_path, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records))
    payload = {benchmark: metrics, "config": config}
    atomic_write_json(metrics_path, payload)
    return payload


def _base_config(benchmark: str, data: BenchmarkData, settings: EvalSettings, limit: Optional[int]) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "language": language_of(benchmark),
        **data_provenance(data),
        "limit": limit,
        "sandbox": settings.sandbox,
        "workers": settings.resolved_workers(),
        "python": platform.python_version(),
        "host": platform.node(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def execution_config(benchmark: str, settings: EvalSettings, backend: Any) -> dict[str, Any]:
    """What really ran the programs: the backend `auto` resolved to, the limits of both steps
    (the run timeout against the reference harness's), and the toolchain versions."""
    from eval_sandbox.limits import default_limits
    from jobs.code_benchmarks.assembly import split

    language = split(benchmark)[1]
    timeout = settings.run_timeout_s(benchmark)
    run = default_limits(language, "run")
    cpu = max(run.cpu_seconds, math.ceil(timeout)) if run.cpu_seconds is not None else None
    compile_ = default_limits(language, "compile")
    name = getattr(backend, "name", None) or settings.sandbox
    return {
        "sandbox_backend": name,
        "timeout_s": timeout,
        "reference_timeout_s": reference_timeout_s(benchmark),
        "limits_comparable": timeout == reference_timeout_s(benchmark),
        "limits": {"run": asdict(run.replace(wall_timeout_s=timeout, cpu_seconds=cpu)),
                   "compile": asdict(compile_) if compile_ is not None else None},
        "toolchain": ({"apptainer_image": os.environ.get("MFTLAUNCH_SANDBOX_IMAGE")} if name == "apptainer"
                      else _host_toolchain()),
    }


@functools.lru_cache(maxsize=1)
def _host_toolchain() -> dict[str, Any]:
    """Toolchain versions on this host (asked once per process: each asks six compilers)."""
    from eval_sandbox import toolchain

    return toolchain.describe()


def _evaluate(
    benchmark: str,
    data: BenchmarkData,
    generations: list[list[str]],
    settings: EvalSettings,
    config: dict[str, Any],
    metrics_path: Path,
    results_path: Path,
    should_stop: Callable[[], bool] = lambda: False,
    **hooks: Any,
) -> dict[str, Any]:
    partial = results_path.with_name(results_path.name.removesuffix(".jsonl") + ".partial.jsonl")
    backend = None if hooks.get("execute_many") else resolve_backend(settings)
    config = {**config, **execution_config(benchmark, settings, backend)}
    records = execute_generations(benchmark, data, generations, settings, partial_path=partial,
                                  should_stop=should_stop, backend=backend, **hooks)
    metrics, extra = summarize(records, len(data))
    payload = write_results(benchmark, metrics, {**config, **extra}, records, metrics_path, results_path)
    partial.unlink(missing_ok=True)
    return payload


def evaluate_file(
    task: str,
    generations_path: str | Path,
    out_path: str | Path,
    data_dir: str | Path | None,
    sandbox: str = "auto",
    workers: Optional[int] = None,
    limit: Optional[int] = None,
    timeout_s: Optional[float] = None,
    **hooks: Any,
) -> dict[str, Any]:
    """Score one generations file (the CLI's `mftlaunch evaluate`). The per-sample results go
    beside `out_path`: `results_<task>_<model>.jsonl` for a `metrics_<task>_<model>.json`, else
    `<out stem>.results.jsonl`. Returns the metrics payload."""
    out_path = Path(out_path)
    data = load_benchmark(task, data_dir, limit)
    generations = fit_generations(load_generations(Path(generations_path)), len(data), str(generations_path),
                                  limited=limit is not None)
    settings = EvalSettings(sandbox=sandbox, workers=workers, timeout_s=timeout_s)
    prefix = f"metrics_{task}_"
    if out_path.name.startswith(prefix) and out_path.suffix == ".json":
        model = out_path.name[len(prefix):-len(".json")]
        results_path = out_path.with_name(results_name(task, model))
    else:
        results_path = out_path.with_name(out_path.stem + ".results.jsonl")
    config = {**_base_config(task, data, settings, limit), "generations": [str(generations_path)]}
    return _evaluate(task, data, generations, settings, config, out_path, results_path, **hooks)


def _generate_config(stage: Any) -> dict[str, Any]:
    """The generation settings that decide the numbers (this model's), recorded beside them."""
    if stage is None:
        return {}
    return {
        "prompt_format": stage.prompt_format,
        "n_samples": stage.n_samples,
        "greedy": stage.greedy,
        "temperature": stage.temperature,
        "top_p": stage.top_p,
        "max_length": stage.max_length,
        "max_new_tokens": stage.max_new_tokens,
        "batch_size": stage.batch_size,
        "eos": list(stage.eos),
        "backend": stage.backend,
    }


def _piece_records(ctx: Any, piece: dict[str, Any], data: BenchmarkData, generations: list[list[str]],
                   settings: EvalSettings, backend: Any) -> list[dict[str, Any]]:
    """Per-sample records of one piece (problem indices of the whole benchmark): reused when the
    piece's results file holds exactly these programs, else run (resuming from the partial file)."""
    start, stop, benchmark = piece["start"], piece["stop"], piece["benchmark"]
    path = ctx.run_dir.piece_results_file(piece["model"], benchmark, start, stop)
    wanted = {_program_key(start + i, s, program) for i, samples in enumerate(generations) for s, program in enumerate(samples)}
    if path.is_file():
        previous = read_records(path)
        if {rec["key"] for rec in previous} == wanted and len(previous) == len(wanted):
            return previous
    part = dataclasses.replace(data, problems=data.problems[start:stop])
    partial = path.with_name(path.name.removesuffix(".jsonl") + ".partial.jsonl")
    records = execute_generations(benchmark, part, generations, settings, partial_path=partial,
                                  should_stop=ctx.should_stop, backend=backend,
                                  on_progress=lambda line: ctx.run_dir.write_progress("evaluate", ctx.index, line))
    for rec in records:
        rec["index"] += start
        rec["key"] = _program_key(rec["index"], rec["sample"], generations[rec["index"] - start][rec["sample"]])
    write_piece_results(path, records)
    partial.unlink(missing_ok=True)
    return records


def run_stage(ctx: Any) -> dict[str, Any]:
    """Stage entry (docs/CONTRACTS.md): score every piece of plan item `ctx.item`, then write the
    metrics of each benchmark whose pieces are all scored (`jobs.results.pieces`)."""
    from jobs import run_models
    from jobs.context import RequeueRequested

    if not ctx.dist.is_main:
        return {}
    recipe = ctx.recipe
    settings = EvalSettings.from_stage(recipe.stages.evaluate)
    backend = resolve_backend(settings)
    counts: dict[str, Any] = {"pieces": [], "samples": 0, "passed": 0, "finished": []}
    for piece in ctx.item["pieces"]:
        model, benchmark = piece["model"], piece["benchmark"]
        entry = run_models.plan_model(ctx.plan, model)
        data = load_benchmark(benchmark, ctx.data_dir, recipe.limit)
        warn_if_not_pinned(data)
        generated = generation_data_sha256(ctx.run_dir, benchmark, model)
        mismatch = generation_mismatch(benchmark, data.sha256, generated)
        if mismatch:
            raise DataError(mismatch)
        if piece["num_problems"] != len(data):
            raise GenerationsError(f"plan piece {piece} does not fit {benchmark}'s {len(data)} problems "
                                   "(the data or limit changed since submit?); submit the run again")
        generations, _files = read_generated_range(ctx.run_dir, ctx.plan, model, benchmark, piece["start"], piece["stop"])
        try:
            records = _piece_records(ctx, piece, data, generations, settings, backend)
        except StopRequested as exc:
            raise RequeueRequested(str(exc)) from None
        config = {
            **_base_config(benchmark, data, settings, recipe.limit),
            **execution_config(benchmark, settings, backend),
            "generation_data_sha256": generated,
            "model_name": model,
            "model_path": run_models.model_location(ctx.run_dir, recipe, entry),
            "base_model_path": recipe.base_model.path,
            "checkpoint_step": entry.get("step"),
            "recipe": recipe.name,
            **_generate_config(run_models.generate_settings(recipe, entry)),
        }
        atomic_write_json(ctx.run_dir.evaluate_dir(model, benchmark) / "config.json", config)
        passed = sum(1 for rec in records if rec["passed"])
        print(f"evaluate {model} {benchmark}[{piece['start']}:{piece['stop']}]: {passed}/{len(records)} samples passed",
              flush=True)
        counts["pieces"].append({"model": model, "benchmark": benchmark, "start": piece["start"], "stop": piece["stop"],
                                 "samples": len(records), "passed": passed})
        counts["samples"] += len(records)
        counts["passed"] += passed
        payload = finish_benchmark(ctx.run_dir, ctx.plan, model, benchmark, len(data), config)
        if payload is not None:
            metrics = payload[benchmark]
            print(f"evaluate {model} {benchmark}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
            counts["finished"].append(f"{model}/{benchmark}")
    return counts
