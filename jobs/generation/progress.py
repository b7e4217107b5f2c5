"""The partial-progress files: every finished row of an element, rewritten atomically after each
batch, so a requeued or restarted element skips what is done.

A one-rank element keeps one file; with data-parallel ranks each rank writes its own
(`...partial.rankR.json`), so no two processes write one file. Every rank reads them all, so a
row done under another rank count is not generated again."""
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


def partial_filename(benchmark: str, model_name: str, rank: int = 0, world_size: int = 1) -> str:
    """The progress file of `rank` of `world_size` data-parallel ranks."""
    suffix = ".partial.json" if world_size == 1 else f".partial.rank{rank}.json"
    return generations_name(benchmark, model_name, suffix)


def partial_files(out_dir: Path, benchmark: str, model_name: str) -> list[Path]:
    """Every progress file of the element, whatever rank count wrote it."""
    head = generations_name(benchmark, model_name, ".partial")
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.name.startswith(head) and p.name.endswith(".json")
                  and (p.name == head + ".json" or p.name[len(head):].startswith(".rank")))


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
            rows = saved_rows(path, fingerprint)
            if rows is not None:
                return cls(path, fingerprint, rows)
            print(f"mftlaunch: {path.name} was written with other settings/prompts; starting over", flush=True)
        return cls(path, fingerprint)

    def save(self) -> None:
        atomic_write_json(self.path, {"fingerprint": self.fingerprint, "rows": self.rows})


def saved_rows(path: Path, fingerprint: str) -> dict[str, dict[str, Any]] | None:
    """The rows of one progress file written under `fingerprint`; None when it was not (or is
    unreadable: a file another rank is replacing is read again at the next poll)."""
    try:
        data = read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    return dict(data.get("rows", {}))


def rows_in_files(paths: Sequence[Path], fingerprint: str) -> dict[str, dict[str, Any]]:
    """The union of the rows saved under `fingerprint` in `paths`."""
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        rows.update(saved_rows(path, fingerprint) or {})
    return rows
