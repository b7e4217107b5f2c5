"""sbatch through a busy or restarting controller: transient errors are retried with bounded
exponential backoff (the profile's `sbatch_retry`), without ever submitting a job twice.

Each sbatch carries a `--comment` unique to its run, submission attempt and script. When an
sbatch fails for a passing reason (or does not answer), the reply may have been lost after the job
was accepted; so before trying again the queue is asked for a job of that name with that comment,
and a job found there is taken as the result instead of submitting another. Any other error is
raised at once: the caller cancels what it already submitted.
"""
from __future__ import annotations

import hashlib
import re
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from launcher import slurm
from launcher.profile import SbatchRetry

#: slurmctld busy, restarting or unreachable (sbatch's and the RPC layer's own wording).
TRANSIENT = re.compile(
    r"Socket timed out|Resource temporarily unavailable|Unable to contact slurm controller|"
    r"Connection refused|Connection timed out|Zero Bytes were transmitted or received|"
    r"Transport endpoint is not connected|temporarily unable to accept job|Slurm backup controller in standby|"
    r"did not answer in",
    re.IGNORECASE,
)


def is_transient(error: slurm.SlurmError) -> bool:
    return bool(TRANSIENT.search(str(error)))


def submission_comment(run_root: Path, attempt: int, script: Path) -> str:
    """The tag that makes one sbatch of one run recognisable in the queue: the run's name plus a
    hash of its absolute path (two run roots may hold runs of the same name)."""
    where = hashlib.sha256(str(run_root.resolve()).encode()).hexdigest()[:8]
    return f"mftlaunch:{run_root.name}-{where}:{attempt}:{script.name}"


def sbatch_once(script: Path, job_name: str, comment: str, policy: SbatchRetry, *,
                dependency: Optional[str] = None, array: Optional[str] = None,
                sleep: Callable[[float], None] = time.sleep) -> str:
    """The job id of `script`, submitted exactly once; SlurmError when it cannot be."""
    delay, tries = policy.backoff_s, 1
    while True:
        try:
            return slurm.sbatch(script, dependency=dependency, array=array, comment=comment)
        except slurm.SlurmError as exc:
            if not is_transient(exc):
                raise
            last = exc
        # before another sbatch, or giving up, make sure the failed one did not get through after all
        while True:
            try:
                found: Optional[list[str]] = slurm.jobs_with_comment(job_name, comment)
            except slurm.SlurmError as exc:  # cannot tell whether it got through: do not submit again yet
                found, last = None, exc
            if found and len(found) > 1:
                raise slurm.SlurmError(f"{len(found)} jobs carry the submission tag {comment}: {', '.join(found)}")
            if found:
                print(f"mftlaunch: sbatch {script.name} had gone through after all: job {found[0]}", file=sys.stderr)
                return found[0]
            if tries >= policy.attempts:
                unsure = "" if found == [] else f"; a job with comment {comment} may still appear in squeue: cancel it"
                raise slurm.SlurmError(f"sbatch {script.name}: gave up after {tries} tries ({last}){unsure}")
            print(f"mftlaunch: sbatch {script.name}: {last}; retrying in {delay:g}s "
                  f"(try {tries + 1} of {policy.attempts})", file=sys.stderr)
            sleep(delay)
            delay, tries = min(delay * 2, policy.max_backoff_s), tries + 1
            if found == []:  # the queue answered: no such job, so another sbatch cannot double it
                break
