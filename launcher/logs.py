"""`mftlaunch logs`: which log file belongs to which element of a run, and following them
as they appear.

Slurm names a log `<job name>_<array job id>_<%a>.out` (arrays) or `<job name>_<job id>.out`;
the local scheduler `<job name>_local<pid>_<index>.out`. `%a` is the index inside one sbatch, so
for a chunked array (MaxArraySize) the element's index in the stage is the chunk's offset plus
`%a`; the offsets come from the manifest's record of every submission.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from launcher.rundir import RunDir, read_json

#: A line worth showing as "why it failed": the last one of these in an element's log.
_ERROR_LINE = re.compile(
    r"Error\b|Exception\b|error:|\bfatal\b|Traceback|Killed|CANCELLED|DUE TO|out of memory|oom-kill|Segmentation fault",
)


def _chunk_offsets(manifest: dict[str, Any]) -> dict[str, int]:
    """Slurm job id of every sbatch of the run → the offset of the chunk it ran."""
    offsets: dict[str, int] = {}
    for attempt in manifest.get("attempts", []):
        for entries in attempt.get("jobs", {}).values():
            for entry in entries:
                offsets[str(entry["id"])] = int(entry.get("offset", 0))
    return offsets


def element_of_log(path: Path, jobs: list[dict[str, Any]], offsets: dict[str, int]) -> Optional[tuple[str, int]]:
    """(stage, index in the stage) that wrote `path`, or None for a file of no element."""
    for job in sorted(jobs, key=lambda j: len(j["name"]), reverse=True):  # longest name first
        prefix = job["name"] + "_"
        if not path.name.startswith(prefix) or path.suffix != ".out":
            continue
        tail = path.stem[len(prefix):].split("_")
        if len(tail) == 1:
            return job["stage"], 0
        if len(tail) == 2 and tail[1].isdigit():
            return job["stage"], offsets.get(tail[0], 0) + int(tail[1])
    return None


def log_files(run_dir: RunDir, stage: Optional[str] = None, index: Optional[int] = None) -> list[Path]:
    """Log files of a run, oldest first, optionally of one stage and one element of it."""
    plan = read_json(run_dir.plan_file)
    manifest = read_json(run_dir.manifest_file) if run_dir.manifest_file.is_file() else {}
    offsets = _chunk_offsets(manifest)
    found = []
    for path in run_dir.logs_dir.glob("*.out") if run_dir.logs_dir.is_dir() else []:
        owner = element_of_log(path, plan["jobs"], offsets)
        if owner is None or (stage is not None and owner[0] != stage) or (index is not None and owner[1] != index):
            continue
        found.append(path)
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def latest_logs(run_dir: RunDir) -> dict[tuple[str, int], Path]:
    """(stage, index) → the element's newest log, for every element that has one (one scan)."""
    plan = read_json(run_dir.plan_file)
    manifest = read_json(run_dir.manifest_file) if run_dir.manifest_file.is_file() else {}
    offsets = _chunk_offsets(manifest)
    latest: dict[tuple[str, int], Path] = {}
    for path in sorted(run_dir.logs_dir.glob("*.out") if run_dir.logs_dir.is_dir() else [],
                       key=lambda p: (p.stat().st_mtime, p.name)):
        owner = element_of_log(path, plan["jobs"], offsets)
        if owner is not None:
            latest[owner] = path
    return latest


def last_error_line(path: Optional[Path], tail_bytes: int = 65536) -> str:
    """The last line of the log's tail that reads like an error, stripped; "" when none."""
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - tail_bytes))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line.strip()[:300]
    return ""


def follow(list_files: Callable[[], list[Path]], finished: Callable[[], bool], poll_s: float = 0.5,
           check_every_s: float = 5.0) -> Iterator[str]:
    """Yield what is appended to the files `list_files()` names, picking up files that appear
    later (a requeued attempt, a resumed element, the next stage); each file starts with a
    `==> path <==` header. Ends once `finished()` says so and nothing grew since the last look."""
    offsets: dict[Path, int] = {}

    def read_new() -> Iterator[str]:
        for path in list_files():
            if path not in offsets:
                offsets[path] = 0
                yield f"==> {path} <==\n"
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(offsets[path])
                chunk = handle.read()
                offsets[path] = handle.tell()
            if chunk:
                yield chunk

    last_check = 0.0
    while True:
        grew = False
        for text in read_new():
            grew = True
            yield text
        now = time.monotonic()
        if not grew and now - last_check >= check_every_s:
            last_check = now
            if finished():
                yield from read_new()  # what was written between the last read and the check
                return
        time.sleep(poll_s)
