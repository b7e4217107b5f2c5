"""Helpers for tests that talk to the local test Slurm cluster.

The cluster is started with ``bash tests/cluster/cluster.sh up``; all of its
state and configuration lives in ``tests/.cluster``.  This module has no
third-party dependencies so it can be imported from pytest, from scripts and
from jobs running on the cluster.

    from slurm_env import cluster_env, cluster_is_up, wait_for_job
    env = cluster_env()                      # pass to subprocess.run(..., env=env)
    job = sbatch(["--wrap", "hostname"])     # -> "123"
    assert wait_for_job(job, timeout=60) == "COMPLETED"
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(HERE)
CLUSTER_DIR = os.path.join(TESTS_DIR, ".cluster")
SLURM_CONF = os.path.join(CLUSTER_DIR, "etc", "slurm.conf")
CLUSTER_SCRIPT = os.path.join(HERE, "cluster.sh")

NODES = ("mft-n1", "mft-n2")
#: mft-n2's slurmd (and so everything it starts) lives in this network namespace (cluster.sh).
N2_NETNS = "mft-test-n2"
NODE_ADDRS = {"mft-n1": "10.213.0.1", "mft-n2": "10.213.0.2"}
PARTITIONS = ("main", "cpu")
DEFAULT_PARTITION = "main"

# Job states after which a job never runs again (sacct/squeue spelling).
TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)

# Variables that would make srun/sbatch believe they run inside a job
# (e.g. pytest itself started from an allocation) or override options.
_STRIP_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SACCT_")


def cluster_env(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for running Slurm commands against the test cluster.

    A copy of ``base`` (default ``os.environ``) without inherited Slurm job
    variables, plus ``SLURM_CONF`` and ``MFT_TEST_CLUSTER_DIR``.
    """
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(_STRIP_PREFIXES)
    }
    env["SLURM_CONF"] = SLURM_CONF
    env["MFT_TEST_CLUSTER_DIR"] = CLUSTER_DIR
    return env


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
) -> subprocess.CompletedProcess:
    """Run a command with the cluster environment, capturing text output."""
    proc = subprocess.run(
        list(args),
        env=dict(env) if env is not None else cluster_env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            "command failed (rc=%d): %s\nstdout:\n%s\nstderr:\n%s"
            % (proc.returncode, " ".join(args), proc.stdout, proc.stderr)
        )
    return proc


