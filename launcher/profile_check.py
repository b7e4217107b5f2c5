"""`mftlaunch profiles check NAME`: ask the live cluster whether everything a profile claims is
true, for the admin who just wrote it. Every line starts with OK, WARN or FAIL; a FAIL says what
to change. The probe jobs get their #SBATCH lines from launcher/render.py, like every stage job."""
from __future__ import annotations

import json
import shlex
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Optional

from launcher import slurm
from launcher.cluster_facts import PartitionFacts, read_config, read_partitions
from launcher.probe_job import ProbeTimeout, wait_or_cancel
from launcher.profile import Profile
from launcher.render import check_job, container_wrap, render_check_script, render_probe_script
from launcher.rundir import RunDir, atomic_write_text

PROBE_MARK = "mftlaunch-probe"
_GIB_MB = 1024  # Slurm counts memory in MiB: --mem=480GB is 480 x 1024 MB


def _roles(profile: Profile) -> list[tuple[str, Optional[str]]]:
    """(role, partition) for the roles the profile's jobs use: gpu only when it claims GPUs."""
    roles = [("cpu", profile.partitions.cpu)]
    if profile.gpus_per_node or profile.partitions.gpu:
        roles.insert(0, ("gpu", profile.partitions.gpu))
    return roles


def partition_lines(profile: Profile, partitions: dict[str, PartitionFacts]) -> list[str]:
    lines = []
    for role, name in _roles(profile):
        if name is None:
            lines.append(f"WARN partitions.{role} is not set: jobs go to the cluster's default partition")
        elif name not in partitions:
            lines.append(f"FAIL partitions.{role}: '{name}' not found; the cluster has: "
                         f"{', '.join(sorted(partitions))}: set partitions.{role} to one of them")
        elif partitions[name].state in ("DRAIN", "INACTIVE"):
            lines.append(f"FAIL partitions.{role}: '{name}' is {partitions[name].state} and takes no new jobs: "
                         "ask the admins to set it UP, or pick another partition")
        elif not partitions[name].nodes:
            lines.append(f"FAIL partitions.{role}: '{name}' has no nodes: pick another partition")
        else:
            lines.append(f"OK   partitions.{role}: '{name}' exists ({partitions[name].state}, "
                         f"{len(partitions[name].nodes)} nodes)")
    return lines


def _gres_key(profile: Profile) -> str:
    """The GRES the jobs ask for: `gres_type` with gpu_request gres, plain `gpu` otherwise."""
    return profile.gres_type if profile.gpu_request == "gres" else "gpu"


def gres_lines(profile: Profile, partitions: dict[str, PartitionFacts]) -> list[str]:
    if not profile.gpus_per_node:
        return []
    name = profile.partitions.gpu
    if name not in partitions:
        return []  # already a FAIL (or a WARN when unset) from partition_lines
    key, want = _gres_key(profile), profile.gpus_per_node
    nodes = partitions[name].nodes
    short = [n for n in nodes if n.gres.get(key, 0) < want]
    have = ", ".join(sorted({f"{n.name} {_gres_text(n.gres)}" for n in short})[:4])
    if len(short) == len(nodes):
        best = max((n.gres.get(key, 0) for n in nodes), default=0)
        fix = (f"set gpus_per_node: {best}" if best else
               f"set gres_type to a GRES the nodes have, or partitions.gpu to a partition with GPUs")
        return [f"FAIL gres: profile asks {key}:{want} per node, no node of partition '{name}' has it "
                f"({have}): {fix}"]
    if short:
        return [f"WARN gres: {len(short)} of {len(nodes)} nodes of partition '{name}' have fewer than "
                f"{key}:{want} ({have}): jobs only land on the others; set constraint to select them"]
    return [f"OK   gres: every node of partition '{name}' ({len(nodes)}) has {key}:{want} or more "
            f"({_gres_text(nodes[0].gres)})"]


def _gres_text(gres: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(gres.items())) or "no gres"


def _smallest(per_node: list[int], cap: Optional[int]) -> int:
    """The least any node offers a job, after the partition's per-node cap."""
    return min(min(per_node), cap) if cap else min(per_node)


