"""The partial-progress file: every finished row of an element, rewritten atomically after each
batch, so a requeued or restarted element skips what is done."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from jobs.generation.settings import DecodeSettings
from launcher.rundir import atomic_write_json, generations_name, read_json

#: Bump when the meaning of a saved row changes: partial progress of another version is dropped.
PROGRESS_VERSION = 1


def partial_filename(benchmark: str, model_name: str) -> str:
    return generations_name(benchmark, model_name, ".partial.json")


def progress_fingerprint(model_id: str, benchmark: str, prompts: Sequence[str], stop: Sequence[str],
                         eos_ids: Sequence[int], settings: DecodeSettings, dtype: str) -> str:
    """Hash of everything that changes generated text: saved rows count only under the same one."""
    blob = json.dumps({"v": PROGRESS_VERSION, "model": model_id, "benchmark": benchmark, "prompts": list(prompts),
                       "stop": list(stop), "eos_ids": list(eos_ids), "settings": settings.fingerprint(),
                       "dtype": dtype}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Progress:
    """Finished rows of one element by `Row.key`, each an `asdict(RowResult)`."""

    path: Path
    fingerprint: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> "Progress":
        """The saved rows when `path` was written under `fingerprint`, else none."""
        if path.is_file():
            try:
                data = read_json(path)
            except (OSError, json.JSONDecodeError):
                data = {}
            if data.get("fingerprint") == fingerprint:
                return cls(path, fingerprint, dict(data.get("rows", {})))
            print(f"mftlaunch: {path.name} was written with other settings/prompts; starting over", flush=True)
        return cls(path, fingerprint)

    def save(self) -> None:
        atomic_write_json(self.path, {"fingerprint": self.fingerprint, "rows": self.rows})
