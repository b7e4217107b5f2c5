"""Generations files (docs/CONTRACTS.md): a JSON list, per problem, of lists of programs.
Loaded, checked and merged across shards before anything runs, so a wrong or partial file
fails with a message that names it instead of scoring the wrong problems.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.code_benchmarks.data import shard_range
from launcher.contract import shard_key


class GenerationsError(Exception):
    """The generations file(s) are missing or do not match the benchmark's problems."""


def load_generations(path: Path) -> list[list[str]]:
    """A generations file: JSON list (per problem) of lists of programs."""
    if not Path(path).is_file():
        raise GenerationsError(f"generations file not found: {path}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GenerationsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or not all(
        isinstance(samples, list) and all(isinstance(s, str) for s in samples) for samples in data
    ):
        raise GenerationsError(f"{path}: expected a JSON list of lists of strings (one list per problem)")
    return data


def merge_shards(run_dir: Any, benchmark: str, model_name: str, num_shards: int, num_problems: int) -> tuple[list[list[str]], list[str]]:
    """Concatenate the generations of every shard of `benchmark` in shard order (each shard holds
    `shard_range` of the problems). Returns the merged list and the files read."""
    merged: list[list[str]] = []
    files: list[str] = []
    for shard in range(num_shards):
        path = run_dir.generations_file(shard_key(benchmark, shard, num_shards), benchmark, model_name)
        part = load_generations(path)
        want = len(shard_range(num_problems, shard, num_shards))
        if len(part) != want:
            raise GenerationsError(
                f"{path}: holds {len(part)} problems, shard {shard} of {num_shards} of {benchmark} "
                f"should hold {want}; re-run that generate element"
            )
        merged.extend(part)
        files.append(str(path))
    return merged, files


def fit_generations(generations: list[list[str]], num_problems: int, source: str, limited: bool) -> list[list[str]]:
    """Match generations to the problems: a limited run may score the first N of a longer file
    (the reference cuts to n_tasks too); anything else must match exactly."""
    if len(generations) == num_problems:
        return generations
    if len(generations) > num_problems and limited:
        return generations[:num_problems]
    hint = " (was it generated with a limit? pass the same --limit)" if len(generations) < num_problems else ""
    raise GenerationsError(f"{source}: holds {len(generations)} problems, the benchmark has {num_problems}{hint}")


def generating_models(run_dir: Any, benchmark: str, model_name: str, num_shards: int) -> list[str]:
    """The model each shard's generations came from, as its sidecar (`.raw.json`) records it: the
    merged model when the run trained one, not the recipe's base model. Unknown shards are left out."""
    models: list[str] = []
    for shard in range(num_shards):
        sidecar = run_dir.generations_sidecar(shard_key(benchmark, shard, num_shards), benchmark, model_name)
        try:
            model = json.loads(sidecar.read_text(encoding="utf-8")).get("model")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if model and model not in models:
            models.append(str(model))
    return models