def node_size_lines(profile: Profile, partitions: dict[str, PartitionFacts]) -> list[str]:
    """CPUs, memory and max time per partition: what the planner checks recipes against must not
    promise more than the smallest node (after the partition's per-node caps) or time limit."""
    lines = []
    seen = set()
    for role, name in _roles(profile):
        if name not in partitions or name in seen:
            continue
        seen.add(name)
        part = partitions[name]
        cpus = _smallest([n.cpus for n in part.nodes], part.max_cpus_per_node)
        mem_mb = _smallest([n.memory_mb for n in part.nodes], part.max_mem_per_node_mb)
        mem_gb = mem_mb / _GIB_MB
        if profile.cpus_per_node is None:
            lines.append(f"WARN cpus_per_node is not set: nodes of '{name}' offer {cpus}; "
                         f"set cpus_per_node: {cpus} so the planner refuses recipes that ask for more")
        elif profile.cpus_per_node > cpus:
            lines.append(f"FAIL cpus_per_node: profile says {profile.cpus_per_node}, nodes of '{name}' offer {cpus}: "
                         f"set cpus_per_node: {cpus}")
        else:
            lines.append(f"OK   cpus_per_node {profile.cpus_per_node} <= {cpus} on every node of '{name}'")
        if profile.mem_gb_per_node is None:
            lines.append(f"WARN mem_gb_per_node is not set: nodes of '{name}' offer {mem_gb:g} GB; "
                         f"set mem_gb_per_node: {mem_gb:g}")
        elif profile.mem_gb_per_node * _GIB_MB > mem_mb:
            lines.append(f"FAIL mem_gb_per_node: profile says {profile.mem_gb_per_node:g} GB, nodes of '{name}' "
                         f"offer {mem_gb:g} GB ({mem_mb} MB): set mem_gb_per_node: {int(mem_gb)}")
        else:
            lines.append(f"OK   mem_gb_per_node {profile.mem_gb_per_node:g} <= {mem_gb:g} GB on every node of '{name}'")
        limit = part.max_time_minutes
        if limit is not None and (profile.max_time_minutes is None or profile.max_time_minutes > limit):
            said = f"says {profile.max_time}" if profile.max_time is not None else "sets no max_time"
            lines.append(f"FAIL max_time: profile {said}, partition '{name}' allows {_hms(limit)}: "
                         f"set max_time: \"{_hms(limit)}\"")
        else:
            lines.append(f"OK   max_time {profile.max_time or 'unset'} within the limit of '{name}' "
                         f"({_hms(limit) if limit is not None else 'unlimited'})")
        if role == "gpu" and profile.max_nodes:
            nodes = min(len(part.nodes), part.max_nodes or len(part.nodes))
            if profile.max_nodes > nodes:
                lines.append(f"FAIL max_nodes: profile says {profile.max_nodes}, partition '{name}' gives a job at most "
                             f"{nodes}: set max_nodes: {nodes}")
            else:
                lines.append(f"OK   max_nodes {profile.max_nodes} <= {nodes} in '{name}'")
    return lines


