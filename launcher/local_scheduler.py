"""The `local` profile's scheduler: runs a run directory's plan on this machine, no Slurm.

Same graph, same entry point (`python -m jobs.run`), same run directory, logs, state files and
sentinels as on a cluster, so `status`, `logs`, `resume` and the collector cannot tell the
difference. Stages run in order; array elements run side by side (profile `max_parallel`);
a job with N tasks gets N rank processes; exit 75 requeues the element up to its restart cap.
Dependencies mean what they mean in Slurm: afterok / aftercorr skip (CANCELLED) elements whose
upstream failed, afterany runs anyway.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from launcher.contract import (ENV_LOCAL_JOB_ID, ENV_RESTART_COUNT, ENV_START_TIME, REQUEUE_EXIT_CODE,
                               required_upstream)
from launcher.rundir import RunDir, atomic_write_json, read_json

_children: set[subprocess.Popen] = set()


def _forward(signum: int, _frame: Any) -> None:
    """USR2 to the scheduler reaches every running element (whose rank spawner passes it to
    every rank), as Slurm's --signal does."""
    for child in list(_children):
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass


def _element_command(run_dir: RunDir, job: dict[str, Any], index: int) -> list[str]:
    """What srun would start on a cluster: every rank of the element, through the one rank
    spawner (jobs/distributed.py), each running the one entry point (jobs/run.py)."""
    return [sys.executable, "-u", "-m", "jobs.distributed", "--ranks", str(job["resources"]["tasks_per_node"]), "--",
            sys.executable, "-u", "-m", "jobs.run", job["stage"], str(run_dir.root), str(index)]


def _run_element(run_dir: RunDir, job: dict[str, Any], index: int, job_id: str, max_parallel_cpus: int) -> int:
    log_path = run_dir.element_log(job["name"], job_id, index)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    restarts = 0
    start = time.time()
    while True:
        env = dict(os.environ)
        env.update({
            ENV_LOCAL_JOB_ID: f"{job_id}_{index}",
            ENV_RESTART_COUNT: str(restarts),
            ENV_START_TIME: str(start),
            "PYTHONUNBUFFERED": "1",
        })
        threads = 1
        if job["resources"].get("cpus_per_task"):
            threads = min(job["resources"]["cpus_per_task"], max_parallel_cpus)
            env.setdefault("OMP_NUM_THREADS", str(threads))
        cpus, gpus = job["resources"]["tasks_per_node"] * threads, job["resources"]["gpus_per_node"]
        run_dir.update_state(job["stage"], index, cpus=cpus, gpus=gpus)
        attempt_start = time.time()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(_element_command(run_dir, job, index), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
            _children.add(proc)
            code = proc.wait()
            _children.discard(proc)
        _record_usage(run_dir, job["stage"], index, time.time() - attempt_start, cpus, gpus)
        if code == REQUEUE_EXIT_CODE and restarts < job["resources"]["max_restarts"]:
            restarts += 1
            continue
        if code != 0:
            state = run_dir.read_state(job["stage"], index)
            if state.get("state") != "FAILED":
                run_dir.update_state(job["stage"], index, state="FAILED", exit_code=code, ended=time.time(),
                                     error=state.get("error") or f"exit code {code}")
        return code


def _record_usage(run_dir: RunDir, stage: str, index: int, seconds: float, cpus: int, gpus: int) -> None:
    """Append one attempt's measured wall time and devices: what the run cost (jobs.results.cost)."""
    usage = run_dir.read_state(stage, index).get("usage", [])
    usage.append({"seconds": round(seconds, 3), "cpus": cpus, "gpus": gpus})
    run_dir.update_state(stage, index, usage=usage)


def _blocked(run_dir: RunDir, plan: dict[str, Any], job: dict[str, Any], index: int) -> bool:
    if job.get("dependency_type") == "afterany":
        return False
    return any(not run_dir.is_done(s, i) for s, i, _ in required_upstream(plan, job["stage"], index))


def run_plan(run_dir: RunDir) -> int:
    plan = read_json(run_dir.plan_file)
    profile = run_dir.read_profile()
    only_file = run_dir.local_selection_file
    only = read_json(only_file) if only_file.is_file() else None
    parallel = int(profile.get("max_parallel", 2))
    cpus = max(1, (os.cpu_count() or 1) // parallel)
    job_id = f"local{os.getpid()}"
    signal.signal(signal.SIGUSR2, _forward)
    selected = {
        job["stage"]: (list(range(len(job["items"]))) if only is None else only.get(job["stage"], []))
        for job in plan["jobs"]
    }
    for job in plan["jobs"]:
        for index in selected[job["stage"]]:
            run_dir.update_state(job["stage"], index, state="PENDING", job_id=f"{job_id}_{index}", restarts=0)
    failures = 0
    for job in plan["jobs"]:
        runnable = []
        for index in selected[job["stage"]]:
            if _blocked(run_dir, plan, job, index):
                run_dir.update_state(job["stage"], index, state="CANCELLED", reason="DependencyNeverSatisfied")
                failures += 1
            else:
                runnable.append(index)
        workers = 1 if not job["is_array"] else parallel
        with ThreadPoolExecutor(max_workers=workers) as pool:
            codes = list(pool.map(lambda i: _run_element(run_dir, job, i, job_id, cpus), runnable))
        failures += sum(1 for c in codes if c != 0)
    only_file.unlink(missing_ok=True)
    return 1 if failures else 0


def main() -> int:
    run_dir = RunDir(sys.argv[1])
    code = run_plan(run_dir)
    manifest = read_json(run_dir.manifest_file)
    manifest["local_exit_code"] = code
    atomic_write_json(run_dir.manifest_file, manifest)
    return code


if __name__ == "__main__":
    sys.exit(main())
