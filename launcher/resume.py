"""`mftlaunch resume`: resubmit what did not complete, and what depends on it, into the same run
directory (the completion sentinels decide, never Slurm's COMPLETED)."""
from __future__ import annotations

from typing import Any

from launcher.contract import required_upstream
from launcher.plan import Plan
from launcher.profile import Profile
from launcher.rundir import RunDir, read_json
from launcher.submit import is_running, load_manifest, start_local, submit_slurm


def rerun_selection(run_dir: RunDir, plan: dict[str, Any]) -> dict[str, list[int]]:
    """Elements without a completion sentinel, plus every element that depends on one of them."""
    selected: dict[str, list[int]] = {}
    for job in plan["jobs"]:
        stage = job["stage"]
        chosen = []
        for index in range(len(job["items"])):
            upstream_rerun = any(i in selected.get(s, []) for s, i, _ in required_upstream(plan, stage, index))
            if stage == "collect" and selected:
                upstream_rerun = True  # the collector always runs again after anything reran
            if not run_dir.is_done(stage, index) or upstream_rerun:
                chosen.append(index)
        if chosen:
            selected[stage] = chosen
    return selected


def resume(run_dir: RunDir) -> dict[str, list[int]]:
    """Resubmit only what did not complete (and its dependents) into the same run directory."""
    manifest = load_manifest(run_dir)
    plan_data = read_json(run_dir.plan_file)
    selection = rerun_selection(run_dir, plan_data)
    if not selection:
        return {}
    for stage, indices in selection.items():
        for index in indices:
            run_dir.sentinel(stage, index).unlink(missing_ok=True)  # dependents rerun from scratch
    profile = Profile.model_validate(run_dir.read_profile())
    if manifest.get("scheduler") == "local":
        if manifest.get("local_pid") and is_running(manifest["local_pid"]):
            raise RuntimeError(f"the local scheduler of this run is still running (pid {manifest['local_pid']})")
        start_local(run_dir, manifest, only=selection)
    else:
        submit_slurm(run_dir, Plan.from_dict(plan_data), profile, manifest, only=selection)
    return selection
