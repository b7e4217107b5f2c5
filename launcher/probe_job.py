"""Wait for one short job (a `profiles check` probe) and never leave it behind: on timeout or
Ctrl-C, or when squeue fails while waiting, the job is cancelled before the error reaches the user."""
from __future__ import annotations

import contextlib
import time
from typing import Callable

from launcher import slurm


class ProbeTimeout(slurm.SlurmError):
    """The probe job did not finish in time; it has been cancelled."""


def wait_or_cancel(job_id: str, done: Callable[[], bool], timeout_s: float, poll_s: float = 1.0) -> bool:
    """True as soon as `done()`; `done()`'s last answer once the job has left the queue. Past
    `timeout_s` the job is cancelled and ProbeTimeout says where it was (e.g. PENDING (Resources))."""
    deadline = time.monotonic() + timeout_s
    seen = "not yet queued"
    try:
        while time.monotonic() < deadline:
            if done():
                return True
            rows = slurm.squeue([job_id])
            if not rows:
                return done()
            seen = f"{rows[0].state} ({rows[0].reason})" if rows[0].reason else rows[0].state
            time.sleep(poll_s)
    except BaseException:  # Ctrl-C, or squeue failing: the job must not stay behind either way
        with contextlib.suppress(slurm.SlurmError):
            slurm.scancel([job_id])
        raise
    slurm.scancel([job_id])
    raise ProbeTimeout(f"job {job_id} did not finish in {timeout_s:.0f}s (last seen {seen}); cancelled it")
