"""Thin, checked wrappers around Slurm's commands. Every call fails loudly on a non-zero exit."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from launcher.inherited_env import clean_env

#: Slurm states after which a job will not run again by itself. PREEMPTED/REQUEUED are not final.
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


class SlurmError(RuntimeError):
    pass


def call(cmd: list[str], env: Optional[dict[str, str]] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The one way mftlaunch runs a Slurm command: a cleaned environment, a timeout, and a clear
    error when the command is missing or hangs. The exit status is the caller's to judge."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env or clean_env(), timeout=timeout)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} not found on PATH: is this a Slurm login node? (use --profile local otherwise)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(cmd[:2])} did not answer in {timeout:.0f}s") from None


def run(cmd: list[str], env: Optional[dict[str, str]] = None, timeout: float = 60) -> str:
    """`call`, and a non-zero exit is a SlurmError; returns stdout."""
    proc = call(cmd, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def sbatch(script: Path, *, dependency: Optional[str] = None, array: Optional[str] = None,
           env: Optional[dict[str, str]] = None, test_only: bool = False, comment: Optional[str] = None) -> str:
    """Submit `script`; return the job id. Command-line options override the script's directives."""
    cmd = ["sbatch", "--parsable"]
    if comment:
        cmd.append(f"--comment={comment}")
    if dependency:
        cmd += [f"--dependency={dependency}", "--kill-on-invalid-dep=yes"]
    if array:
        cmd.append(f"--array={array}")
    if test_only:
        cmd.append("--test-only")
        proc = call(cmd + [str(script)], env=env)
        if proc.returncode != 0:
            raise SlurmError(f"sbatch --test-only {script.name}: {proc.stderr.strip()}")
        return (proc.stderr or proc.stdout).strip()
    out = run(cmd + [str(script)], env=env).strip()
    job_id = out.splitlines()[-1].split(";")[0].strip() if out else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch {script.name}: could not read a job id from {out!r}")
    return job_id


@dataclass
class JobRow:
    job_id: str  # "123" or "123_4" for array elements
    state: str
    node: str
    elapsed: str
    reason: str = ""
    exit_code: str = ""  # sacct's `rc:signal`


def squeue(job_ids: Iterable[str]) -> list[JobRow]:
    """One call for every job; arrays are expanded (-r) so each element has its own row."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    out = run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T|%N|%M|%r"])
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 5:
            rows.append(JobRow(parts[0], parts[1], parts[2], parts[3], parts[4]))
    return rows


def sacct(job_ids: Iterable[str], start: str) -> list[JobRow]:
    """Finished jobs. `-S start` keeps a recycled job id from reading an old record.
    Raises SlurmError when accounting is disabled; callers fall back to sentinels."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    out = run(["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-S", start, "-o",
               "JobID,State,NodeList,Elapsed,ExitCode"])
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 4:
            for job_id in expand_array_ids(parts[0]):
                node = "" if parts[2] == "None assigned" else parts[2]  # never started
                rows.append(JobRow(job_id, parts[1].split()[0], node, parts[3],
                                   exit_code=parts[4] if len(parts) > 4 else ""))
    return rows


def expand_array_ids(job_id: str) -> list[str]:
    """sacct keeps array elements that never started in one row, `42_[0-3,5%4]`: one id each."""
    base, sep, spec = job_id.partition("_[")
    if not sep:
        return [job_id]
    ids = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            ids.extend(f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1))
    return ids


def queue_forgot(error: SlurmError) -> bool:
    """squeue's answer when every id asked for has left slurmctld's memory (MinJobAge): the jobs
    are known to be out of the queue, unlike a timeout or an unreachable controller."""
    return "Invalid job id" in str(error)


def scancel(job_ids: Iterable[str]) -> None:
    ids = sorted(set(job_ids))
    if ids:
        run(["scancel", *ids])


def jobs_with_comment(job_name: str, comment: str) -> list[str]:
    """Ids of this user's queued jobs named `job_name` whose comment is `comment` (array jobs once each)."""
    out = run(["squeue", "-h", "-u", str(os.getuid()), "-n", job_name, "-o", "%F|%k"])
    return sorted({line.split("|", 1)[0] for line in out.splitlines()
                   if "|" in line and line.split("|", 1)[1].strip() == comment})
