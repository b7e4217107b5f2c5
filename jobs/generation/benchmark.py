"""One benchmark (or one shard of it): problems to rows, rows through an engine, and the results
written as the generations file and its sidecar.

Both files are written atomically, the generations file last, so a complete pair means a finished
element. With several data-parallel ranks (`jobs.generation.ranks`) each rank generates its share
into its own progress file and rank 0 writes the two files once every row is in. Between engine calls the partial-progress file is saved and `should_stop()` polled, so a
preempted element requeues and resumes. Sampling seeds are per batch, so a resumed sampled run is
not bit-identical to an uninterrupted one (greedy runs are). Post-processing applies the
reference harness's rules to each completion (stop words cut again, the eos token removed), so the
rest of a final token past a stop word changes no program.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from jobs.code_benchmarks import postprocess as pp
from jobs.code_benchmarks import prompts as pr
from jobs.context import RequeueRequested
from jobs.generation.engine import GenerationEngine, StopRule
from jobs.generation.progress import Progress, partial_filename, partial_files, progress_fingerprint, rows_in_files
from jobs.generation.ranks import rank_share, wait_for_rows
from jobs.generation.rows import Row, RowResult, batches, sort_rows
from jobs.generation.settings import DecodeSettings, token_budget
from jobs.progress_meter import ProgressMeter
from launcher.rundir import atomic_write_json, generations_name, read_json

Log = Callable[[str], None]

#: Rows per call to an engine that takes all rows at once (vLLM schedules and refills them
#: itself): large enough to keep it busy, small enough for a progress line and a point to stop.
ALL_AT_ONCE_CHUNK_ROWS = 512


def sidecar_filename(benchmark: str, model_name: str) -> str:
    return generations_name(benchmark, model_name, ".raw.json")


@dataclass
class BenchmarkJob:
    """Everything fixed before the first row is generated: prompts, stopping, output paths and the
    fingerprint under which saved rows count."""

    benchmark: str
    problems: Sequence[dict[str, Any]]
    indices: Sequence[int]
    fmt: pr.PromptFormat
    settings: DecodeSettings
    out_dir: Path
    model_name: str
    model_id: str
    dtype: str
    extra_eos: list[str]
    prompts: list[str]
    stop: StopRule
    fingerprint: str
    rank: int = 0
    world_size: int = 1

    @property
    def final(self) -> Path:
        return self.out_dir / generations_name(self.benchmark, self.model_name)

    @property
    def sidecar(self) -> Path:
        return self.out_dir / sidecar_filename(self.benchmark, self.model_name)

    @property
    def partial(self) -> Path:
        return self.out_dir / partial_filename(self.benchmark, self.model_name, self.rank, self.world_size)

    def all_partials(self) -> list[Path]:
        return partial_files(self.out_dir, self.benchmark, self.model_name)


def prepare_job(engine: GenerationEngine, benchmark: str, problems: Sequence[dict[str, Any]],
                indices: Sequence[int], fmt: pr.PromptFormat, settings: DecodeSettings, out_dir: Path,
                model_name: str, model_id: str, dtype: str, rank: int = 0, world_size: int = 1) -> BenchmarkJob:
    """Prompts, stop rule and fingerprint of one benchmark (or shard)."""
    extra_eos = [engine.tokenizer.eos_token] if getattr(engine.tokenizer, "eos_token", None) else []
    stop_strings = pr.generation_stop_strings(benchmark, fmt, extra_eos)
    prompts = [pr.build_prompt(benchmark, problems[i], fmt) for i in indices]
    fingerprint = progress_fingerprint(model_id, benchmark, prompts, stop_strings, engine.eos_ids, settings, dtype)

    def finished(text: str) -> bool:
        return pp.is_finished(benchmark, fmt, text, extra_eos)

    return BenchmarkJob(benchmark, problems, indices, fmt, settings, Path(out_dir), model_name, model_id, dtype,
                        extra_eos, prompts, StopRule(tuple(stop_strings), finished), fingerprint, rank, world_size)


def completed_counts(job: BenchmarkJob) -> Optional[dict[str, Any]]:
    """The counts of a finished element written under the same fingerprint, else None."""
    if job.final.is_file() and job.sidecar.is_file():
        meta = read_json(job.sidecar)
        if meta.get("fingerprint") == job.fingerprint:
            return meta["counts"]
    return None


def build_rows(engine: GenerationEngine, job: BenchmarkJob) -> tuple[list[Row], dict[int, int]]:
    """Every row of the job (problem × sample) with its token budget, and each problem's prompt length."""
    rows: list[Row] = []
    prompt_tokens: dict[int, int] = {}
    for i, prompt in zip(job.indices, job.prompts):
        ids = engine.encode(prompt)
        prompt_tokens[i] = len(ids)
        for sample in range(job.settings.n_samples):
            rows.append(Row(i, sample, ids, token_budget(len(ids), job.settings, engine.model_max)))
    return rows, prompt_tokens


