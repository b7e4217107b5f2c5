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

import yaml

from jobs.context import REQUEUE_EXIT_CODE
from jobs.distributed import port_for_job
from jobs.run import required_upstream
from launcher.rundir import RunDir, atomic_write_json, read_json

_children: set[subprocess.Popen] = set()


def _forward(signum: int, _frame: Any) -> None:
    """USR2 to the scheduler reaches every running rank, as Slurm's --signal does."""
    for child in list(_children):
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass


def _run_element(run: RunDir, job: dict[str, Any], index: int, job_id: str, max_parallel_cpus: int) -> int:
    tasks = job["resources"]["tasks_per_node"]
    log_path = run.logs_dir / f"{job['name']}_{job_id}_{index}.out"
    restarts = 0
    start = time.time()
    while True:
        element_id = f"{job_id}_{index}"
        env = dict(os.environ)
        env.update({
            "MFTLAUNCH_LOCAL_JOB_ID": element_id,
            "MFTLAUNCH_RESTART_COUNT": str(restarts),
            "MFTLAUNCH_START_TIME": str(start),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port_for_job(element_id + str(restarts))),
            "WORLD_SIZE": str(tasks),
            "LOCAL_WORLD_SIZE": str(tasks),
            "PYTHONUNBUFFERED": "1",
        })
        if job["resources"].get("cpus_per_task"):
            threads = str(min(job["resources"]["cpus_per_task"], max_parallel_cpus))
            env.setdefault("OMP_NUM_THREADS", threads)
        with open(log_path, "ab") as log:
            procs = []
            for rank in range(tasks):
                rank_env = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0"}
                proc = subprocess.Popen(
                    [sys.executable, "-u", "-m", "jobs.run", job["stage"], str(run.root), str(index)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=rank_env,
                )
                procs.append(proc)
                _children.add(proc)
            codes = []
            for proc in procs:
                codes.append(proc.wait())
                _children.discard(proc)
        code = next((c for c in codes if c != 0), 0)
        if code == REQUEUE_EXIT_CODE and restarts < job["resources"]["max_restarts"]:
            restarts += 1
            continue
        if code != 0:
            state = run.read_state(job["stage"], index)
            if state.get("state") != "FAILED":
                run.update_state(job["stage"], index, state="FAILED", exit_code=code, ended=time.time(),
                           error=state.get("error") or f"exit code {code}")
        return code


def _blocked(run: RunDir, plan: dict[str, Any], job: dict[str, Any], index: int) -> bool:
    if job.get("dependency_type") == "afterany":
        return False
    return any(not run.is_done(s, i) for s, i, _ in required_upstream(plan, job["stage"], index))


def run_plan(run: RunDir) -> int:
    plan = read_json(run.plan_file)
    profile = yaml.safe_load(run.profile_file.read_text(encoding="utf-8")) or {}
    only_file = run.root / "local_only.json"
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
            run.update_state(job["stage"], index, state="PENDING", job_id=f"{job_id}_{index}", restarts=0)
    failures = 0
    for job in plan["jobs"]:
        runnable = []
        for index in selected[job["stage"]]:
            if _blocked(run, plan, job, index):
                run.update_state(job["stage"], index, state="CANCELLED", reason="DependencyNeverSatisfied")
                failures += 1
            else:
                runnable.append(index)
        workers = 1 if not job["is_array"] else parallel
        with ThreadPoolExecutor(max_workers=workers) as pool:
            codes = list(pool.map(lambda i: _run_element(run, job, i, job_id, cpus), runnable))
        failures += sum(1 for c in codes if c != 0)
    only_file.unlink(missing_ok=True)
    return 1 if failures else 0


def main() -> int:
    run = RunDir(sys.argv[1])
    code = run_plan(run)
    manifest = read_json(run.manifest_file)
    manifest["local_exit_code"] = code
    atomic_write_json(run.manifest_file, manifest)
    return code


if __name__ == "__main__":
    sys.exit(main())
