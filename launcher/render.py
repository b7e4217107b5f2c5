"""Plan → batch scripts. submitit's sbatch renderer (through launcher/submitit_adapter.py) writes the directives (one sorted
`#SBATCH --key=value` per line, quoted); this module decides their values and the body.

Body of every script (same for every stage; see docs/LAUNCHER.md):
- the profile's modules, setup lines and environment, then the run's own variables;
- `srun --kill-on-bad-exit=1` runs one task per GPU (or one per node on CPU), each task running
  `python -m jobs.run STAGE RUN_DIR INDEX` — so every rank gets Slurm's signals itself;
- the batch shell traps USR2 (Slurm's `--signal=B:USR2@grace`, or `scancel --signal=USR2 --batch`)
  and TERM, and passes them to the ranks as USR2 (a preemption's SIGTERM reaches the ranks directly); a job that saved and exited 75 is requeued with `scontrol requeue`
  until the restart cap, and `--open-mode=append` keeps every attempt's output.

Scripts carry no dependency and no job ids: those go on the sbatch command line, so the same
script serves `submit`, `resume` and golden-file tests.
"""
from __future__ import annotations

import math
import shlex
import sys
from typing import Any, Optional

from launcher.contract import ENV_MASTER_ADDR_MODE, ENV_NET_IFNAME, ENV_RUN_DIR, REQUEUE_EXIT_CODE
from launcher.plan import PlannedJob, ResolvedResources
from launcher.profile import Profile
from launcher.recipe import Recipe
from launcher.rundir import RunDir
from launcher.submitit_adapter import sbatch_text


def log_pattern(run_dir: RunDir, job: PlannedJob) -> str:
    """%x = job name; arrays add the array id and index, single jobs the job id."""
    tail = "%x_%A_%a.out" if job.is_array else "%x_%j.out"
    return str(run_dir.logs_dir / tail)


