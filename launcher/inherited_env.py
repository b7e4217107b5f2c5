"""Which environment variables an sbatch (or the local scheduler) issued from inside a Slurm job
must not inherit, and which a user set on purpose and keeps.

Inside a job Slurm exports the job's own description (SLURM_JOB_ID, SLURM_CPUS_PER_TASK,
SLURM_MEM_PER_NODE, the array and step variables, srun's SRUN_* / PMI*), and sbatch adds
SBATCH_MEM_BIND* when the job asked for --mem-bind. Handed on to a nested sbatch they leak the
enclosing job's shape into the new one (submitit #1782; SLURM_MEM_PER_CPU next to
SLURM_MEM_PER_NODE makes srun refuse to start). Everything else stays: SLURM_CONF (which cluster),
and a user's own defaults such as SBATCH_ACCOUNT / SBATCH_QOS / SBATCH_PARTITION, which sbatch
applies with precedence over the scripts' #SBATCH lines.

The job-shape names (and torch.distributed's MASTER_ADDR, RANK, ...) go even outside a job: there
they are srun's and torch's inputs, and a value left in a login shell would override, in every srun
of every stage, the shape the job's script asked for (jobs/distributed.py sets the rank variables
itself, from the job).
"""
from __future__ import annotations

import os
import re
from typing import Optional

# Output variables of sbatch/salloc/srun (their man pages' OUTPUT ENVIRONMENT VARIABLES).
_JOB_OUTPUT = re.compile(
    r"^SLURM_(JOB_|ARRAY_|STEP_|HET_|PACK_|SRUN_COMM_|TOPOLOGY_ADDR|CPU_BIND|MEM_BIND|DIST_|TRES_|GPU|"
    r"MEM_PER_|NTASKS|CPUS_)"
    r"|^SLURM_(JOBID|STEPID|NPROCS|NNODES|NODELIST|TASKS_PER_NODE|PROCID|LOCALID|NODEID|GTIDS|TASK_PID|"
    r"PRIO_PROCESS|SUBMIT_DIR|SUBMIT_HOST|CLUSTER_NAME|RESTART_COUNT|NODE_ALIASES|WORKING_CLUSTER|"
    r"LAUNCH_NODE_IPADDR|UMASK|DISTRIBUTION|EXPORT_ENV|OVERCOMMIT|THREADS_PER_CORE|SHARDS_ON_NODE|"
    r"LAUNCHER_PORT|PTY_PORT|PTY_WIN_COL|PTY_WIN_ROW|SPANK_JOB_ID|CONTAINER|CONTAINER_ID)$"
    r"|^SLURMD_NODENAME$|^SRUN_|^PMIX?_"
)
# Set by sbatch for the job it started (only meaningful inside one).
_SBATCH_OUTPUT = re.compile(r"^SBATCH_MEM_BIND")
# torch.distributed variables of the enclosing job's ranks.
_RANK_NAMES = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK"}


def inside_job(environ: dict[str, str]) -> bool:
    return "SLURM_JOB_ID" in environ or "SLURM_JOBID" in environ


def is_inherited(name: str, environ: dict[str, str]) -> bool:
    """True for a variable that describes the enclosing job rather than the user's wishes."""
    if name in _RANK_NAMES or _JOB_OUTPUT.match(name):
        return True
    return bool(_SBATCH_OUTPUT.match(name)) and inside_job(environ)


def clean_env(environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """A copy of `environ` (default: this process's) without the enclosing job's variables."""
    env = dict(os.environ if environ is None else environ)
    return {k: v for k, v in env.items() if not is_inherited(k, env)}


def kept_sbatch_defaults(environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The user's SBATCH_* defaults that every sbatch of a submission will apply."""
    env = dict(os.environ if environ is None else environ)
    return {k: v for k, v in sorted(env.items()) if k.startswith("SBATCH_") and not is_inherited(k, env)}
