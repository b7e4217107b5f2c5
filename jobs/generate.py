"""Generate stage: completions for one benchmark (or one shard of it) with a Hugging Face model.

Entry points: `run(ctx)` for a plan item (docs/CONTRACTS.md) and `generate_standalone(...)` for
`mftlaunch generate` without a run directory. Both load an engine once and hand each benchmark to
`jobs.generation.benchmark.generate_benchmark`, which writes

- `generations_{benchmark}_{model_name}.json`: a list with one entry per problem of the shard, in
  dataset order, each a list of `n_samples` post-processed programs (`jobs.code_benchmarks.postprocess`);
- `generations_{benchmark}_{model_name}.raw.json` (sidecar): prompts, raw completions, token
  counts, finish reasons, settings and timings, so a surprising program can be traced back;

and, while running, `generations_..partial.json` (`jobs.generation.progress`) so a restarted
element skips what is done. The parts (settings, engines, batching, progress) live in
`jobs.generation`; their docstrings give the decisions behind them.

- Pieces: an array element holds pieces (model, benchmark, problems [start, stop)) laid out by the
  planner (launcher/array_layout.py); each piece's files go to `RunDir.piece_generate_dir`, and
  joining a benchmark's pieces in order gives dataset order.
- Several devices: every rank of an element generates (`placement: data_parallel`, a share of
  the rows each, `jobs.generation.ranks`), or one rank per node holds the model across the node's
  GPUs (`placement: split`, `jobs.generation.devices`). More array elements spread the work
  over more GPUs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

from jobs import run_models
from jobs.code_benchmarks import prompts as pr
from jobs.code_benchmarks.data import data_provenance, load_benchmark, shard_range, warn_if_not_pinned
from jobs.generation.benchmark import generate_benchmark
from jobs.generation.devices import device_plan, visible_gpus
from jobs.generation.model_loading import make_engine, pick_model
from jobs.generation.settings import DecodeSettings, settings_from_stage
from jobs.tiny_model import resolve_model_path


def run_stage(ctx: Any) -> dict[str, Any]:
    """Generate every piece of the plan item (model, benchmark, problems [start, stop)) into
    `run.piece_generate_dir(...)`, loading each model of the element once."""
    recipe, item, dist = ctx.recipe, ctx.item, ctx.dist
    data_dir = ctx.data_dir or recipe.data_dir
    pieces_by_model: dict[str, list[dict[str, Any]]] = {}
    for piece in item["pieces"]:
        pieces_by_model.setdefault(piece["model"], []).append(piece)
    done = []
    for name, pieces in pieces_by_model.items():
        entry = run_models.plan_model(ctx.plan, name)
        spec = run_models.model_spec(recipe, entry)
        stage = run_models.generate_settings(recipe, entry)
        fmt = pr.PromptFormat.from_stage(stage)
        model, tokenizer = pick_model(run_models.model_location(ctx.run_dir, recipe, entry), spec)
        devices = device_plan(stage.placement, dist.local_rank, visible_gpus())
        print(f"mftlaunch: generate rank {dist.rank}/{dist.world_size} ({name}): "
              + (f"model split over {devices.split_over} GPUs" if devices.is_split else f"model on {devices.device}"),
              flush=True)
        engine = make_engine(stage.backend, model, tokenizer, spec, fmt, devices=devices)
        for piece in pieces:
            benchmark = piece["benchmark"]
            data = load_benchmark(benchmark, data_dir, recipe.limit)
            warn_if_not_pinned(data)
            check_piece(piece, len(data.problems))
            counts = generate_benchmark(
                engine, benchmark, data.problems, list(range(piece["start"], piece["stop"])), fmt,
                settings_from_stage(stage),
                ctx.run_dir.piece_generate_dir(name, benchmark, piece["start"], piece["stop"]), name,
                model_id=str(model), dtype=engine.dtype_used(spec.dtype), should_stop=ctx.should_stop,
                rank=dist.rank, world_size=dist.world_size,
                # rank 0's line is the element's: other ranks' lines stay in the log
                on_progress=(lambda line: ctx.run_dir.write_progress("generate", ctx.index, line)) if dist.rank == 0 else None,
            )
            done.append({**counts, "model": name, "start": piece["start"], "stop": piece["stop"],
                         **data_provenance(data)})
        del engine
    if not dist.is_main:
        return {"pieces": done}
    return {"pieces": done, "data_parallel_ranks": dist.world_size, "problems": sum(d["problems"] for d in done),
            "generated_tokens": sum(d["generated_tokens"] for d in done),
            "data_sha256": {d["benchmark"]: d["data_sha256"] for d in done}}


def check_piece(piece: dict[str, Any], num_problems: int) -> None:
    """The plan's problem count must be the data's: a changed data directory or limit would
    otherwise leave problems out silently."""
    if piece["num_problems"] != num_problems or not 0 <= piece["start"] < piece["stop"] <= num_problems:
        raise ValueError(f"plan piece {piece} does not fit {piece['benchmark']}'s {num_problems} problems "
                         "(the data or limit changed since submit?); submit the run again")


def generate_standalone(
    model: str,
    benchmarks: Sequence[str] | str,
    out_dir: str | Path,
    *,
    model_name: Optional[str] = None,
    data_dir: Optional[str] = None,
    limit: Optional[int] = None,
    prompt_format: str = "competition",
    prefix: str = "",
    suffix: str = "",
    system: str = "",
    eos: Sequence[str] = (),
    max_length: int = 2048,
    max_new_tokens: Optional[int] = None,
    batch_size: int = 16,
    n_samples: int = 1,
    greedy: bool = True,
    temperature: float = 0.2,
    top_p: float = 0.95,
    seed: int = 0,
    dtype: str = "bf16",
    device: Optional[str] = None,
    tokenizer: Optional[str] = None,
    backend: str = "hf",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    static_cache: bool = False,
    compile: bool = False,
    shard: int = 0,
    num_shards: int = 1,
) -> dict[str, dict[str, Any]]:
    """`mftlaunch generate`: generations for `benchmarks` into `out_dir` (the files are named as
    in a run directory), loading the model once. Returns {benchmark: counts}."""
    from launcher import contract

    names = contract.expand_benchmarks([benchmarks] if isinstance(benchmarks, str) else list(benchmarks))
    model_dir = resolve_model_path(model)
    tok_dir = resolve_model_path(tokenizer) if tokenizer else model_dir
    name = model_name or (model[len("builtin:"):] if model.startswith("builtin:") else model_dir.name)
    fmt = pr.PromptFormat(name=prompt_format, prefix=prefix, suffix=suffix, system=system, eos=tuple(eos))
    settings = DecodeSettings(greedy=greedy, n_samples=n_samples, temperature=temperature, top_p=top_p,
                              max_length=max_length, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              seed=seed, static_cache=static_cache or compile, compile=compile)
    spec = SimpleNamespace(dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code)
    engine = make_engine(backend, model_dir, tok_dir, spec, fmt, device)
    used_dtype = engine.dtype_used(dtype)
    results = {}
    for benchmark in names:
        data = load_benchmark(benchmark, data_dir, limit)
        warn_if_not_pinned(data)
        indices = list(shard_range(len(data.problems), shard, num_shards))
        counts = generate_benchmark(engine, benchmark, data.problems, indices, fmt, settings,
                                    Path(out_dir), name, model_id=str(model_dir), dtype=used_dtype)
        results[benchmark] = {**counts, **data_provenance(data)}
    return results


if __name__ == "__main__":  # pragma: no cover - convenience: python -m jobs.generate MODEL BENCH OUT
    print(json.dumps(generate_standalone(sys.argv[1], sys.argv[2].split(","), sys.argv[3]), indent=2))