def settle_overlong(rows: Sequence[Row], progress: Progress, job: BenchmarkJob, engine: GenerationEngine,
                    log: Log) -> list[Row]:
    """Rows whose prompt leaves no room to generate get an empty completion (`prompt_too_long`)
    without a model call; returns them."""
    overlong = [r for r in rows if r.budget <= 0]
    for row in overlong:
        progress.rows.setdefault(row.key, asdict(RowResult("", 0, "prompt_too_long")))
    if overlong:
        log(f"mftlaunch: WARNING {len({r.problem for r in overlong})} prompt(s) of {job.benchmark} leave no room "
            f"to generate (max_length {job.settings.max_length}, model limit {engine.model_max}); their "
            "completions are empty and reported as prompt_too_long")
    return overlong


def generate_rows(engine: GenerationEngine, todo: Sequence[Row], total: int, progress: Progress,
                  done_elsewhere: set[str], job: BenchmarkJob, should_stop: Callable[[], bool],
                  log: Log, on_progress: Optional[Log] = None) -> tuple[int, float]:
    """Generate `todo` in the engine's call sizes (`ALL_AT_ONCE_CHUNK_ROWS` for an engine that
    takes all rows at once), saving progress after each call, logging a progress line (rows, rate,
    ETA, new tokens/s) that also goes to `on_progress`, and handing back (RequeueRequested) when
    asked to stop. Returns (new tokens, seconds)."""
    started = time.time()
    new_tokens = 0
    size = engine.batch_rows(job.settings) or ALL_AT_ONCE_CHUNK_ROWS
    calls = list(batches(todo, size))
    where = f" rank {job.rank}/{job.world_size}" if job.world_size > 1 else ""
    meter = ProgressMeter(f"generate {job.benchmark}{where}", total, "rows",
                          initial=len(progress.rows.keys() | done_elsewhere), log=log, sink=on_progress)
    for number, batch in enumerate(calls):
        for row, res in zip(batch, engine.generate(batch, job.stop, job.settings)):
            progress.rows[row.key] = asdict(res)
            new_tokens += res.new_tokens
        progress.save()
        done = len(progress.rows.keys() | done_elsewhere)
        meter.update(done, f"{new_tokens / max(time.time() - started, 1e-9):.1f} new tok/s")
        if number + 1 < len(calls) and should_stop():
            raise RequeueRequested(f"generate {job.benchmark}: saved {done}/{total} rows")
    return new_tokens, time.time() - started


def assemble_outputs(job: BenchmarkJob, rows_done: dict[str, dict[str, Any]],
                     prompt_tokens: dict[int, int]) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """(post-processed programs per problem, sidecar record per problem), in dataset order."""
    generations, raw = [], []
    for i, prompt in zip(job.indices, job.prompts):
        samples = [rows_done[f"{i}:{s}"] for s in range(job.settings.n_samples)]
        generations.append([pp.postprocess(job.benchmark, job.problems[i], s["completion"], job.fmt, job.extra_eos)
                            for s in samples])
        raw.append({
            "index": i,
            "task_id": job.problems[i].get("task_id"),
            "prompt": prompt,
            "prompt_tokens": prompt_tokens[i],
            "completions": [s["completion"] for s in samples],
            "new_tokens": [s["new_tokens"] for s in samples],
            "finish": [s["finish"] for s in samples],
        })
    return generations, raw


