"""`mftlaunch profiles check NAME`: ask the live cluster whether a profile fits it."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from launcher import slurm
from launcher.profile import Profile


def _sinfo(fmt: str) -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-o", fmt], capture_output=True, text=True, env=slurm.clean_env(), timeout=30)
    if out.returncode != 0:
        raise slurm.SlurmError(out.stderr.strip())
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def check(profile: Profile) -> list[str]:
    """Lines starting with OK / WARN / FAIL."""
    if profile.is_local:
        return ["OK   local profile: nothing to ask a cluster"]
    lines = []
    try:
        partitions = {p.rstrip("*") for p in _sinfo("%P")}
    except (slurm.SlurmError, FileNotFoundError) as exc:
        return [f"FAIL cannot reach Slurm (sinfo): {exc}"]
    for role, name in (("gpu", profile.partitions.gpu), ("cpu", profile.partitions.cpu)):
        if name is None:
            lines.append(f"WARN partitions.{role} is not set: jobs go to the cluster's default partition")
        elif name in partitions:
            lines.append(f"OK   partitions.{role}: '{name}' exists")
        else:
            lines.append(f"FAIL partitions.{role}: '{name}' not found; the cluster has: {', '.join(sorted(partitions))}")
    if profile.gpus_per_node:
        gres = " ".join(_sinfo("%G"))
        if "gpu" in gres:
            lines.append(f"OK   nodes advertise GRES: {gres}")
        else:
            lines.append(f"FAIL profile says {profile.gpus_per_node} GPUs per node but no node advertises gpu GRES ({gres})")
    partition = profile.partitions.cpu or profile.partitions.gpu
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "check.sbatch"
        directives = ["#!/bin/bash", "#SBATCH --nodes=1", "#SBATCH --time=1"]
        if partition:
            directives.append(f"#SBATCH --partition={partition}")
        for flag, value in (("account", profile.account), ("qos", profile.qos), ("reservation", profile.reservation)):
            if value:
                directives.append(f"#SBATCH --{flag}={value}")
        script.write_text("\n".join(directives + ["true", ""]))
        try:
            lines.append(f"OK   sbatch --test-only: {slurm.sbatch(script, test_only=True)}")
        except slurm.SlurmError as exc:
            lines.append(f"FAIL sbatch --test-only: {exc}")
    return lines
