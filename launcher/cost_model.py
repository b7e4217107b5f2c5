"""Estimated seconds per problem for the generate and evaluate arrays (what `shards: auto` balances).

Generation: per sample, prefill x prompt tokens + decode x new tokens, where the new tokens are the
budget the engine gives (max_new_tokens, else max_length - prompt tokens) and the per-token times
come from `generate.balance` (defaults: DESIGN.md's measured H100 anchor). Prompt tokens are
counted with the model's tokenizer.json when the `tokenizers` package and the file are there,
else as characters / 4. Prompts are approximated from the data fields the prompt builder uses
(jobs/benchmarks/prompts.py), read here with the standard library: the launcher never imports
the compute side.

Evaluation: per program, the measured cost of one program on an idle core for its language
(docs/EVALUATION.md, "Per-program cost on an idle core", plus the sandbox's start-up), divided
by the element's workers (the evaluate stage's CPUs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

from launcher.balance import Unit

#: seconds per program on one idle core (docs/EVALUATION.md) + ~0.03 s of bwrap/prlimit start-up
EVAL_SECONDS_PER_PROGRAM = {"python": 0.13, "js": 0.08, "java": 0.73, "cpp": 0.73, "go": 0.73, "rust": 0.53}
#: full problem counts (the collector checks the same numbers on the compute side)
FULL_SIZES = {"mbpp": 500}
HUMANEVALPACK_SIZE = 164
MBPP_TEST_IDS = range(11, 511)
#: characters a prompt format adds around the task prompt (chat markers, system line)
FORMAT_OVERHEAD_CHARS = {"instruct": 0, "competition": 40, "chatml": 80, "codefuse": 40, "custom": 0}
#: a problem's prompt when the data cannot be read here (data only on the compute nodes)
FALLBACK_PROMPT_CHARS = {"humanevalsynthesize": 900, "humanevalfixtests": 2400, "mbpp": 350, "humaneval": 500}


def split_benchmark(benchmark: str) -> tuple[str, Optional[str]]:
    family, _, lang = benchmark.partition("-")
    return family, (lang or None)


def language(benchmark: str) -> str:
    return split_benchmark(benchmark)[1] or "python"


def full_size(benchmark: str) -> int:
    return FULL_SIZES.get(benchmark, HUMANEVALPACK_SIZE)


def problem_count(benchmark: str, limit: Optional[int]) -> int:
    return full_size(benchmark) if limit is None else min(limit, full_size(benchmark))


def _data_file(data_dir: Path, benchmark: str) -> Path:
    family, lang = split_benchmark(benchmark)
    return data_dir / ("mbpp/mbpp.jsonl" if family == "mbpp" else f"humanevalpack/{lang or 'python'}.jsonl")


def _prompt_text(benchmark: str, row: dict[str, Any]) -> str:
    """About the task prompt the prompt builder makes from this row (the same fields)."""
    family, _ = split_benchmark(benchmark)
    if family == "humanevalsynthesize":
        return row.get("instruction", "") + "\n\n" + row.get("prompt", "")
    if family == "humanevalfixtests":
        declaration = row.get("declaration", "")
        return (declaration + row.get("buggy_solution", "") + "\n" + row.get("test", "")
                + "\nFix bugs in " + row.get("entry_point", "") + ".\n\n" + declaration)
    if family == "mbpp":
        tests = row.get("test_list") or [""]
        return '"""\n' + row.get("text", "") + "\n" + tests[0] + '\n"""\n'
    return row.get("prompt", "")


@lru_cache(maxsize=64)
def _read_prompt_rows(path: str, benchmark: str) -> Optional[tuple[dict[str, Any], ...]]:
    file = Path(path)
    if not file.is_file():
        return None
    rows = []
    with open(file, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    return None
    if benchmark == "mbpp":
        rows = [r for r in rows if r.get("task_id") in MBPP_TEST_IDS]
    return tuple(rows) if len(rows) == full_size(benchmark) else None


def prompt_lengths(benchmark: str, data_dir: Optional[str], limit: Optional[int]) -> tuple[list[int], bool]:
    """(prompt characters per problem, whether they came from the data)."""
    n = problem_count(benchmark, limit)
    rows = _read_prompt_rows(str(_data_file(Path(data_dir), benchmark)), benchmark) if data_dir else None
    if rows is None:
        return [FALLBACK_PROMPT_CHARS[split_benchmark(benchmark)[0]]] * n, False
    return [len(_prompt_text(benchmark, row)) for row in rows[:n]], True


def tokens_per_char(tokenizer_dir: Optional[str], benchmark: str, data_dir: Optional[str]) -> Optional[float]:
    """Tokens per character of this model on this benchmark's prompts, from its tokenizer.json;
    None when there is no such file or no `tokenizers` package here (then characters / 4)."""
    if not tokenizer_dir or tokenizer_dir.startswith("builtin:") or not data_dir:
        return None
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        return _ratio(str(path), benchmark, str(data_dir))
    except ImportError:
        return None


@lru_cache(maxsize=64)
def _ratio(tokenizer_file: str, benchmark: str, data_dir: str) -> Optional[float]:
    from tokenizers import Tokenizer

    rows = _read_prompt_rows(str(_data_file(Path(data_dir), benchmark)), benchmark)
    if not rows:
        return None
    tok = Tokenizer.from_file(tokenizer_file)
    texts = [_prompt_text(benchmark, row) for row in rows]
    chars = sum(len(t) for t in texts)
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return tokens / chars if chars else None


@dataclass
class GenerationSettings:
    """What the generation estimate needs from the recipe, per model."""

    prompt_format: str
    max_length: int
    max_new_tokens: Optional[int]
    n_samples: int
    decode_s: float
    prefill_s: float
    tokenizer_dir: Optional[str] = None


def generation_costs(benchmark: str, settings: GenerationSettings, data_dir: Optional[str],
                     limit: Optional[int]) -> tuple[list[float], str]:
    """(seconds per problem, how prompts were counted)."""
    chars, from_data = prompt_lengths(benchmark, data_dir, limit)
    overhead = FORMAT_OVERHEAD_CHARS.get(settings.prompt_format, 0)
    ratio = tokens_per_char(settings.tokenizer_dir, benchmark, data_dir)
    how = ("tokenizer" if ratio else "characters / 4") + ("" if from_data else ", typical lengths (no data here)")
    costs = []
    for c in chars:
        prompt = max(1, round((c + overhead) * ratio)) if ratio else max(1, round((c + overhead) / 4))
        budget = settings.max_new_tokens if settings.max_new_tokens is not None else settings.max_length - prompt
        new = max(0, min(budget, settings.max_length - prompt))
        costs.append(settings.n_samples * (settings.prefill_s * prompt + settings.decode_s * new))
    return costs, how


def evaluation_costs(benchmark: str, n_samples: int, workers: int, limit: Optional[int]) -> list[float]:
    per_program = EVAL_SECONDS_PER_PROGRAM[language(benchmark)]
    return [n_samples * per_program / max(1, workers)] * problem_count(benchmark, limit)


def generation_units(models: Sequence[tuple[str, GenerationSettings]], benchmarks: Sequence[str],
                     data_dir: Optional[str], limit: Optional[int]) -> tuple[list[Unit], set[str]]:
    """Model-major units of the generate array, and how their prompts were counted."""
    units, how = [], set()
    for name, settings in models:
        for bench in benchmarks:
            costs, counted = generation_costs(bench, settings, data_dir, limit)
            units.append(Unit(name, bench, costs))
            how.add(counted)
    return units, how


def evaluation_units(models: Sequence[str], benchmarks: Sequence[str], n_samples: int, workers: int,
                     limit: Optional[int]) -> list[Unit]:
    return [Unit(name, bench, evaluation_costs(bench, n_samples, workers, limit))
            for name in models for bench in benchmarks]