def element_counts(job: BenchmarkJob, raw: Sequence[dict[str, Any]], overlong: Sequence[Row], new_tokens: int,
                   elapsed: float) -> dict[str, Any]:
    """The counts of the completion sentinel."""
    return {
        "benchmark": job.benchmark,
        "problems": len(job.indices),
        "samples": len(job.indices) * job.settings.n_samples,
        "generated_tokens": sum(sum(r["new_tokens"]) for r in raw),
        "prompt_too_long": len({r.problem for r in overlong}),  # problems (all their samples are empty)
        "seconds_this_attempt": round(elapsed, 3),
        "new_tokens_per_s_this_attempt": round(new_tokens / elapsed, 2) if elapsed > 0 else None,
        "data_parallel_ranks": job.world_size,
    }


def write_outputs(engine: GenerationEngine, job: BenchmarkJob, generations: list[list[str]],
                  raw: list[dict[str, Any]], counts: dict[str, Any]) -> None:
    """The sidecar, then the generations file (a complete pair means a finished element)."""
    atomic_write_json(job.sidecar, {
        "benchmark": job.benchmark, "model_name": job.model_name, "model": job.model_id, "backend": engine.name,
        "prompt_format": asdict(job.fmt), "stop": list(job.stop.strings), "eos_ids": engine.eos_ids,
        "dtype": job.dtype, "settings": asdict(job.settings), "fingerprint": job.fingerprint, "counts": counts,
        "model_generation_config": engine.generation_config(), "problems": raw,
    })
    atomic_write_json(job.final, generations)


def generate_benchmark(
    engine: GenerationEngine,
    benchmark: str,
    problems: Sequence[dict[str, Any]],
    indices: Sequence[int],
    fmt: pr.PromptFormat,
    settings: DecodeSettings,
    out_dir: Path,
    model_name: str,
    model_id: str = "",
    dtype: str = "fp32",
    should_stop: Callable[[], bool] = lambda: False,
    log: Log = lambda msg: print(msg, flush=True),
    rank: int = 0,
    world_size: int = 1,
    on_progress: Optional[Log] = None,
) -> dict[str, Any]:
    """Generate problems `indices` of `problems` and write the generations file and sidecar.

    Resumes from the partial-progress files; when `should_stop()` turns true between batches,
    saves and raises RequeueRequested. A prompt that leaves no room to generate is not sent to the
    model: its completion is empty (the program is the bare prompt base, which fails its tests)
    and its finish reason `prompt_too_long`. With `world_size` data-parallel ranks, `rank`
    generates its share only; rank 0 then waits for the others' rows and writes the files.
    Progress lines go to the log and to `on_progress`.
    Returns the counts for the completion sentinel (rank 0; other ranks: their own rows)."""
    job = prepare_job(engine, benchmark, problems, indices, fmt, settings, out_dir, model_name, model_id, dtype,
                      rank, world_size)
    done = completed_counts(job)
    if done is not None:
        log(f"mftlaunch: {job.final.name} is complete already; nothing to generate")
        return done
    progress = Progress.load(job.partial, job.fingerprint)
    elsewhere = rows_in_files([p for p in job.all_partials() if p != job.partial], job.fingerprint)
    rows, prompt_tokens = build_rows(engine, job)
    overlong = settle_overlong(rows, progress, job, engine, log)
    if overlong and world_size > 1:
        progress.save()  # rank 0 gathers rows from the files only
    ordered = sort_rows(r for r in rows if r.budget > 0)
    mine = rank_share(ordered, engine.batch_rows(settings), rank, world_size)
    todo = [r for r in mine if r.key not in progress.rows and r.key not in elsewhere]
    if len(todo) < len(mine):
        log(f"mftlaunch: resuming {benchmark}: {len(mine) - len(todo)} of {len(mine)} rows already done")
    new_tokens, elapsed = generate_rows(engine, todo, len(rows), progress, set(elsewhere), job, should_stop, log,
                                        on_progress)
    if rank != 0:
        log(f"mftlaunch: {benchmark} rank {rank}/{world_size}: its {len(mine)} rows are done")
        return {"benchmark": benchmark, "rank": rank, "rows": len(mine)}
    rows_done = {**elsewhere, **progress.rows}
    if world_size > 1:
        rows_done = wait_for_rows({r.key for r in rows}, job.all_partials, job.fingerprint, should_stop, log)
    generations, raw = assemble_outputs(job, rows_done, prompt_tokens)
    counts = element_counts(job, raw, overlong, new_tokens, elapsed)
    write_outputs(engine, job, generations, raw, counts)
    for path in job.all_partials():
        path.unlink(missing_ok=True)
    return counts