def _hms(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text


def array_size_line(profile: Profile, config: dict[str, str]) -> str:
    """Array indices must stay below MaxArraySize: a profile that says more makes sbatch refuse
    big arrays instead of mftlaunch chunking them."""
    try:
        limit = int(config.get("MaxArraySize", "0"))
    except ValueError:
        limit = 0
    if not limit:
        return "WARN the cluster does not report MaxArraySize"
    if profile.max_array_size > limit:
        return (f"FAIL max_array_size: profile says {profile.max_array_size}, the cluster's MaxArraySize is {limit}: "
                f"set max_array_size: {limit}")
    return f"OK   max_array_size {profile.max_array_size} <= the cluster's MaxArraySize {limit}"


def _asks(profile: Profile, gpus: int) -> str:
    parts = [f"{_gres_key(profile)}:{gpus}"] if gpus else []
    parts += [f"{k} {v}" for k, v in (("account", profile.account), ("qos", profile.qos),
                                      ("reservation", profile.reservation), ("constraint", profile.constraint)) if v]
    return f" with {', '.join(parts)}" if parts else ""


def test_only_lines(profile: Profile) -> list[str]:
    """One `sbatch --test-only` per role: a whole GPU node on the gpu partition, one task on the cpu
    partition, each with the profile's account/qos/reservation/constraint as the renderer writes them."""
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir(Path(tmp))
        for role, name in _roles(profile):
            gpus = profile.gpus_per_node if role == "gpu" else 0
            job = check_job(profile, name=f"mft.check.{role}", partition=name, nodes=1, gpus_per_node=gpus,
                            time_minutes=5)
            script = Path(tmp) / f"{role}.sbatch"
            script.write_text(render_probe_script(profile, run_dir, job, ["true"]))
            where = f"partitions.{role} ('{name}')" if name else f"partitions.{role} (default partition)"
            try:
                lines.append(f"OK   sbatch --test-only {where}{_asks(profile, gpus)}: "
                             f"{slurm.sbatch(script, test_only=True)}")
            except slurm.SlurmError as exc:
                reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
                lines.append(f"FAIL sbatch --test-only {where}{_asks(profile, gpus)}: {reason}: fix the profile's "
                             "partition/account/qos/reservation/constraint (`sacctmgr show assoc user=$USER`, "
                             "`scontrol show reservation`, `sinfo -o '%N %f'` list what you may use)")
    return lines


def probe_body(profile: Profile) -> list[str]:
    """Shell lines that load every module in order and start the container image with the jobs'
    own command (container_wrap), printing one `mftlaunch-probe` line per result."""
    body = [
        f"echo \"{PROBE_MARK} host ${{SLURMD_NODENAME:-$(hostname)}}\"",
        "probe_module() {",
        "  local err; err=$(mktemp)",
        "  if module load \"$1\" 2>\"$err\" && ! grep -qiE '(^|[^a-z])error' \"$err\"; then",
        f"    echo \"{PROBE_MARK} module-ok $1\"",
        "  else",
        f"    echo \"{PROBE_MARK} module-fail $1 $(grep -v '^[[:space:]]*$' \"$err\" | head -n 3 | tr '\\n' ' ')\"",
        "  fi",
        "  rm -f \"$err\"",
        "}",
    ]
    body += [f"probe_module {shlex.quote(m)}" for m in profile.modules]
    container = profile.container
    if container.type != "none":
        options, command = container_wrap(profile, ["true"])
        start = ["srun", "--ntasks=1", *options, *command] if container.type == "pyxis" else command
        present = ("command -v apptainer >/dev/null" if container.type == "apptainer"
                   else "srun --help 2>&1 | grep -q container-image")
        body += [
            f"if ! {present}; then echo \"{PROBE_MARK} container-missing {container.type}\";",
            f"elif out=$({' '.join(map(shlex.quote, start))} 2>&1); then echo \"{PROBE_MARK} container-ok\";",
            f"else echo \"{PROBE_MARK} container-fail $(echo \"$out\" | tail -n 2 | tr '\\n' ' ')\"; fi",
        ]
    return body + [f"echo \"{PROBE_MARK} end\""]


def probe_lines(profile: Profile, root: Path, timeout_s: float) -> list[str]:
    """Run the probe on one compute node and turn its report into OK/FAIL lines."""
    if not profile.modules and profile.container.type == "none":
        return []
    name = profile.partitions.cpu or profile.partitions.gpu
    run_dir = _check_dir(profile, root, "probe")
    job = check_job(profile, name=f"mft.probe.{profile.name}", partition=name, nodes=1, gpus_per_node=0,
                    time_minutes=5)
    script = run_dir.script(job.name)
    atomic_write_text(script, render_probe_script(profile, run_dir, job, probe_body(profile)))
    job_id = slurm.sbatch(script)
    log = run_dir.logs_dir / f"{job.name}_{job_id}.out"

    def report() -> list[str]:
        text = log.read_text(errors="replace") if log.is_file() else ""
        return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(PROBE_MARK + " ")]

    try:
        wait_or_cancel(job_id, lambda: "end" in report(), timeout_s)
    except ProbeTimeout as exc:
        return [f"FAIL probe job on partition '{name}': {exc}: rerun with a longer --timeout when the "
                "partition is busy"]
    return interpret_probe(profile, report(), job_id, log)


