"""What a run was submitted with, and whether a resume would continue it with something else.

The manifest records the resolved recipe and profile (and their sha256), the overrides and profile
reference used, and the code's identity (git sha, dirty flag and a hash of the uncommitted diff and
of new source files, the installed version). `resume` compares them with the run directory's
recipe.yaml / profile.yaml, with the recipe file re-resolved today and the profile loaded today,
and with the code installed now: checkpoints and generations made under one configuration must not
silently continue under another.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import yaml

from launcher.profile import Profile, load_profile, profile_to_yaml
from launcher.recipe import Recipe, recipe_from_source, recipe_to_yaml
from launcher.rundir import RunDir, atomic_write_json
from launcher.yamlsource import ConfigError, load_yaml

CODE_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("launcher", "jobs", "eval_sandbox")


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def recipe_data(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as recipe.yaml holds it."""
    return yaml.safe_load(recipe_to_yaml(recipe))


def profile_data(profile: Profile) -> dict[str, Any]:
    return yaml.safe_load(profile_to_yaml(profile))


def _git(*args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(CODE_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _new_sources() -> list[str]:
    """Untracked, not ignored Python files of the packages: new code a job may import."""
    listed = _git("ls-files", "--others", "--exclude-standard", "--", *CODE_PACKAGES) or ""
    return sorted(name for name in listed.splitlines() if name.endswith(".py"))


def code_identity() -> dict[str, Any]:
    """git sha, whether the tree has uncommitted changes or new source files (and a hash of them),
    installed version."""
    sha = _git("rev-parse", "HEAD")
    status = (_git("status", "--porcelain", "--untracked-files=no") or "").strip()
    new_sources = _new_sources()
    changes = hashlib.sha256((_git("diff", "HEAD") or "").encode() if status else b"")
    for name in new_sources:
        changes.update(name.encode() + b"\0" + (CODE_ROOT / name).read_bytes())
    try:
        version = importlib.metadata.version("mftlaunch")
    except importlib.metadata.PackageNotFoundError:
        version = None
    dirty = bool(status or new_sources)
    return {
        "git_sha": sha.strip() if sha else None,
        "dirty": dirty,
        "diff_sha256": changes.hexdigest() if dirty else None,
        "version": version,
    }


def submission_record(recipe: Recipe, profile: Profile, overrides: list[str], profile_ref: str) -> dict[str, Any]:
    """The manifest's `fingerprint` entry."""
    recipe_dict, profile_dict = recipe_data(recipe), profile_data(profile)
    return {
        "recipe_sha256": digest(recipe_dict),
        "profile_sha256": digest(profile_dict),
        "code": code_identity(),
        "recipe": recipe_dict,
        "profile": profile_dict,
        "overrides": list(overrides),
        "profile_ref": profile_ref,
    }


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'stages.train.learning_rate: 0.0002 → 0.0001' for every dotted field that differs."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '(absent)')!r} → {b.get(k, '(absent)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "(absent)") != b.get(k, "(absent)")]


@dataclass
class Drift:
    """How today's configuration and code differ from the submission's."""

    config: list[str] = field(default_factory=list)  # "recipe (run directory): field: old → new", ...
    code: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def refused(self, strict: bool) -> bool:
        return bool(self.config or (strict and self.code))


def _code_changes(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    changes = []
    if then.get("git_sha") != now.get("git_sha"):
        changes.append(f"git sha {str(then.get('git_sha'))[:12]} → {str(now.get('git_sha'))[:12]}")
    if (then.get("dirty"), then.get("diff_sha256")) != (now.get("dirty"), now.get("diff_sha256")):
        changes.append("uncommitted changes differ" if now.get("dirty") else "the tree was dirty at submission, clean now")
    if then.get("version") != now.get("version"):
        changes.append(f"mftlaunch {then.get('version')} → {now.get('version')}")
    return changes


def _normalised(data: Any, model: type, dump: Any) -> Any:
    """`data` read through today's model, so that a field added since (with its default) is no
    change; as it is when today's model no longer accepts it (then the comparison shows why)."""
    try:
        return dump(model.model_validate(data))
    except ValueError:
        return data


def check_resume(run_dir: RunDir, manifest: dict[str, Any]) -> Drift:
    """Compare the submission's record with the run directory's files, the recipe file and the
    profile as they resolve today, and the code installed now."""
    drift = Drift()
    record = manifest.get("fingerprint")
    if not isinstance(record, dict):
        drift.notes.append("this run has no fingerprint (submitted by an older mftlaunch): nothing compared")
        return drift

    def compare(label: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        drift.config += [f"{label}: {change}" for change in changed_fields(old, new)]

    submitted_recipe = _normalised(record["recipe"], Recipe, recipe_data)
    submitted_profile = _normalised(record["profile"], Profile, profile_data)
    compare("recipe.yaml in the run directory", submitted_recipe,
            _normalised(yaml.safe_load(run_dir.recipe_file.read_text()), Recipe, recipe_data))
    compare("profile.yaml in the run directory", submitted_profile,
            _normalised(run_dir.read_profile(), Profile, profile_data))
    source = manifest.get("recipe_source")
    if source and Path(source).is_file():
        try:
            today = recipe_data(recipe_from_source(load_yaml(Path(source)), record.get("overrides", [])))
            compare(f"recipe {source}", submitted_recipe, today)
        except ConfigError as exc:
            drift.config.append(f"recipe {source} no longer validates: {exc.problems[0]}")
    else:
        drift.notes.append(f"recipe file {source} is gone: compared with the run directory's copy only")
    try:
        compare(f"profile '{record['profile_ref']}'", submitted_profile,
                profile_data(load_profile(record["profile_ref"])))
    except ConfigError as exc:
        drift.notes.append(f"profile '{record['profile_ref']}' cannot be loaded today: {exc.problems[0]}")
    drift.code = _code_changes(record.get("code", {}), code_identity())
    return drift


def record_forced_resume(run_dir: RunDir, manifest: dict[str, Any], drift: Drift) -> None:
    """--force leaves a trace: what differed and when the user chose to go on anyway."""
    manifest.setdefault("forced_resumes", []).append({
        "time": datetime.now().isoformat(timespec="seconds"), "config": drift.config, "code": drift.code,
    })
    atomic_write_json(run_dir.manifest_file, manifest)
