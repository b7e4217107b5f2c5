"""`mftlaunch logs`: find a run's log files and follow them as they grow."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Optional

from launcher.rundir import RunDir, read_json


def log_files(run_dir: RunDir, stage: Optional[str] = None, index: Optional[int] = None) -> list[Path]:
    """Log files of a run, oldest first, optionally of one stage / array index."""
    plan = read_json(run_dir.plan_file)
    names = [j["name"] for j in plan["jobs"] if stage is None or j["stage"] == stage]
    found = []
    for path in run_dir.logs_dir.glob("*.out"):
        for name in names:
            if not path.name.startswith(name + "_"):
                continue
            tail = path.stem[len(name) + 1:].split("_")
            if index is not None and (len(tail) < 2 or tail[-1] != str(index)):
                if not (len(tail) == 1 and index == 0):
                    continue
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def follow(paths: list[Path], poll_s: float = 0.5) -> Iterator[str]:
    """Yield new lines of the given files as they grow (like `tail -F`), until interrupted."""
    offsets = {p: 0 for p in paths}
    while True:
        for path in paths:
            if path.is_file():
                with open(path, encoding="utf-8", errors="replace") as handle:
                    handle.seek(offsets[path])
                    chunk = handle.read()
                    offsets[path] = handle.tell()
                if chunk:
                    yield chunk
        time.sleep(poll_s)