def interpret_probe(profile: Profile, report: list[str], job_id: str, log: Path) -> list[str]:
    """The probe's `mftlaunch-probe` lines → one OK/FAIL line per module and for the container."""
    host = next((r.split(" ", 1)[1] for r in report if r.startswith("host ")), "?")
    results = {}
    for record in report:
        kind, _, rest = record.partition(" ")
        if kind in ("module-ok", "module-fail"):
            module, _, message = rest.partition(" ")
            results[module] = (kind == "module-ok", message.strip())
    lines = []
    for module in profile.modules:
        if module not in results:
            lines.append(f"FAIL module load {module}: the probe job {job_id} never reached it (see {log})")
        elif results[module][0]:
            lines.append(f"OK   module load {module} on {host}")
        else:
            lines.append(f"FAIL module load {module} on {host}: {results[module][1] or 'failed'}: fix the name in "
                         f"`modules` (`module avail` on a compute node lists them)")
    container = profile.container
    if container.type != "none":
        records = [r for r in report if r.startswith("container-")]
        if not records:
            lines.append(f"FAIL container: the probe job {job_id} never reached it (see {log})")
        elif records[0].startswith("container-ok"):
            lines.append(f"OK   container {container.type} image {container.image} starts on {host}")
        elif records[0].startswith("container-missing"):
            lines.append(f"FAIL container: {container.type} is not available on {host}, so no job can start: "
                         "install it on the compute nodes, or set container.type: none")
        else:
            lines.append(f"FAIL container {container.type} image {container.image} does not start on {host}: "
                         f"{records[0].split(' ', 1)[-1]}: fix container.image / container.extra_args")
    return lines


def check(profile: Profile, root: Path = Path("runs"), timeout_s: float = 300) -> list[str]:
    """Every claim of `profile` against the live cluster, as OK / WARN / FAIL lines."""
    if profile.is_local:
        return ["OK   local profile: nothing to ask a cluster"]
    try:
        partitions = read_partitions()
        config = read_config()
    except slurm.SlurmError as exc:
        return [f"FAIL cannot reach Slurm (scontrol): {exc}: run this on a login node of the cluster"]
    lines = partition_lines(profile, partitions)
    lines += gres_lines(profile, partitions)
    lines += node_size_lines(profile, partitions)
    lines.append(array_size_line(profile, config))
    lines += test_only_lines(profile)
    if not any(line.startswith("FAIL") for line in lines):
        lines += probe_lines(profile, root, timeout_s)
    elif profile.modules or profile.container.type != "none":
        lines.append("WARN modules and container not probed on a compute node while a line above FAILs: "
                     "fix those, then run the check again")
    return lines


def _check_dir(profile: Profile, root: Path, kind: str) -> RunDir:
    run_dir = RunDir(root / f"{kind}-{profile.name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
    run_dir.logs_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def distributed_check(profile: Profile, nodes: int, root: Path, timeout_s: float = 300) -> dict:
    """Submit jobs.dist_check on `nodes` nodes and return its report. Raises SlurmError when the
    job ends without a report, and cancels the job when it does not finish in `timeout_s`."""
    run_dir = _check_dir(profile, root, "check")
    report = run_dir.check_report_file
    job, text = render_check_script(profile, run_dir, nodes, str(report))
    script = run_dir.script(job.name)
    atomic_write_text(script, text)
    job_id = slurm.sbatch(script)
    if wait_or_cancel(job_id, report.is_file, timeout_s):
        return {"job_id": job_id, "run_dir": str(run_dir.root), **json.loads(report.read_text())}
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in run_dir.logs_dir.glob("*.out"))
    raise slurm.SlurmError(f"distributed check job {job_id} produced no report; log tail:\n{logs}")
