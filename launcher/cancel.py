"""`mftlaunch cancel`: stop every job of a run (Slurm) or its local scheduler."""
from __future__ import annotations

import os
import signal

from launcher import slurm
from launcher.rundir import RunDir, atomic_write_json, read_json
from launcher.status import element_job_ids
from launcher.submit import is_running, load_manifest


def cancel(run_dir: RunDir) -> list[str]:
    manifest = load_manifest(run_dir)
    if manifest.get("scheduler") == "local":
        pid = manifest.get("local_pid")
        if pid and is_running(pid):
            os.killpg(pid, signal.SIGTERM)
            return [f"local scheduler {pid}"]
        return []
    ids = sorted({i.split("_")[0] for i in element_job_ids(manifest, read_json(run_dir.plan_file)).values()})
    slurm.scancel(ids)
    manifest["status"] = "cancelled"
    atomic_write_json(run_dir.manifest_file, manifest)
    return ids