def _gpu_parameters(job: PlannedJob, profile: Profile) -> dict[str, Any]:
    gpus = job.resources.gpus_per_node
    if not gpus:
        return {}
    if profile.gpu_request == "gres":
        return {"gres": f"{profile.gres_type}:{gpus}"}
    if profile.gpu_request == "gpus-per-task":
        return {"gpus_per_task": max(1, gpus // job.resources.tasks_per_node)}
    return {"gpus_per_node": gpus}


def sbatch_parameters(job: PlannedJob, profile: Profile, run_dir: RunDir, count: int) -> dict[str, Any]:
    """Keyword arguments of submitit's renderer for one sbatch of `job` with `count` elements."""
    res = job.resources
    params: dict[str, Any] = {
        "job_name": job.name,
        "time": res.time_minutes,
        "nodes": res.nodes,
        "ntasks_per_node": res.tasks_per_node,
        "partition": res.partition,
        "cpus_per_task": res.cpus_per_task,
        "mem": f"{math.ceil(res.mem_gb)}GB" if res.mem_gb else None,  # sbatch takes whole units
        "account": profile.account,
        "qos": profile.qos,
        "constraint": res.constraint or profile.constraint,
        "exclusive": True if profile.exclusive else None,
        "wckey": profile.wckey,  # None: no --wckey line (submitit's default would add one)
        "stderr_to_stdout": True,
        "use_srun": False,
        **_gpu_parameters(job, profile),
    }
    if job.is_array:
        params["map_count"] = count
        params["array_parallelism"] = profile.array_throttle or count
    extra: dict[str, Any] = {
        "output": log_pattern(run_dir, job),
        "signal": f"B:USR2@{profile.signal_grace_s}",
        ("requeue" if profile.requeue else "no_requeue"): True,
    }
    if profile.reservation:
        extra["reservation"] = profile.reservation
    extra.update(profile.sbatch_extra)
    params["additional_parameters"] = extra
    # keep wckey even when None: submitit's renderer drops None values, but its *default* is "submitit"
    return {k: v for k, v in params.items() if v is not None or k == "wckey"}


def _exports(recipe_env: dict[str, str], profile: Profile, run_dir: RunDir) -> list[str]:
    lines = [f"module load {shlex.quote(m)}" for m in profile.modules]
    lines += list(profile.setup)
    env = {**profile.env, **recipe_env}
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in sorted(env.items())]
    lines += [
        f"export {ENV_RUN_DIR}={shlex.quote(str(run_dir.root))}",
        "export PYTHONUNBUFFERED=1",
    ]
    if profile.net_ifname:
        lines.append(f"export {ENV_NET_IFNAME}={shlex.quote(profile.net_ifname)}")
    if profile.master_addr == "ip":
        lines.append(f"export {ENV_MASTER_ADDR_MODE}=ip")
    return lines


def stage_entry(job: PlannedJob, profile: Profile, run_dir: RunDir) -> list[str]:
    """The module every task of a stage job runs; the array index is appended by the script."""
    return [profile.python or sys.executable, "-u", "-m", "jobs.run", job.stage, str(run_dir.root)]


def container_wrap(profile: Profile, entry: list[str]) -> tuple[list[str], list[str]]:
    """(srun options, command) that run `entry` inside the profile's container, exactly as every
    stage job does; `profiles check` starts the image the same way."""
    container = profile.container
    if container.type == "pyxis":
        mounts = [f"--container-mounts={','.join(container.mounts)}"] if container.mounts else []
        return [f"--container-image={container.image}", *mounts, *container.extra_args], entry
    if container.type == "apptainer":
        binds = [a for m in container.mounts for a in ("--bind", m)]
        return [], ["apptainer", "exec", "--nv", *binds, *container.extra_args, str(container.image), *entry]
    return [], entry


def _task_command(job: PlannedJob, profile: Profile, entry: list[str]) -> str:
    srun = ["srun", "--kill-on-bad-exit=1", "--unbuffered"]
    if job.resources.cpus_per_task:
        srun.append(f"--cpus-per-task={job.resources.cpus_per_task}")
    container_options, entry = container_wrap(profile, entry)
    srun += container_options + profile.srun_extra
    return " ".join(shlex.quote(a) for a in srun + entry)


def _requeue_lines(cap: int, requeue: bool) -> list[str]:
    """What the script does when the ranks saved and exited 75: requeue itself up to the cap, or,
    with the profile's `requeue: false` (where Slurm refuses `scontrol requeue`), end as saved."""
    if not requeue:
        return [
            f"if [ \"$rc\" -eq {REQUEUE_EXIT_CODE} ]; then",
            "  echo \"mftlaunch: state saved; the profile says requeue: false, so 'mftlaunch resume' continues it\" >&2",
            "fi",
        ]
    return [
        f"if [ \"$rc\" -eq {REQUEUE_EXIT_CODE} ]; then",
        f"  if [ \"${{SLURM_RESTART_COUNT:-0}}\" -lt {cap} ]; then",
        "    echo \"mftlaunch: state saved, requeueing job $SLURM_JOB_ID (restart $(( ${SLURM_RESTART_COUNT:-0} + 1 ))"
        f" of {cap})\"",
        "    scontrol requeue \"$SLURM_JOB_ID\" && exit 0",
        "    echo \"mftlaunch: scontrol requeue refused; Slurm is ending or requeueing this job itself\" >&2",
        f"    exit {REQUEUE_EXIT_CODE}",
        "  fi",
        f"  echo \"mftlaunch: restart cap ({cap}) reached; not requeueing\" >&2",
        "  exit 1",
        "fi",
    ]


def _body(job: PlannedJob, task_command: str, offset: int, requeue: bool) -> str:
    return "\n".join(
        [
            f"index=$(( ${{SLURM_ARRAY_TASK_ID:-0}} + {offset} ))",
            "# USR2 (--signal=B:USR2) or TERM (scancel --full, scontrol requeue) reaching this shell goes on to",
            f"# the ranks as USR2; they save at the next safe point and exit {REQUEUE_EXIT_CODE}. On preemption Slurm",
            "# sends SIGCONT+SIGTERM to the ranks themselves, which save the same way.",
            "trap 'kill -USR2 \"$step\" 2>/dev/null' USR2 TERM",
            task_command + " &",
            "step=$!",
            "while :; do wait \"$step\"; rc=$?; kill -0 \"$step\" 2>/dev/null || break; done",
            *_requeue_lines(job.resources.max_restarts, requeue),
            "exit \"$rc\"",
        ]
    )


def render_script(job: PlannedJob, recipe: Recipe, profile: Profile, run_dir: RunDir, chunk: int = 0) -> str:
    offset, count = job.chunks[chunk]
    command = _task_command(job, profile, stage_entry(job, profile, run_dir)) + ' "$index"'
    return _render(job, recipe_env=recipe.env, profile=profile, run_dir=run_dir, command=command, offset=offset, count=count)


def _render(job: PlannedJob, *, recipe_env: dict[str, str], profile: Profile, run_dir: RunDir, command: str,
            offset: int, count: int) -> str:
    params = sbatch_parameters(job, profile, run_dir, count)
    return sbatch_text(_body(job, command, offset, profile.requeue), run_dir.logs_dir, _exports(recipe_env, profile, run_dir), **params)


def check_job(profile: Profile, *, name: str, partition: Optional[str], nodes: int, gpus_per_node: int,
              time_minutes: int) -> PlannedJob:
    """A one-off job of `profile` (not part of any plan): one task per GPU, or one per node."""
    return PlannedJob(
        stage="check",
        name=name,
        items=[{"key": "check"}],
        resources=ResolvedResources(
            partition=partition, nodes=nodes, tasks_per_node=max(1, gpus_per_node), gpus_per_node=gpus_per_node,
            cpus_per_task=None, mem_gb=None, time_minutes=time_minutes, max_restarts=0,
        ),
        chunks=[(0, 1)],
    )


def render_probe_script(profile: Profile, run_dir: RunDir, job: PlannedJob, body: list[str]) -> str:
    """`job`'s #SBATCH lines exactly as a stage job of `profile` gets them (account, qos,
    reservation, constraint, GPU request style), then `body` as is (no srun, no requeue loop):
    what `profiles check` hands to `sbatch --test-only` and runs as its module/container probe."""
    return sbatch_text("\n".join(body), run_dir.logs_dir, [], **sbatch_parameters(job, profile, run_dir, 1))


def render_check_script(profile: Profile, run_dir: RunDir, nodes: int, report: str) -> tuple[PlannedJob, str]:
    """A job of `nodes` nodes (one task per GPU, or per node) running jobs.dist_check."""
    job = check_job(profile, name=f"mft.check.{profile.name}",
                    partition=profile.partitions.gpu if profile.gpus_per_node else profile.partitions.cpu,
                    nodes=nodes, gpus_per_node=profile.gpus_per_node, time_minutes=10)
    entry = [profile.python or sys.executable, "-u", "-m", "jobs.dist_check", report, *profile.secret_env]
    text = _render(job, recipe_env={}, profile=profile, run_dir=run_dir, command=_task_command(job, profile, entry),
                   offset=0, count=1)
    return job, text
