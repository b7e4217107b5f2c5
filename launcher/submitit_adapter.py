"""The one place mftlaunch touches submitit: its sbatch renderer, behind a guard.

Why submitit's private `_make_sbatch_string` and not its public executor: the public API submits a
pickled callable through submitit's own loader and parses sbatch's human output; our jobs are plain
module entry points whose scripts must be byte-stable (resume reuses them, golden files pin them)
and carry our own USR2/requeue body. The renderer is the part of submitit we want: one sorted,
quoted `#SBATCH --key=value` line per parameter, `--flag` for True, nothing for None.

The guard: the supported versions are a range in setup.py (SUPPORTED below, checked at import
time), and tests/test_submitit_adapter.py pins the exact text for a fixed set of parameters, so a
submitit release that renders differently fails the tests loudly instead of changing every script.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

#: Versions whose renderer produces the text tests/test_submitit_adapter.py expects.
SUPPORTED = (">=1.5.2", "<1.6")
_SUBMITIT_MARKER = "export SUBMITIT_EXECUTOR=slurm\n"


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def check_version(version: str) -> None:
    """Refuse a submitit outside SUPPORTED with the fix, before any script is rendered."""
    low, high = (_version_tuple(bound.lstrip("<>=")) for bound in SUPPORTED)
    if not low <= _version_tuple(version) < high:
        raise RuntimeError(f"submitit {version} is not supported (mftlaunch needs submitit{','.join(SUPPORTED)}); "
                           f"run: pip install 'submitit{','.join(SUPPORTED)}'")


def sbatch_text(command: str, folder: Path, setup: list[str], **parameters: Any) -> str:
    """A whole batch script: submitit's header and `#SBATCH` lines, our setup lines, our command.

    submitit also writes `export SUBMITIT_EXECUTOR=slurm` for its own loader; our jobs do not run
    that loader, so the line is removed."""
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command=command, folder=str(folder), setup=setup, **parameters)
    return text.replace(_SUBMITIT_MARKER, "")


check_version(importlib.metadata.version("submitit"))
