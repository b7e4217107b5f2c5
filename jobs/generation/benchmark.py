"""One benchmark (or one shard of it): problems to rows, rows through an engine, and the results
written as the generations file and its sidecar.

Both files are written atomically, the generations file last, so a complete pair means a finished
element. Between batches the partial-progress file is saved and `should_stop()` polled, so a
preempted element requeues and resumes. Sampling seeds are per batch, so a resumed sampled run is
not bit-identical to an uninterrupted one (greedy runs are). Post-processing cuts each completion
at stop words and eos strings again, so an engine that overshoots a stop changes no program.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from jobs.code_benchmarks import postprocess as pp
from jobs.code_benchmarks import prompts as pr
from jobs.context import RequeueRequested
from jobs.generation.progress import Progress, partial_filename, progress_fingerprint
from jobs.generation.rows import Row, RowResult, batches, sort_rows
from jobs.generation.settings import DecodeSettings, token_budget
from jobs.generation.vllm_engine import VLLMEngine
from launcher.rundir import atomic_write_json, generations_name, read_json


def sidecar_filename(benchmark: str, model_name: str) -> str:
    return generations_name(benchmark, model_name, ".raw.json")


def generate_benchmark(
    engine: Any,
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
    log: Callable[[str], None] = lambda msg: print(msg, flush=True),
) -> dict[str, Any]:
    """Generate problems `indices` of `problems` and write the generations file and sidecar.

    Resumes from the partial-progress file; when `should_stop()` turns true between batches,
    saves and raises RequeueRequested. A prompt that leaves no room to generate is not sent to the
    model: its completion is empty (the program is the bare prompt base, which fails its tests)
    and its finish reason `prompt_too_long`. Returns the counts for the completion sentinel."""
    out_dir = Path(out_dir)
    final = out_dir / generations_name(benchmark, model_name)
    sidecar = out_dir / sidecar_filename(benchmark, model_name)
    extra_eos = [engine.tokenizer.eos_token] if getattr(engine.tokenizer, "eos_token", None) else []
    stop = pr.generation_stop_strings(benchmark, fmt, extra_eos)
    prompts = [pr.build_prompt(benchmark, problems[i], fmt) for i in indices]
    fingerprint = progress_fingerprint(model_id, benchmark, prompts, stop, engine.eos_ids, settings, dtype)

    if final.is_file() and sidecar.is_file():
        meta = read_json(sidecar)
        if meta.get("fingerprint") == fingerprint:
            log(f"mftlaunch: {final.name} is complete already; nothing to generate")
            return meta["counts"]

    progress = Progress.load(out_dir / partial_filename(benchmark, model_name), fingerprint)
    rows: list[Row] = []
    prompt_tokens: dict[int, int] = {}
    for i, prompt in zip(indices, prompts):
        ids = engine.encode(prompt)
        prompt_tokens[i] = len(ids)
        for sample in range(settings.n_samples):
            rows.append(Row(i, sample, ids, token_budget(len(ids), settings, engine.model_max)))
    overlong = [r for r in rows if r.budget <= 0]
    for row in overlong:
        progress.rows.setdefault(row.key, asdict(RowResult("", 0, "prompt_too_long")))
    if overlong:
        log(f"mftlaunch: WARNING {len({r.problem for r in overlong})} prompt(s) of {benchmark} leave no room "
            f"to generate (max_length {settings.max_length}, model limit {engine.model_max}); their "
            "completions are empty and reported as prompt_too_long")
    todo = sort_rows(r for r in rows if r.key not in progress.rows)
    if len(todo) < len(rows):
        log(f"mftlaunch: resuming {benchmark}: {len(rows) - len(todo)} of {len(rows)} rows already done")

    def finished(text: str) -> bool:
        return pp.is_finished(benchmark, fmt, text, extra_eos)

    started = time.time()
    new_tokens = 0
    if todo and isinstance(engine, VLLMEngine):
        for row, res in zip(todo, engine.generate_all(todo, stop, settings)):
            progress.rows[row.key] = asdict(res)
            new_tokens += res.new_tokens
        progress.save()
        todo = []
    for number, batch in enumerate(batches(todo, settings.batch_size)):
        if not settings.greedy:
            import torch

            torch.manual_seed(settings.seed * 1_000_003 + batch[0].problem * 1009 + batch[0].sample)
        for row, res in zip(batch, engine.generate(batch, finished, settings)):
            progress.rows[row.key] = asdict(res)
            new_tokens += res.new_tokens
        progress.save()
        done = sum(1 for r in rows if r.key in progress.rows)
        elapsed = time.time() - started
        log(f"mftlaunch: {benchmark} batch {number + 1}: {done}/{len(rows)} rows, "
            f"{new_tokens / max(elapsed, 1e-9):.1f} new tok/s")
        if done < len(rows) and should_stop():
            raise RequeueRequested(f"generate {benchmark}: saved {done}/{len(rows)} rows")
    elapsed = time.time() - started

    generations, raw = [], []
    for i, prompt in zip(indices, prompts):
        samples = [progress.rows[f"{i}:{s}"] for s in range(settings.n_samples)]
        generations.append([pp.postprocess(benchmark, problems[i], s["completion"], fmt, extra_eos) for s in samples])
        raw.append({
            "index": i,
            "task_id": problems[i].get("task_id"),
            "prompt": prompt,
            "prompt_tokens": prompt_tokens[i],
            "completions": [s["completion"] for s in samples],
            "new_tokens": [s["new_tokens"] for s in samples],
            "finish": [s["finish"] for s in samples],
        })
    total_tokens = sum(sum(r["new_tokens"]) for r in raw)
    counts = {
        "benchmark": benchmark,
        "problems": len(indices),
        "samples": len(indices) * settings.n_samples,
        "generated_tokens": total_tokens,
        "prompt_too_long": len({r.problem for r in overlong}),  # problems (all their samples are empty)
        "seconds_this_attempt": round(elapsed, 3),
        "new_tokens_per_s_this_attempt": round(new_tokens / elapsed, 2) if elapsed > 0 else None,
    }
    atomic_write_json(sidecar, {
        "benchmark": benchmark, "model_name": model_name, "model": model_id, "backend": engine.name,
        "prompt_format": asdict(fmt), "stop": stop, "eos_ids": engine.eos_ids, "dtype": dtype,
        "settings": asdict(settings), "fingerprint": fingerprint, "counts": counts,
        "model_generation_config": model_generation_config(engine), "problems": raw,
    })
    atomic_write_json(final, generations)
    progress.path.unlink(missing_ok=True)
    return counts


def model_generation_config(engine: Any) -> dict[str, Any]:
    """The model's own generation config (as a diff from defaults), recorded in the sidecar because
    the decoding parameters the recipe does not set come from it."""
    config = getattr(getattr(engine, "model", None), "generation_config", None)
    try:
        return json.loads(config.to_json_string(use_diff=True)) if config is not None else {}
    except (AttributeError, TypeError, ValueError):
        return {}
