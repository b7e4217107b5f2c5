"""Steering a run after submission: logs, cancel, resume, and the list of recent runs."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from launcher import slurm
from launcher.plan import Plan
from launcher.profile import Profile
from launcher.rundir import RunDir, atomic_write_json, read_json
from launcher.status import element_job_ids
from launcher.submit import is_running, load_manifest, start_local, submit_slurm


def rerun_selection(run: RunDir, plan: dict[str, Any]) -> dict[str, list[int]]:
    """Elements without a completion sentinel, plus every element that depends on one of them."""
    from jobs.run import required_upstream

    selected: dict[str, list[int]] = {}
    for job in plan["jobs"]:
        stage = job["stage"]
        chosen = []
        for index in range(len(job["items"])):
            upstream_rerun = any(i in selected.get(s, []) for s, i, _ in required_upstream(plan, stage, index))
            if stage == "collect" and selected:
                upstream_rerun = True  # the collector always runs again after anything reran
            if not run.is_done(stage, index) or upstream_rerun:
                chosen.append(index)
        if chosen:
            selected[stage] = chosen
    return selected


def resume(run: RunDir) -> dict[str, list[int]]:
    """Resubmit only what did not complete (and its dependents) into the same run directory."""
    manifest = load_manifest(run)
    plan_data = read_json(run.plan_file)
    selection = rerun_selection(run, plan_data)
    if not selection:
        return {}
    for stage, indices in selection.items():
        for index in indices:
            run.sentinel(stage, index).unlink(missing_ok=True)  # dependents rerun from scratch
    profile = Profile.model_validate(yaml.safe_load(run.profile_file.read_text(encoding="utf-8")))
    if manifest.get("scheduler") == "local":
        if manifest.get("local_pid") and is_running(manifest["local_pid"]):
            raise RuntimeError(f"the local scheduler of this run is still running (pid {manifest['local_pid']})")
        start_local(run, manifest, only=selection)
    else:
        submit_slurm(run, Plan.from_dict(plan_data), profile, manifest, only=selection)
    return selection


def cancel(run: RunDir) -> list[str]:
    manifest = load_manifest(run)
    if manifest.get("scheduler") == "local":
        pid = manifest.get("local_pid")
        if pid and is_running(pid):
            os.killpg(pid, signal.SIGTERM)
            return [f"local scheduler {pid}"]
        return []
    ids = sorted({i.split("_")[0] for i in element_job_ids(manifest, read_json(run.plan_file)).values()})
    slurm.scancel(ids)
    manifest["status"] = "cancelled"
    atomic_write_json(run.manifest_file, manifest)
    return ids


def log_files(run: RunDir, stage: Optional[str] = None, index: Optional[int] = None) -> list[Path]:
    """Log files of a run, oldest first, optionally of one stage / array index."""
    plan = read_json(run.plan_file)
    names = [j["name"] for j in plan["jobs"] if stage is None or j["stage"] == stage]
    found = []
    for path in run.logs_dir.glob("*.out"):
        for name in names:
            if not path.name.startswith(name + "_"):
                continue
            tail = path.stem[len(name) + 1:].split("_")
            if index is not None and (len(tail) < 2 or tail[-1] != str(index)):
                if not (len(tail) == 1 and index == 0):
                    continue
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def follow(paths: list[Path], poll_s: float = 0.5) -> Iterator[str]:
    """Yield new lines of the given files as they grow (like `tail -F`), until interrupted."""
    offsets = {p: 0 for p in paths}
    while True:
        for path in paths:
            if path.is_file():
                with open(path, encoding="utf-8", errors="replace") as handle:
                    handle.seek(offsets[path])
                    chunk = handle.read()
                    offsets[path] = handle.tell()
                if chunk:
                    yield chunk
        time.sleep(poll_s)


def recent_runs(root: Path, limit: int = 20) -> list[dict[str, Any]]:
    runs = []
    if root.is_dir():
        for manifest in root.glob("*/manifest.json"):
            try:
                data = read_json(manifest)
            except (OSError, ValueError):
                continue
            runs.append({"run_dir": str(manifest.parent), "recipe": data.get("recipe"), "profile": data.get("profile"),
                         "submit_time": data.get("submit_time"), "status": data.get("status")})
    runs.sort(key=lambda r: r["submit_time"] or "", reverse=True)
    return runs[:limit]
