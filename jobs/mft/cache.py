"""Build-once-per-key directories on shared storage: one rank builds, the others wait.

No torch.distributed is needed: the builder writes into a private temporary directory and
renames it into place (atomic on POSIX file systems, NFS and Lustre included), with a READY
marker inside, so a waiter sees either nothing or a complete entry. A failed build leaves a
`<entry>.failed` file with the error, so the waiters stop at once instead of running into their
timeout.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

READY = "READY"


class CacheWaitTimeout(TimeoutError):
    """The builder rank did not finish an entry in time."""


class CacheBuildFailed(RuntimeError):
    """The builder rank reported a failure for an entry this rank waits for."""


def _failed_marker(entry: Path) -> Path:
    return entry.with_name(entry.name + ".failed")


def is_ready(entry: Path) -> bool:
    return (entry / READY).is_file()


def build_once(
    entry: Path,
    build: Callable[[Path], None],
    *,
    is_builder: bool,
    timeout_s: float = 3600.0,
    poll_s: float = 1.0,
) -> bool:
    """Make sure `entry` exists and is complete; True if this call built it.

    The builder calls `build(tmp_dir)`, which fills tmp_dir; the directory then becomes `entry`.
    Everyone else waits until `entry/READY` exists (or a failure marker appears).
    """
    if is_ready(entry):
        return False
    if is_builder:
        _build(entry, build)
        return True
    _wait(entry, timeout_s, poll_s)
    return False


def _build(entry: Path, build: Callable[[Path], None]) -> None:
    failed = _failed_marker(entry)
    failed.unlink(missing_ok=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / READY).write_text(f"built by pid {os.getpid()} at {time.time():.0f}\n")
        if is_ready(entry):  # another builder (a second run sharing the cache) got there first
            shutil.rmtree(tmp)
            return
        if entry.exists():  # an incomplete entry left by a killed builder
            shutil.rmtree(entry)
        os.rename(tmp, entry)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failed.write_text(f"{type(exc).__name__}: {exc} (pid {os.getpid()}, {time.time():.6f})\n")
        raise


def _wait(entry: Path, timeout_s: float, poll_s: float) -> None:
    failed = _failed_marker(entry)
    # A failure marker already present may be stale (from an earlier attempt the builder is now
    # redoing); only one that appears or changes while we wait is news.
    stale = failed.read_text() if failed.exists() else None
    start = time.monotonic()
    next_note = start + 60
    while not is_ready(entry):
        if failed.exists():
            text = failed.read_text()
            if text != stale:
                raise CacheBuildFailed(f"the builder rank failed to build {entry}: {text.strip()}")
        now = time.monotonic()
        if now - start > timeout_s:
            raise CacheWaitTimeout(
                f"waited {timeout_s:.0f}s for {entry / READY}, which rank 0 writes when it has built the entry; "
                "is the cache directory on storage that all nodes share, and did rank 0 start?"
            )
        if now >= next_note:
            log.info("still waiting for %s (%.0fs)", entry, now - start)
            next_note = now + 60
        time.sleep(poll_s)
