"""Submit a plan: create the run directory, render, and send the whole graph with dependencies.

Everything is validated before the first sbatch; if an sbatch fails half-way, the jobs already
submitted are cancelled and the manifest says so, so nothing is left half-submitted.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from launcher.contract import ENV_PROFILE
from launcher import slurm
from launcher.fingerprint import submission_record
from launcher.plan import Plan, PlannedJob, build_plan
from launcher.profile import Profile, load_profile, profile_to_yaml
from launcher.recipe import Recipe, recipe_from_source, recipe_to_yaml
from launcher.render import render_script
from launcher.rundir import RunDir, atomic_write_json, atomic_write_text, read_json
from launcher.sbatch_retry import sbatch_once, submission_comment
from launcher.yamlsource import ConfigError, YamlSource, load_yaml

PACKAGES = ("mftlaunch", "submitit", "pydantic", "pyyaml", "torch", "transformers", "peft", "deepspeed")


@dataclass
class Loaded:
    recipe: Recipe
    profile: Profile
    plan: Plan
    source: YamlSource
    overrides: list[str] = field(default_factory=list)
    profile_ref: str = ""  # the profile name, or the absolute path of a profile file


def choose_profile(cli: Optional[str], recipe: Recipe, *, submitting: bool = True) -> str:
    """--profile, else $MFTLAUNCH_PROFILE, else the recipe's, else `local`. `submit` with no sbatch
    here refuses a named Slurm profile rather than running something other than asked; `validate`
    and `plan` submit nothing, so they honour a Slurm profile even on a laptop without Slurm."""
    for named, where in ((cli, "--profile"), (os.environ.get(ENV_PROFILE), f"${ENV_PROFILE}"),
                         (recipe.profile, "the recipe's `profile` field")):
        if named:
            break
    else:
        return "local"
    if submitting and shutil.which("sbatch") is None and not load_profile(named).is_local:
        raise ConfigError([
            f"{where} names the Slurm profile '{named}', but there is no sbatch on PATH here: submit from a "
            "login node of that cluster, or run the recipe on this machine with --profile local"])
    return named


def load(recipe_path: str, profile_name: Optional[str] = None, overrides: list[str] = (), *, check_paths: bool,
         submitting: bool = False) -> Loaded:
    """Recipe + profile + plan, or ConfigError with every problem found."""
    source = load_yaml(Path(recipe_path))
    recipe = recipe_from_source(source, overrides)
    profile_ref = choose_profile(profile_name, recipe, submitting=submitting)
    profile = load_profile(profile_ref)
    plan = build_plan(recipe, profile, paths=check_paths, source=source)
    if Path(profile_ref).is_file():
        profile_ref = str(Path(profile_ref).resolve())
    return Loaded(recipe, profile, plan, source, list(overrides), profile_ref)


def _versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def create_run_dir(recipe: Recipe) -> RunDir:
    """runs/<recipe>-<timestamp>[-N]: mkdir without exist_ok makes two submissions at once safe."""
    root = Path(recipe.output_root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = root / (f"{recipe.name}-{stamp}" + (f"-{n + 1}" if n else ""))
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return RunDir(candidate)
    raise RuntimeError(f"could not create a run directory under {root}")


def write_run_files(run_dir: RunDir, loaded: Loaded) -> None:
    atomic_write_text(run_dir.recipe_file, recipe_to_yaml(loaded.recipe))
    atomic_write_text(run_dir.profile_file, profile_to_yaml(loaded.profile))
    atomic_write_json(run_dir.plan_file, loaded.plan.to_dict())
    run_dir.logs_dir.mkdir(parents=True, exist_ok=True)
    for job in loaded.plan.jobs:
        for chunk in range(len(job.chunks)):
            atomic_write_text(run_dir.script(job.name, chunk), render_script(job, loaded.recipe, loaded.profile, run_dir, chunk))


def new_manifest(run_dir: RunDir, loaded: Loaded) -> dict[str, Any]:
    return {
        "run_dir": str(run_dir.root),
        "recipe": loaded.recipe.name,
        "recipe_source": str(loaded.source.path.resolve()),
        "profile": loaded.profile.name,
        "scheduler": loaded.profile.scheduler,
        "submit_time": datetime.now().isoformat(timespec="seconds"),
        "fingerprint": submission_record(loaded.recipe, loaded.profile, loaded.overrides, loaded.profile_ref),
        "versions": _versions(),  # of the submitting side; each job records its own in its state file
        # names only: the values never touch the run directory
        "secret_env_passed": [n for n in loaded.profile.secret_env if n in os.environ],
        "jobs": {},
        "status": "submitting",
    }


def dependency_spec(kind: str, upstream_ids: list[str]) -> str:
    return f"{kind}:" + ":".join(upstream_ids)


def submit_slurm(run_dir: RunDir, plan: Plan, profile: Profile, manifest: dict[str, Any],
                 only: Optional[dict[str, list[int]]] = None) -> None:
    """sbatch every job in stage order, each depending on the previous stage's ids.

    `only` (for resume) maps stage → indices to run; stages absent from it are skipped.
    On any failure the ids submitted by this call are cancelled and the error re-raised."""
    submitted: list[str] = []
    previous: dict[int, str] = {}  # chunk offset → job id of the stage before
    attempt = {"time": datetime.now().isoformat(timespec="seconds"), "jobs": {}}
    manifest.setdefault("attempts", []).append(attempt)
    try:
        for job in plan.jobs:
            indices = None if only is None else only.get(job.stage)
            if only is not None and not indices:
                continue
            current: dict[int, str] = {}
            for chunk, (offset, count) in enumerate(job.chunks):
                wanted, array = _array_override(job, offset, count, indices, profile.array_throttle)
                if not wanted:
                    continue
                # aftercorr pairs element i with element i of the *same chunk* upstream
                if job.dependency_type == "aftercorr" and offset in previous:
                    upstream = [previous[offset]]
                else:
                    upstream = list(previous.values())
                dep = dependency_spec(job.dependency_type, upstream) if upstream and job.dependency_type else None
                script = run_dir.script(job.name, chunk)
                tag = submission_comment(run_dir.root, len(manifest["attempts"]), script)
                job_id = sbatch_once(script, job.name, tag, profile.sbatch_retry, dependency=dep, array=array)
                current[offset] = job_id
                submitted.append(job_id)
                attempt["jobs"].setdefault(job.stage, []).append({"id": job_id, "offset": offset, "array": array})
                manifest["jobs"][job.stage] = attempt["jobs"][job.stage]
                atomic_write_json(run_dir.manifest_file, manifest)
            previous = current
    except Exception:
        if submitted:
            try:
                slurm.scancel(submitted)
            finally:
                manifest["status"] = "submit failed; cancelled " + " ".join(submitted)
                atomic_write_json(run_dir.manifest_file, manifest)
        raise
    manifest["status"] = "submitted"
    atomic_write_json(run_dir.manifest_file, manifest)


def _array_override(job: PlannedJob, offset: int, count: int, indices: Optional[list[int]],
                    throttle: Optional[int]) -> tuple[bool, Optional[str]]:
    """(submit this chunk?, --array override). A full submission uses the script's own --array;
    a resume names just the elements to rerun, with the profile's throttle."""
    if indices is None or not job.is_array:
        return True, None
    local = [i - offset for i in indices if offset <= i < offset + count]
    if not local:
        return False, None
    spec = ",".join(str(i) for i in local)
    return True, (f"{spec}%{throttle}" if throttle else spec)


