"""The one interface every generation backend implements, so the benchmark loop never asks which
backend it holds.

An engine turns rows (`jobs.generation.rows.Row`) into results. It says how many rows it wants per
call (`batch_rows`): transformers' `generate` takes fixed batches that the caller forms (and saves
progress between); vLLM schedules and refills rows itself and wants them all at once. Stopping is
given both ways (`StopRule`): stop strings for engines that match them natively, and a
`finished(new_text)` check for engines that stop rows step by step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

from jobs.generation.rows import FinishedFn, Row, RowResult
from jobs.generation.settings import DecodeSettings


@dataclass(frozen=True)
class StopRule:
    """When a row's generation is over, besides eos ids and its token budget."""

    strings: tuple[str, ...] = ()
    finished: Optional[FinishedFn] = None


class GenerationEngine(Protocol):
    """What `jobs.generation.benchmark` needs from a backend."""

    name: str
    tokenizer: Any
    eos_ids: list[int]
    model_max: Optional[int]

    def encode(self, prompt: str) -> list[int]:
        """Prompt ids as the model sees them (special tokens in the text parsed as such)."""

    def batch_rows(self, settings: DecodeSettings) -> Optional[int]:
        """Rows per `generate` call; None: all pending rows in one call."""

    def generate(self, rows: Sequence[Row], stop: Optional[StopRule], settings: DecodeSettings) -> list[RowResult]:
        """One result per row, in the order of `rows`."""

    def dtype_used(self, requested: str) -> str:
        """The precision the engine really runs in, for the sidecar and the progress fingerprint."""

    def generation_config(self) -> dict[str, Any]:
        """The model's own generation defaults (a diff from transformers' defaults), for the sidecar."""
