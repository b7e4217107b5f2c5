"""`mftlaunch profiles check NAME`: ask the live cluster whether a profile fits it."""
from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from launcher import slurm
from launcher.profile import Profile
from launcher.render import render_check_script, render_probe_script
from launcher.rundir import RunDir, atomic_write_text


def _sinfo(fmt: str) -> list[str]:
    out = slurm.run(["sinfo", "-h", "-o", fmt], timeout=30)
    return [line.strip() for line in out.splitlines() if line.strip()]


def cluster_config() -> dict[str, str]:
    """`scontrol show config` as a dict (MaxArraySize, MaxJobCount, ...)."""
    out = slurm.run(["scontrol", "show", "config"], timeout=30)
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines()) if v}


def _array_size_line(profile: Profile) -> str:
    """Array indices must stay below MaxArraySize: a profile that says more makes sbatch refuse
    big arrays instead of mftlaunch chunking them."""
    try:
        limit = int(cluster_config().get("MaxArraySize", "0"))
    except (slurm.SlurmError, ValueError) as exc:
        return f"WARN could not read MaxArraySize ({exc})"
    if not limit:
        return "WARN the cluster does not report MaxArraySize"
    if profile.max_array_size > limit:
        return (f"FAIL max_array_size: profile says {profile.max_array_size}, the cluster's MaxArraySize is {limit}: "
                f"set max_array_size: {limit}")
    return f"OK   max_array_size {profile.max_array_size} <= the cluster's MaxArraySize {limit}"


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
    lines.append(_array_size_line(profile))
    partition = profile.partitions.cpu or profile.partitions.gpu
    with tempfile.TemporaryDirectory() as tmp:
        probe = RunDir(Path(tmp))
        script = probe.script(f"mft.probe.{profile.name}")
        atomic_write_text(script, render_probe_script(profile, probe, partition))
        try:
            lines.append(f"OK   sbatch --test-only: {slurm.sbatch(script, test_only=True)}")
        except slurm.SlurmError as exc:
            lines.append(f"FAIL sbatch --test-only: {exc}")
    return lines


def distributed_check(profile: Profile, nodes: int, root: Path, timeout_s: float = 300) -> dict:
    """Submit jobs.dist_check on `nodes` nodes and return its report (raises on failure)."""
    run_dir = RunDir(root / f"check-{profile.name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
    run_dir.logs_dir.mkdir(parents=True, exist_ok=True)
    report = run_dir.check_report_file
    job, text = render_check_script(profile, run_dir, nodes, str(report))
    script = run_dir.script(job.name)
    atomic_write_text(script, text)
    job_id = slurm.sbatch(script)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if report.is_file():
            return {"job_id": job_id, "run_dir": str(run_dir.root), **json.loads(report.read_text())}
        if not slurm.squeue([job_id]):
            break
        time.sleep(1)
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in run_dir.logs_dir.glob("*.out"))
    raise slurm.SlurmError(f"distributed check job {job_id} produced no report; log tail:\n{logs}")
