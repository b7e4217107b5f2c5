"""Cluster profiles: admin-owned YAML that says how jobs are placed on one cluster.

Search path: the built-in `cluster_profiles/` of this project, then the directory named by
$MFTLAUNCH_PROFILES (an admin's file of the same name wins). A profile never holds secret values:
`secret_env` names variables passed through from the submitting environment at submit time.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import Field, field_validator, model_validator

from launcher.contract import ENV_PROFILES_PATH
from launcher.recipe import parse_time_minutes
from launcher.validation import StrictModel, validate_model
from launcher.yamlsource import ConfigError, load_yaml

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "cluster_profiles"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Partitions(StrictModel):
    gpu: Optional[str] = Field(None, description="for stages that ask for GPUs")
    cpu: Optional[str] = Field(None, description="for CPU stages (evaluate, collect)")


class Container(StrictModel):
    type: Literal["none", "apptainer", "pyxis"] = "none"
    image: Optional[str] = None
    mounts: list[str] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _image(self) -> "Container":
        if self.type != "none" and not self.image:
            raise ValueError(f"container type '{self.type}' needs `image`")
        return self


class SbatchRetry(StrictModel):
    """Retries of an sbatch that failed for a passing reason (a busy or restarting slurmctld)."""

    attempts: int = Field(4, ge=1, le=20, description="tries per sbatch, the first included")
    backoff_s: float = Field(2.0, ge=0, description="wait before the second try; doubles each time")
    max_backoff_s: float = Field(30.0, ge=0, description="longest wait between two tries")


class Profile(StrictModel):
    name: str
    description: str = ""
    scheduler: Literal["slurm", "local"] = "slurm"
    partitions: Partitions = Field(default_factory=Partitions)
    account: Optional[str] = None
    qos: Optional[str] = None
    reservation: Optional[str] = None
    constraint: Optional[str] = None
    gpu_request: Literal["gpus-per-node", "gres", "gpus-per-task"] = "gpus-per-node"
    gres_type: str = Field("gpu", description="gres name, e.g. 'gpu' or 'gpu:a100'")
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_node: Optional[int] = Field(None, ge=1)
    mem_gb_per_node: Optional[float] = Field(None, gt=0)
    gpu_mem_gib: Optional[float] = Field(None, gt=0, description="memory of one GPU in GiB; enables the training memory check")
    max_time: Optional[Union[int, str]] = None
    max_nodes: Optional[int] = Field(None, ge=1)
    exclusive: bool = False
    array_throttle: Optional[int] = Field(None, ge=1, description="`%N`: at most N elements at once")
    max_array_size: int = Field(1001, ge=1, description="Slurm's MaxArraySize (caps the index)")
    chunk_arrays: bool = Field(True, description="split arrays larger than max_array_size")
    modules: list[str] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list, description="shell lines run before the job (venv, ...)")
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: list[str] = Field(default_factory=list, description="names passed from the submitting shell")
    container: Container = Field(default_factory=Container)
    signal_grace_s: int = Field(120, ge=10, description="USR2 this long before the time limit")
    requeue: bool = Field(True, description=(
        "sbatch --requeue: an element whose node failed, that was preempted or that saved at its time "
        "limit is requeued and resumes from its save. False (--no-requeue): such an element ends "
        "(NODE_FAIL / PREEMPTED / saved) and `mftlaunch resume` continues it"))
    master_addr: Literal["hostname", "ip"] = "hostname"
    net_ifname: Optional[str] = Field(None, description="interface for NCCL/gloo, or 'auto'")
    python: Optional[str] = Field(None, description="interpreter on the nodes; None: the submitting one")
    wckey: Optional[str] = None
    sbatch_extra: dict[str, Union[str, int, bool]] = Field(default_factory=dict)
    srun_extra: list[str] = Field(default_factory=list)
    sbatch_retry: SbatchRetry = Field(default_factory=SbatchRetry)
    max_parallel: int = Field(2, ge=1, description="local scheduler only: elements run at once")

    @field_validator("max_time")
    @classmethod
    def _time(cls, value: Optional[Union[int, str]]) -> Optional[Union[int, str]]:
        if value is not None:
            try:
                parse_time_minutes(value)
            except (ValueError, IndexError):
                raise ValueError("max_time must be minutes or [D-]HH:MM:SS") from None
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not ENV_NAME_RE.match(k)]
        if bad:
            raise ValueError(f"not valid environment variable names: {bad}")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        bad = [k for k in value if not ENV_NAME_RE.match(k)]
        if bad:
            raise ValueError(f"secret_env holds variable NAMES (e.g. HF_TOKEN), got {bad}")
        return value

    @field_validator("sbatch_extra")
    @classmethod
    def _no_false_flags(cls, value: dict) -> dict:
        # `--flag=False` is never what an admin means: drop false flags instead of emitting them
        return {k: v for k, v in value.items() if v is not False}

    @property
    def max_time_minutes(self) -> Optional[int]:
        return parse_time_minutes(self.max_time) if self.max_time is not None else None

    @property
    def is_local(self) -> bool:
        return self.scheduler == "local"


def search_dirs() -> list[Path]:
    dirs = [BUILTIN_DIR]
    extra = os.environ.get(ENV_PROFILES_PATH)
    if extra:
        dirs.extend(Path(p) for p in extra.split(os.pathsep) if p)
    return dirs


def available() -> dict[str, Path]:
    """Profile name → file; later search directories win over the built-in ones."""
    found: dict[str, Path] = {}
    for directory in search_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found[path.stem] = path
    return found


def find(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    profiles = available()
    if name_or_path not in profiles:
        import difflib

        hint = difflib.get_close_matches(name_or_path, list(profiles), n=1)
        msg = f"unknown cluster profile '{name_or_path}'"
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        msg += f"; known: {', '.join(sorted(profiles)) or 'none'}; search path: {', '.join(map(str, search_dirs()))}"
        msg += f" (admins add profiles there or in ${ENV_PROFILES_PATH})"
        raise ConfigError([msg])
    return profiles[name_or_path]


def load_profile(name_or_path: str) -> Profile:
    path = find(name_or_path)
    source = load_yaml(path)
    if not isinstance(source.data, dict):
        raise ConfigError([f"{path}: a cluster profile is a YAML mapping (name, partitions, ...)"])
    data = dict(source.data)
    data.setdefault("name", path.stem)
    return validate_model(Profile, data, source)  # type: ignore[return-value]


def profile_to_yaml(profile: Profile) -> str:
    return yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False)
