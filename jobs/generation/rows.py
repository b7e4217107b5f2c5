"""Rows, the unit of work of every engine, and the order they are batched in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

#: Whether a row's decoded new text is complete (`jobs.code_benchmarks.postprocess.is_finished`).
FinishedFn = Callable[[str], bool]


@dataclass
class Row:
    """One completion to produce: problem `problem` (index in the benchmark), sample `sample`."""

    problem: int
    sample: int
    prompt_ids: list[int]
    budget: int

    @property
    def key(self) -> str:
        """The row's key in the partial-progress file."""
        return f"{self.problem}:{self.sample}"


@dataclass
class RowResult:
    completion: str  # decoded new text, special tokens kept, eos token dropped
    new_tokens: int
    finish: str  # "stop" | "eos" | "length" | "prompt_too_long"


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    """Longest prompt first, so an out-of-memory shows in the first batch, and rows of a batch have
    similar lengths (little padding); ties in problem/sample order."""
    return sorted(rows, key=lambda r: (-len(r.prompt_ids), r.problem, r.sample))


def batches(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive slices of `size` rows (the last may be shorter)."""
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])
