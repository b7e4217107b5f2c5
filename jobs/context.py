"""What a stage entry point receives: the run, the recipe, its plan item and the distributed env.

Every stage module of `jobs/` exposes `run(ctx: StageContext) -> dict`. The returned dict (counts:
problems generated, steps trained, ...) goes into the element's completion sentinel, which the
collector and `mftlaunch status` trust instead of Slurm's COMPLETED.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from jobs.distributed import DistEnv
from launcher.recipe import Recipe
from launcher.rundir import RunDir

class RequeueRequested(Exception):
    """Raised by a stage after it saved its state in answer to USR2 / an ending time budget."""


@dataclass
class StopSignal:
    """Set by SIGUSR2 (Slurm's `--signal`, or the batch script forwarding it). Stages poll it at
    safe points (between steps / batches), save, then raise RequeueRequested."""

    requested: bool = False
    reason: str = ""

    def install(self) -> None:
        signal.signal(signal.SIGUSR2, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = True
        self.reason = signal.Signals(signum).name


@dataclass
class StageContext:
    run_dir: RunDir
    recipe: Recipe
    plan: dict[str, Any]
    stage: str
    index: int
    item: dict[str, Any]
    dist: DistEnv
    restart_count: int = 0
    deadline: float | None = None  # epoch seconds by which the stage must have saved and stopped
    stop: StopSignal = field(default_factory=StopSignal)
    profile: dict[str, Any] = field(default_factory=dict)

    def should_stop(self) -> bool:
        """True when the stage should save and hand back: USR2 arrived or the time budget ran out."""
        if self.stop.requested:
            return True
        return self.deadline is not None and time.time() >= self.deadline

    @property
    def data_dir(self) -> str | None:
        """Benchmark data directory chosen at submit time (recorded in the plan)."""
        return self.plan.get("data_dir")
