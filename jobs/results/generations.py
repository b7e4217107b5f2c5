"""Generations files (docs/CONTRACTS.md): a JSON list, per problem, of lists of programs.
Loaded and checked before anything runs, so a wrong or partial file fails with a message that
names it instead of scoring the wrong problems. Pieces of a run are joined by `jobs.results.pieces`.
"""
from __future__ import annotations

import json
from pathlib import Path


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


def fit_generations(generations: list[list[str]], num_problems: int, source: str, limited: bool) -> list[list[str]]:
    """Match generations to the problems: a limited run may score the first N of a longer file
    (the reference cuts to n_tasks too); anything else must match exactly."""
    if len(generations) == num_problems:
        return generations
    if len(generations) > num_problems and limited:
        return generations[:num_problems]
    hint = " (was it generated with a limit? pass the same --limit)" if len(generations) < num_problems else ""
    raise GenerationsError(f"{source}: holds {len(generations)} problems, the benchmark has {num_problems}{hint}")
