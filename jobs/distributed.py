"""The distributed environment of a job: the ONE place that turns Slurm's variables into
RANK / LOCAL_RANK / WORLD_SIZE / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT.

One Slurm task per GPU (or one per node on CPU): every rank is its own process started by srun,
so every rank receives Slurm's signals directly (torchrun would not forward USR2).
No torch import here: the local ranks' parent process (below) and the tests use it too.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from launcher.contract import (ENV_LOCAL_JOB_ID, ENV_MASTER_ADDR_MODE, ENV_NET_IFNAME, ENV_RESTART_COUNT,
                               REQUEUE_EXIT_CODE)

PORT_RANGE = (20000, 60000)


def _split_outside_brackets(text: str) -> list[str]:
    """Split a host list on the commas that are not inside a bracket group."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"nested '[' in host list {text!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unmatched ']' in host list {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValueError(f"unclosed '[' in host list {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _expand_bracket(group: str, text: str) -> list[str]:
    """'01-03,7' → 01 02 03 7: the width of a range is the width of its lower bound."""
    values: list[str] = []
    for item in group.split(","):
        item = item.strip()
        lo, sep, hi = item.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad range {item!r} in host list {text!r}")
        if not sep:
            values.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"descending range {item!r} in host list {text!r}")
        values.extend(f"{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
    return values


def _expand_host_pattern(pattern: str, text: str) -> list[str]:
    """One comma-free pattern with any number of bracket groups: 'r[1-2]-n[01-02]' → 4 hosts,
    the leftmost group varying slowest (Slurm's order)."""
    hosts = [""]
    for literal, group in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", pattern):
        choices = _expand_bracket(group, text) if group else [""]
        hosts = [h + literal + c for h in hosts for c in choices]
    return hosts


def parse_hostlist(nodelist: str) -> list[str]:
    """Slurm's compressed host list grammar without Slurm: comma lists of patterns, each with any
    number of bracket groups of numbers and zero-padded ranges ('gpu[01-03,7],r[1-2]-n[01-02]').
    Raises ValueError on a malformed list."""
    hosts: list[str] = []
    for pattern in _split_outside_brackets(nodelist):
        hosts.extend(_expand_host_pattern(pattern, nodelist))
    return hosts


def _scontrol_hostnames(nodelist: str) -> list[str] | None:
    """`scontrol show hostnames`, the reference expansion, or None where it cannot answer."""
    if shutil.which("scontrol") is None:
        return None
    try:
        proc = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    hosts = proc.stdout.split()
    if proc.returncode != 0 or proc.stderr.strip() or not hosts:
        return None
    return hosts


def expand_nodelist(nodelist: str) -> list[str]:
    """Every host of a Slurm host list, in Slurm's order: `scontrol show hostnames` where it
    answers (a compute node always has it), else parse_hostlist."""
    if not nodelist.strip():
        return []
    return _scontrol_hostnames(nodelist) or parse_hostlist(nodelist)


def port_for_job(job_id: str) -> int:
    """A port derived from SLURM_JOB_ID (unique per array element), stable across ranks."""
    digits = int(re.sub(r"\D", "", job_id) or "0")
    lo, hi = PORT_RANGE
    return lo + (digits * 7919) % (hi - lo)


def interface_for(addr: str) -> str | None:
    """The network interface that owns `addr`, or routes to it (for GLOO/NCCL_SOCKET_IFNAME)."""
    try:
        owned = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=5).stdout
        for line in owned.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[3].split("/")[0] == addr:
                return fields[1]
        route = subprocess.run(["ip", "route", "get", addr], capture_output=True, text=True, timeout=5).stdout
        match = re.search(r"\bdev (\S+)", route)
        return match.group(1) if match else None
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    node_rank: int
    master_addr: str
    master_port: int
    job_id: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_env(self) -> dict[str, str]:
        return {
            "RANK": str(self.rank),
            "LOCAL_RANK": str(self.local_rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "NODE_RANK": str(self.node_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def from_environ(environ: dict[str, str] | None = None) -> DistEnv:
    """Read the distributed environment. Inside a Slurm step the SLURM_* variables decide;
    outside Slurm (local profile) the process is rank 0 of 1 unless RANK/WORLD_SIZE are set.
    A user-set MASTER_PORT / MASTER_ADDR always wins."""
    env = os.environ if environ is None else environ
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        world = int(env["SLURM_NTASKS"])
        nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
        job_id = env.get("SLURM_JOB_ID", "0")
        hosts = expand_nodelist(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", ""))) or ["127.0.0.1"]
        master = env.get("MASTER_ADDR") or hosts[0]
        if env.get(ENV_MASTER_ADDR_MODE) == "ip" and "MASTER_ADDR" not in env:
            master = socket.gethostbyname(master)
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            world_size=world,
            local_world_size=max(1, world // max(1, nodes)),
            node_rank=int(env.get("SLURM_NODEID", "0")),
            master_addr=master,
            master_port=int(env.get("MASTER_PORT") or port_for_job(job_id)),
            job_id=job_id,
        )
    job_id = env.get(ENV_LOCAL_JOB_ID, str(os.getpid()))
    return DistEnv(
        rank=int(env.get("RANK", "0")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1"))),
        node_rank=int(env.get("NODE_RANK", "0")),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=int(env.get("MASTER_PORT") or port_for_job(job_id)),
        job_id=job_id,
    )


def export(dist: DistEnv, ifname_mode: str | None = None) -> None:
    """Set the torch.distributed variables in this process; pick the socket interface when asked.

    `ifname_mode` is the profile's `net_ifname`: an interface name, `auto` (the one that owns or
    routes to MASTER_ADDR: needed where the hostname maps to loopback or a management network),
    or None (leave NCCL/gloo to choose)."""
    os.environ.update(dist.as_env())
    mode = ifname_mode or os.environ.get(ENV_NET_IFNAME)
    if not mode:
        return
    ifname = interface_for(socket.gethostbyname(dist.master_addr)) if mode == "auto" else mode
    if ifname:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ifname)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", ifname)


# --- local ranks: what srun does on a cluster, for the `local` profile and the tests ----------


def combined_exit_code(codes: list[int]) -> int:
    """One exit code for a set of ranks, given in the order they ended: the first crash (the
    cause; the ranks stopped after it only follow) wins over a requeue request, which wins over 0."""
    failures = [c for c in codes if c not in (0, REQUEUE_EXIT_CODE)]
    if failures:
        return failures[0]
    return REQUEUE_EXIT_CODE if REQUEUE_EXIT_CODE in codes else 0


class LocalRanks:
    """`world_size` copies of one command on this machine, each told its rank the way srun's tasks
    are (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT from the job id).

    Fail fast: when one rank ends with an error, the others are stuck in a collective that will
    never complete, so they are stopped (SIGTERM, then SIGKILL) within `crash_grace_s` instead of
    waiting out torch.distributed's timeout. A rank that asks for a requeue (exit 75) gives the
    others `requeue_grace_s` to finish their part of the collective save.
    """

    def __init__(self, argv: list[str], world_size: int, *, job_id: str, restart: int = 0,
                 env: dict[str, str] | None = None, log_dir: Path | None = None, log_name: str = "rank",
                 stdout: IO[bytes] | None = None, crash_grace_s: float = 5.0, requeue_grace_s: float = 120.0) -> None:
        self.argv = argv
        self.world_size = world_size
        self.crash_grace_s = crash_grace_s
        self.requeue_grace_s = requeue_grace_s
        base = {k: v for k, v in (os.environ if env is None else env).items() if not k.startswith("SLURM_")}
        port = int(base.get("MASTER_PORT") or port_for_job(f"{job_id}{restart}"))
        self.processes: list[subprocess.Popen] = []
        self.ended: list[int] = []  # ranks in the order they exited
        for rank in range(world_size):
            dist = DistEnv(rank=rank, local_rank=rank, world_size=world_size, local_world_size=world_size,
                           node_rank=0, master_addr="127.0.0.1", master_port=port, job_id=job_id)
            rank_env = {**base, **dist.as_env(), ENV_LOCAL_JOB_ID: job_id, ENV_RESTART_COUNT: str(restart),
                        "PYTHONUNBUFFERED": "1"}
            out: IO[bytes] | None = stdout
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                out = open(log_dir / f"{log_name}{rank}-attempt{restart}.log", "ab")
            self.processes.append(subprocess.Popen(argv, env=rank_env, stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL))
            if log_dir is not None and out is not None:
                out.close()

    def send_signal(self, signum: int) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def wait(self, timeout_s: float | None = None) -> list[int]:
        """Every rank's exit code. On `timeout_s` every rank still running is killed and
        TimeoutError raised."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        stop_at: float | None = None
        while None in [p.poll() for p in self.processes]:  # a list: poll every rank, not the first only
            now = time.monotonic()
            if end is not None and now >= end:
                self._kill()
                raise TimeoutError(f"ranks still running after {timeout_s:.0f}s: {self.argv}")
            self._note_ended()
            codes = [self.processes[r].returncode for r in self.ended]
            if stop_at is None and any(c != 0 for c in codes):
                grace = self.requeue_grace_s if set(codes) <= {0, REQUEUE_EXIT_CODE} else self.crash_grace_s
                stop_at = now + grace
            if stop_at is not None and now >= stop_at:
                self.send_signal(signal.SIGTERM)
                try:
                    for proc in self.processes:
                        proc.wait(timeout=max(0.0, stop_at + 5.0 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._kill()
            time.sleep(0.05)
        self._note_ended()
        return [p.returncode for p in self.processes]

    @property
    def exit_code(self) -> int:
        """The element's exit code, from the ranks' codes in the order they ended."""
        return combined_exit_code([self.processes[r].returncode for r in self.ended])

    def _note_ended(self) -> None:
        self.ended += [r for r, p in enumerate(self.processes) if p.returncode is not None and r not in self.ended]

    def _kill(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes:
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.distributed --ranks N -- CMD...`: run CMD as N local ranks, forwarding
    USR2 and TERM to them, and exit with their combined code. The local scheduler starts every
    element through this, as Slurm starts every element through srun."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobs.distributed", description=main.__doc__)
    parser.add_argument("--ranks", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    ranks = LocalRanks(command, args.ranks, job_id=os.environ.get(ENV_LOCAL_JOB_ID, str(os.getpid())),
                       restart=int(os.environ.get(ENV_RESTART_COUNT, "0")))
    for signum in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, lambda s, _f: ranks.send_signal(s))
    ranks.wait()
    return ranks.exit_code


if __name__ == "__main__":
    sys.exit(main())
