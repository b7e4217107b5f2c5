"""Pieces of a benchmark across array elements: joining generated pieces for an evaluation piece,
and joining scored pieces into the benchmark's metrics once the last one is there.

The plan cuts the generate and evaluate arrays independently (their costs differ), so an
evaluation piece reads whichever generated pieces overlap it. Every element that scores a piece
tries to finish the benchmark afterwards; the one that finds every piece scored writes the
metrics file, the joined per-sample results and the joined generations file (all atomic; two
elements finishing together write the same content). The collector finishes any benchmark whose
pieces are all scored but whose metrics file is missing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from jobs.results.generations import GenerationsError, load_generations
from jobs.results.scoring import summarize
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text, read_json


def _job_items(plan: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    for job in plan["jobs"]:
        if job["stage"] == stage:
            return job["items"]
    return []


def stage_pieces(plan: dict[str, Any], stage: str, model: str, benchmark: str) -> list[dict[str, Any]]:
    """The pieces of (model, benchmark) in `stage`'s array, in problem order."""
    found = [p for item in _job_items(plan, stage) for p in item.get("pieces", [])
             if p["model"] == model and p["benchmark"] == benchmark]
    return sorted(found, key=lambda p: p["start"])


def read_generated_range(run: RunDir, plan: dict[str, Any], model: str, benchmark: str, start: int, stop: int
                         ) -> tuple[list[list[str]], list[str]]:
    """Generations of problems [start, stop) from the generated pieces that overlap it, and the
    files read. A missing or short piece raises GenerationsError naming the file."""
    out: list[list[str]] = []
    files: list[str] = []
    for piece in stage_pieces(plan, "generate", model, benchmark):
        if piece["stop"] <= start or piece["start"] >= stop:
            continue
        path = run.piece_generations_file(model, benchmark, piece["start"], piece["stop"])
        part = load_generations(path)
        if len(part) != piece["stop"] - piece["start"]:
            raise GenerationsError(f"{path}: holds {len(part)} problems, the piece [{piece['start']}, {piece['stop']}) "
                                   f"of {benchmark} needs {piece['stop'] - piece['start']}; re-run that generate element")
        lo, hi = max(start, piece["start"]), min(stop, piece["stop"])
        out.extend(part[lo - piece["start"]: hi - piece["start"]])
        files.append(str(path))
    if len(out) != stop - start:
        raise GenerationsError(f"the generate pieces of {model}/{benchmark} cover {len(out)} of the problems "
                               f"[{start}, {stop}) (plan.json and the files disagree)")
    return out, files


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_piece_results(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records))


def finish_benchmark(run: RunDir, plan: dict[str, Any], model: str, benchmark: str, num_problems: int,
                     config: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Write metrics + joined results + joined generations when every evaluation piece of
    (model, benchmark) is scored; None (nothing written) while some piece is not."""
    pieces = stage_pieces(plan, "evaluate", model, benchmark)
    paths = [run.piece_results_file(model, benchmark, p["start"], p["stop"]) for p in pieces]
    if not pieces or not all(p.is_file() for p in paths):
        return None
    records = [rec for path in paths for rec in read_records(path)]
    metrics, extra = summarize(records, num_problems)
    generations, gen_files = read_generated_range(run, plan, model, benchmark, 0, num_problems)
    atomic_write_json(run.generations_file(benchmark, model), generations)
    atomic_write_text(run.results_file(benchmark, model), "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    payload = {benchmark: metrics, "config": {**config, **extra, "generations": gen_files,
                                              "pieces": [[p["start"], p["stop"]] for p in pieces]}}
    atomic_write_json(run.metrics_file(benchmark, model), payload)
    return payload


def finish_from_files(run: RunDir, plan: dict[str, Any], model: str, benchmark: str, num_problems: int) -> bool:
    """The collector's fallback: finish a benchmark from its scored pieces, reusing the config
    the piece's element left beside them. True when a metrics file was written."""
    pieces = stage_pieces(plan, "evaluate", model, benchmark)
    if not pieces:
        return False
    config_path = run.evaluate_dir(model, benchmark) / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    try:
        return finish_benchmark(run, plan, model, benchmark, num_problems, config) is not None
    except (GenerationsError, OSError, ValueError):
        return False
