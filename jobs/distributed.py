"""The distributed environment of a job: the ONE place that turns Slurm's variables into
RANK / LOCAL_RANK / WORLD_SIZE / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT.

One Slurm task per GPU (or one per node on CPU): every rank is its own process started by srun,
so every rank receives Slurm's signals directly (torchrun would not forward USR2).
No torch import here: the local runner and the launcher's tests use it too.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
from dataclasses import dataclass

PORT_RANGE = (20000, 60000)


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand Slurm's compressed host list: 'gpu[01-03,7],cpu1' → gpu01 gpu02 gpu03 gpu7 cpu1."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        match = re.match(r"^(.*?)\[([^\]]*)\](.*)$", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for rng in ranges.split(","):
            if "-" in rng:
                lo, hi = rng.split("-", 1)
                width = len(lo)
                hosts.extend(f"{prefix}{i:0{width}d}{suffix}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(f"{prefix}{rng}{suffix}")
    return hosts


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
        if env.get("MFTLAUNCH_MASTER_ADDR_MODE") == "ip" and "MASTER_ADDR" not in env:
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
    job_id = env.get("MFTLAUNCH_LOCAL_JOB_ID", str(os.getpid()))
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
    mode = ifname_mode or os.environ.get("MFTLAUNCH_NET_IFNAME")
    if not mode:
        return
    ifname = interface_for(socket.gethostbyname(dist.master_addr)) if mode == "auto" else mode
    if ifname:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ifname)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", ifname)