def start_local(run_dir: RunDir, manifest: dict[str, Any], only: Optional[dict[str, list[int]]] = None) -> int:
    """Start the local scheduler detached from this terminal; it runs the graph and exits."""
    if only is not None:
        atomic_write_json(run_dir.local_selection_file, only)
    log = open(run_dir.local_scheduler_log, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.local_scheduler", str(run_dir.root)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env=slurm.clean_env(),
    )
    manifest.setdefault("attempts", []).append({"time": datetime.now().isoformat(timespec="seconds"), "local_pid": proc.pid})
    manifest["local_pid"] = proc.pid
    manifest["status"] = "submitted"
    atomic_write_json(run_dir.manifest_file, manifest)
    return proc.pid


def submit(loaded: Loaded) -> RunDir:
    run_dir = create_run_dir(loaded.recipe)
    write_run_files(run_dir, loaded)
    manifest = new_manifest(run_dir, loaded)
    atomic_write_json(run_dir.manifest_file, manifest)
    if loaded.profile.is_local:
        start_local(run_dir, manifest)
    else:
        submit_slurm(run_dir, loaded.plan, loaded.profile, manifest)
    return run_dir


def load_manifest(run_dir: RunDir) -> dict[str, Any]:
    if not run_dir.manifest_file.is_file():
        raise ConfigError([f"{run_dir.root}: not a run directory (no manifest.json)"])
    return read_json(run_dir.manifest_file)


def wait_local(run_dir: RunDir, poll_s: float = 1.0) -> None:
    pid = load_manifest(run_dir).get("local_pid")
    while pid and is_running(pid):
        time.sleep(poll_s)


def is_running(pid: int) -> bool:
    """Whether process `pid` (e.g. the local scheduler of a run) is still alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a finished child of ours that nobody reaped is a zombie: count it as gone
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
