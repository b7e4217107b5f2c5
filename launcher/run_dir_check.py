"""Opening a run directory given on the command line: a missing, empty, foreign or damaged one is
answered with one line that says what is wrong and what to do, never a traceback.

Every command that takes a run directory (status, logs, cancel, resume, collect, compare, report)
opens it here first; only the files those commands read are checked, and only for the fields they use.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from launcher.rundir import RunDir

_JOB_FIELDS = {"stage": str, "name": str, "items": list, "chunks": list, "resources": dict}


class RunDirError(RuntimeError):
    """The path is not a usable run directory; the message is the one line to show."""


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: damaged (not text)") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: damaged (invalid JSON at line {exc.lineno}, column {exc.colno})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: damaged (a JSON object was expected, found {type(data).__name__})")
    return data


def _check_plan(path: Path, plan: dict[str, Any]) -> None:
    jobs = plan.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise RunDirError(f"{path}: damaged (no list of jobs)")
    for number, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise RunDirError(f"{path}: damaged (job {number} is not an object)")
        for field, kind in _JOB_FIELDS.items():
            if not isinstance(job.get(field), kind):
                raise RunDirError(f"{path}: damaged (job {number} has no valid '{field}')")
        if not all(isinstance(item, dict) and "key" in item for item in job["items"]):
            raise RunDirError(f"{path}: damaged (an item of job '{job['name']}' has no 'key')")


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    if manifest.get("scheduler") not in ("slurm", "local"):
        raise RunDirError(f"{path}: damaged (no 'scheduler': slurm or local)")
    attempts = manifest.get("attempts", [])
    if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
        raise RunDirError(f"{path}: damaged ('attempts' is not a list of objects)")
    for attempt in attempts:
        for entries in (attempt.get("jobs") or {}).values():
            if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e and "offset" in e
                                                        for e in entries):
                raise RunDirError(f"{path}: damaged (a submission record has no job id)")


def open_run_dir(path: str, *, submitted: bool = True, profile: bool = False) -> RunDir:
    """The RunDir at `path` after checking plan.json, manifest.json (required when `submitted`)
    and profile.yaml when `profile`; RunDirError with one line otherwise."""
    root = Path(path)
    if not root.exists():
        raise RunDirError(f"{path}: no such run directory (recent runs: mftlaunch runs --root DIR)")
    if not root.is_dir():
        raise RunDirError(f"{path}: not a directory; a run directory holds plan.json and manifest.json")
    run_dir = RunDir(root)
    has_plan, has_manifest = run_dir.plan_file.is_file(), run_dir.manifest_file.is_file()
    if not has_plan and not has_manifest:
        if not any(root.iterdir()):
            raise RunDirError(f"{path}: empty directory, not a run directory (did the submission fail?)")
        raise RunDirError(f"{path}: not a run directory (no plan.json or manifest.json); "
                          "runs are listed by `mftlaunch runs --root DIR`")
    if not has_plan:
        raise RunDirError(f"{run_dir.plan_file}: missing: the run directory is damaged")
    _check_plan(run_dir.plan_file, _read_json_object(run_dir.plan_file, "plan.json"))
    if submitted and not has_manifest:
        raise RunDirError(f"{path}: planned but never submitted (no manifest.json): "
                          "submit the recipe with `mftlaunch submit`")
    if has_manifest:  # read by every command when present (log names, job ids, cost)
        _check_manifest(run_dir.manifest_file, _read_json_object(run_dir.manifest_file, "manifest.json"))
    if profile:
        try:
            data = yaml.safe_load(run_dir.profile_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{run_dir.profile_file}: missing or damaged ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{run_dir.profile_file}: damaged (a mapping was expected)")
    return run_dir
