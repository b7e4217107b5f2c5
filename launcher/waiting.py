"""`submit --wait` / `resume --wait`: poll `status` until nothing of the run can change by itself,
then say how it ended with an exit code that scripts can branch on.

Exit codes (docs/LAUNCHER.md):
  0  every element completed (has its completion sentinel)
  1  the run ended and some element did not complete (FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY,
     NODE_FAIL, ENDED without a sentinel, LOST with its local scheduler, ...)
  3  what is left waits for a person: held (REQUEUE_HOLD, SPECIAL_EXIT, by a user or admin) or
     pending for a reason that does not clear by itself (BadConstraints, InvalidAccount, ...)
  4  the outcome cannot be known: elements with no record anywhere (UNKNOWN), or Slurm did not
     answer for `patience_s`
PREEMPTED and REQUEUED are not an end while squeue lists them (Slurm runs them again); a PREEMPTED
element that only sacct knows (PreemptMode=CANCEL) is shown as ENDED by `status`.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from launcher import slurm
from launcher.rundir import RunDir
from launcher.status import ElementStatus

EXIT_COMPLETED, EXIT_INCOMPLETE, EXIT_HELD, EXIT_UNKNOWABLE = 0, 1, 3, 4

#: States after which an element will not change without someone acting.
ENDED_STATES = slurm.FINAL_STATES | {"ENDED", "LOST", "UNKNOWN", "REVOKED"}
HELD_STATES = {"REQUEUE_HOLD", "SPECIAL_EXIT"}
#: Pending reasons that need someone to act: a release, a fix of the job (`scontrol update`), or
#: an admin. PartitionDown and ReqNodeNotAvail are not here: maintenance ends by itself.
HELD_REASONS = {"JobHeldUser", "JobHeldAdmin", "DependencyNeverSatisfied", "BadConstraints", "InvalidAccount",
                "InvalidQOS", "PartitionNodeLimit", "PartitionTimeLimit"}

Reader = Callable[[RunDir], tuple[list[ElementStatus], list[str]]]


def is_held(row: ElementStatus) -> bool:
    return row.state in HELD_STATES or (row.state == "PENDING" and row.note in HELD_REASONS)


def verdict(rows: list[ElementStatus]) -> Optional[int]:
    """The exit code once nothing can change by itself, else None (keep waiting)."""
    waiting = [r for r in rows if r.state not in ENDED_STATES]
    if any(not is_held(r) for r in waiting):
        return None
    if all(r.done for r in rows):
        return EXIT_COMPLETED
    if waiting:
        return EXIT_HELD
    if any(r.state == "UNKNOWN" for r in rows if not r.done):
        return EXIT_UNKNOWABLE
    return EXIT_INCOMPLETE


def slurm_unreachable(warnings: list[str]) -> bool:
    """squeue failed for a reason other than 'those jobs left the queue'."""
    return any(w.startswith("squeue:") and "Invalid job id" not in w for w in warnings)


class RunWatch:
    """Looks at a run, one `check()` per poll, until nothing of it can change by itself or Slurm
    has not answered for `patience_s`; shared by `--wait` and `logs -f`, so neither can hang."""

    def __init__(self, run_dir: RunDir, read: Reader, patience_s: float = 900.0,
                 select: Callable[[ElementStatus], bool] = lambda row: True):
        self.run_dir, self.read, self.patience_s, self.select = run_dir, read, patience_s, select
        self._unreachable_since: Optional[float] = None

    def check(self) -> Optional[tuple[int, str]]:
        """(exit code, one line that says why the watch ended), or None to look again later."""
        rows, warnings = self.read(self.run_dir)
        rows = [r for r in rows if self.select(r)]
        code = verdict(rows)
        if code is not None:
            return code, _message(code, rows)
        if not slurm_unreachable(warnings):
            self._unreachable_since = None
            return None
        self._unreachable_since = self._unreachable_since or time.monotonic()
        if time.monotonic() - self._unreachable_since >= self.patience_s:
            return EXIT_UNKNOWABLE, f"Slurm did not answer for {self.patience_s:.0f}s: {warnings[0]}"
        return None


def wait_for_run(run_dir: RunDir, read: Reader, poll_s: float = 5.0, patience_s: float = 900.0) -> tuple[int, str]:
    """Poll until the run ends (see RunWatch); (exit code, one line that says why)."""
    watch = RunWatch(run_dir, read, patience_s)
    while (outcome := watch.check()) is None:
        time.sleep(poll_s)
    return outcome


def _names(rows: list[ElementStatus]) -> str:
    shown = ", ".join(f"{r.stage}[{r.index}] {r.state}" for r in rows[:8])
    return shown + (f" and {len(rows) - 8} more" if len(rows) > 8 else "")


def _message(code: int, rows: list[ElementStatus]) -> str:
    if code == EXIT_COMPLETED:
        return "run completed"
    if code == EXIT_HELD:
        return ("stopped waiting: these wait for someone to act (scontrol release, scontrol update, "
                f"or cancel and resume): {_names([r for r in rows if is_held(r)])}")
    if code == EXIT_UNKNOWABLE:
        return f"run ended; no record says what happened to: {_names([r for r in rows if r.state == 'UNKNOWN'])}"
    return f"run did not complete: {_names([r for r in rows if not r.done])}"
