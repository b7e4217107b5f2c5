"""A distributed smoke test an admin (or the test suite) runs on a cluster profile:
every rank forms the process group from the launcher's environment alone, all-reduces a tensor,
and rank 0 writes what it saw (world size, each rank's host and address, which secret NAMES
arrived) to a JSON file. `mftlaunch profiles check NAME --nodes N` submits it.

    srun ... python -m jobs.dist_check OUT.json [SECRET_NAME ...]
"""
from __future__ import annotations

import json
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

from launcher.contract import ENV_NET_IFNAME
from jobs import distributed


def _my_address(master_addr: str) -> str:
    """The address this rank uses to reach the master (the source address of the route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((socket.gethostbyname(master_addr), 9))
        return probe.getsockname()[0]


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    out_path, secret_names = Path(argv[0]), argv[1:]
    env = distributed.from_environ()
    distributed.export(env, os.environ.get(ENV_NET_IFNAME))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=120))
    value = torch.tensor([float(env.rank + 1)])
    if backend == "nccl":
        value = value.cuda(env.local_rank)
    dist.all_reduce(value)
    me = {"rank": env.rank, "host": socket.gethostname(), "address": _my_address(env.master_addr),
          "node_rank": env.node_rank, "local_rank": env.local_rank}
    everyone: list = [None] * env.world_size
    dist.all_gather_object(everyone, me)
    if env.is_main:
        report = {
            "world_size": dist.get_world_size(),
            "backend": backend,
            "all_reduce_sum": float(value.item()),
            "expected_sum": env.world_size * (env.world_size + 1) / 2,
            "master_addr": env.master_addr,
            "master_port": env.master_port,
            "ranks": everyone,
            "secrets_present": [n for n in secret_names if os.environ.get(n)],
        }
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, out_path)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
