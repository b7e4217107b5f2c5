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
    """Raised by a stage after it saved its state in answer to USR2 / TERM / an ending time budget."""


#: Signals that mean "save now and stop": USR2 (Slurm's `--signal=B:USR2@grace`, forwarded by the
#: batch script) and TERM (preemption with PreemptMode=REQUEUE sends SIGCONT + SIGTERM to every
#: task, then SIGKILL after GraceTime; `scancel --signal=TERM`). SIGCONT needs no handler.
STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


@dataclass
class StopSignal:
    """Set by any of STOP_SIGNALS. Stages poll it at safe points (between steps / batches), save
    collectively, then raise RequeueRequested: the same path for a time limit and a preemption."""

    requested: bool = False
    reason: str = ""

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

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
        """True when the stage should save and hand back: USR2 or TERM arrived, or the time budget ran out."""
        if self.stop.requested:
            return True
        return self.deadline is not None and time.time() >= self.deadline

    @property
    def data_dir(self) -> str | None:
        """Benchmark data directory chosen at submit time (recorded in the plan)."""
        return self.plan.get("data_dir")
