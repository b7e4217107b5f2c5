"""`submit --wait` / `resume --wait`: poll `status` until nothing of the run can change by itself,
then say how it ended with an exit code that scripts can branch on.

Exit codes (docs/LAUNCHER.md):
  0  every element completed (has its completion sentinel)
  1  the run ended and some element did not complete (FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY,
     NODE_FAIL, ENDED without a sentinel, LOST with its local scheduler, ...)
  3  what is left is held (REQUEUE_HOLD, SPECIAL_EXIT, held by a user or admin): it waits for you
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
HELD_REASONS = {"JobHeldUser", "JobHeldAdmin", "DependencyNeverSatisfied"}

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


def wait_for_run(run_dir: RunDir, read: Reader, poll_s: float = 5.0, patience_s: float = 900.0) -> tuple[int, str]:
    """Poll until verdict() decides; (exit code, one line that says why the wait ended)."""
    unreachable_since: Optional[float] = None
    while True:
        rows, warnings = read(run_dir)
        code = verdict(rows)
        if code is not None:
            return code, _message(code, rows)
        if slurm_unreachable(warnings):
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since >= patience_s:
                return EXIT_UNKNOWABLE, f"Slurm did not answer for {patience_s:.0f}s: {warnings[0]}"
        else:
            unreachable_since = None
        time.sleep(poll_s)


def _names(rows: list[ElementStatus]) -> str:
    shown = ", ".join(f"{r.stage}[{r.index}] {r.state}" for r in rows[:8])
    return shown + (f" and {len(rows) - 8} more" if len(rows) > 8 else "")


def _message(code: int, rows: list[ElementStatus]) -> str:
    if code == EXIT_COMPLETED:
        return "run completed"
    if code == EXIT_HELD:
        return f"stopped waiting: held elements need you (scontrol release / resume): {_names([r for r in rows if is_held(r)])}"
    if code == EXIT_UNKNOWABLE:
        return f"run ended; no record says what happened to: {_names([r for r in rows if r.state == 'UNKNOWN'])}"
    return f"run did not complete: {_names([r for r in rows if not r.done])}"