def cluster_is_up(timeout: float = 10) -> bool:
    """True when the controller answers and both nodes are usable."""
    if not os.path.isfile(SLURM_CONF):
        return False
    try:
        if run(["scontrol", "ping"], check=False, timeout=timeout).returncode != 0:
            return False
        out = run(
            ["sinfo", "-h", "-N", "-o", "%N %t"], check=False, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if out.returncode != 0:
        return False
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    # exact match: a suffix such as "*" (not responding) means unusable
    usable = ("idle", "mix", "alloc", "comp")
    return all(states.get(n, "") in usable for n in NODES)


def sbatch(
    args: Sequence[str],
    *,
    script: Optional[str] = None,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
) -> str:
    """Submit with ``sbatch --parsable``; ``script`` is fed on stdin.

    Returns the job id (for arrays, the array's master id)."""
    proc = subprocess.run(
        ["sbatch", "--parsable", *args],
        input=script,
        env=dict(env) if env is not None else cluster_env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError("sbatch failed: %s" % proc.stderr.strip())
    return proc.stdout.strip().split(";")[0]


def _norm(state: str) -> str:
    # "CANCELLED by 0" -> "CANCELLED"; squeue/sacct may append "+"
    return state.split()[0].rstrip("+") if state.strip() else ""


def _parse_states(text: str) -> Dict[str, str]:
    states: Dict[str, str] = {}
    for line in text.splitlines():
        if "|" in line:
            jid, st = line.split("|", 1)
            states[jid.strip()] = _norm(st)
    return states


def squeue_states(job_id: str) -> Dict[str, str]:
    """``{job_id: state}`` from slurmctld (every element for an array id);
    ``{}`` once the job has aged out (MinJobAge) or before it exists."""
    out = run(
        ["squeue", "-h", "-r", "-t", "all", "-j", str(job_id), "-o", "%i|%T"],
        check=False,
    )
    return _parse_states(out.stdout) if out.returncode == 0 else {}


def sacct_states(job_id: str) -> Dict[str, str]:
    """``{job_id: state}`` from accounting (``sacct -X``)."""
    out = run(
        ["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State"],
        check=False,
    )
    return _parse_states(out.stdout) if out.returncode == 0 else {}


def job_states(job_id: str) -> Dict[str, str]:
    """``{job_id: state}`` for a job (every element for an array id).

    Uses squeue while slurmctld still knows the job (up to MinJobAge after it
    ends), then sacct. Returns ``{}`` when neither knows it (yet)."""
    return squeue_states(job_id) or sacct_states(job_id)


def _summary(states: Mapping[str, str]) -> str:
    values = set(states.values())
    if len(values) == 1:
        return values.pop()
    bad = sorted(v for v in values if v != "COMPLETED")
    return bad[0]


def wait_for_state(
    job_id: str, wanted: Iterable[str], timeout: float = 120, poll: float = 0.5
) -> str:
    """Wait until every element of ``job_id`` is in one of ``wanted``.

    Returns the state; raises TimeoutError with the last seen states."""
    wanted = frozenset(wanted)
    deadline = time.monotonic() + timeout
    states: Dict[str, str] = {}
    while True:
        states = job_states(job_id)
        if states and all(s in wanted for s in states.values()):
            return _summary(states)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                "job %s not in %s after %ss: %s"
                % (job_id, sorted(wanted), timeout, states)
            )
        time.sleep(poll)


def wait_for_job(
    job_id: str, timeout: float = 120, poll: float = 0.5, accounting: bool = True
) -> str:
    """Wait until the job (all elements, for an array) has ended.

    Returns the final state, e.g. ``"COMPLETED"``, ``"FAILED"``,
    ``"CANCELLED"``, ``"TIMEOUT"``; for an array with mixed outcomes the
    first non-COMPLETED state in alphabetical order. A requeued job is not
    final: it waits (see ``release_requeued``).

    With ``accounting`` (default) it also waits until sacct reports the same
    elements in the same states, so callers can query sacct right after:
    slurmctld sends records to slurmdbd asynchronously and for a moment sacct
    can show e.g. an array as its master id only. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    state = wait_for_state(job_id, TERMINAL_STATES, timeout=timeout, poll=poll)
    if not accounting:
        return state
    want = squeue_states(job_id)
    while True:
        got = sacct_states(job_id)
        if want:
            ok = got == want
        else:  # already aged out of slurmctld: sacct was the source
            ok = bool(got) and all(s in TERMINAL_STATES for s in got.values())
        if ok:
            return state
        if time.monotonic() >= deadline:
            raise TimeoutError(
                "job %s ended (%s) but sacct shows %s" % (job_id, want or state, got)
            )
        time.sleep(poll)


def sacct_fields(job_id: str, fields: Sequence[str]) -> List[Dict[str, str]]:
    """Allocation records (``sacct -X``) for ``job_id`` as dicts."""
    out = run(
        ["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", ",".join(fields)]
    )
    rows = []
    for line in out.stdout.splitlines():
        values = line.split("|")
        if len(values) == len(fields):
            rows.append(dict(zip(fields, values)))
    return rows


def release_requeued(job_id: str, timeout: float = 120) -> None:
    """Start a requeued job soon instead of after Slurm's ~2 minute BeginTime hold.

    Waits until the old attempt is gone (the job PENDING with no steps left),
    then sets the start a few seconds ahead rather than to ``now``: slurmd
    refuses a batch launch whose credential is from the same second in which
    the previous attempt's credential was revoked ("Job credential revoked",
    the job then ends FAILED), which an immediate restart on the same node hits
    under load."""
    deadline = time.monotonic() + timeout
    while True:
        states = squeue_states(job_id)
        pending = bool(states) and set(states.values()) == {"PENDING"}
        steps = run(["squeue", "-h", "-s", "-j", str(job_id)], check=False).stdout.strip()
        if pending and not steps:
            break
        if time.monotonic() >= deadline:
            raise TimeoutError("job %s not pending without steps after %ss: %s"
                               % (job_id, timeout, states))
        time.sleep(0.5)
    run(["scontrol", "update", "JobId=%s" % job_id, "StartTime=now+3"])


def lose_node_n2(reason: str = "lost in a test") -> List[str]:
    """Lose mft-n2 as a node crash does: kill -9 its slurmd, its slurmstepds and every job process
    on it at once (all of them live in its network namespace), then mark it DOWN, which is what
    slurmctld does by itself after SlurmdTimeout (120 s on the test cluster). Returns the ids of
    the jobs that were running on it. ``restore_nodes`` brings it back."""
    lost = run(["squeue", "-h", "-w", "mft-n2", "-t", "RUNNING,COMPLETING", "-o", "%i"]).stdout.split()
    pids = run(["ip", "netns", "pids", N2_NETNS]).stdout.split()
    if pids:
        run(["kill", "-9", *pids], check=False)
    run(["scontrol", "update", "NodeName=mft-n2", "State=DOWN", "Reason=%s" % reason])
    return lost


def restore_nodes(timeout: float = 300) -> None:
    """Start what is missing (e.g. a lost node's slurmd) and wait until both nodes are idle again;
    ReturnToService=2 returns a DOWN node as soon as its slurmd registers."""
    run(["bash", CLUSTER_SCRIPT, "up"], timeout=timeout)


__all__ = [
    "CLUSTER_DIR",
    "CLUSTER_SCRIPT",
    "DEFAULT_PARTITION",
    "N2_NETNS",
    "NODES",
    "NODE_ADDRS",
    "PARTITIONS",
    "SLURM_CONF",
    "TERMINAL_STATES",
    "cluster_env",
    "cluster_is_up",
    "job_states",
    "lose_node_n2",
    "restore_nodes",
    "sacct_states",
    "squeue_states",
    "release_requeued",
    "run",
    "sacct_fields",
    "sbatch",
    "wait_for_job",
    "wait_for_state",
]
