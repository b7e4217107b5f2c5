"""Supervise one sandboxed step: wall clock, capped output, scratch-dir watchdog, kill.

The command is started in its own session (``start_new_session``); on timeout, on the
output cap or on the watchdog the whole process group is SIGKILLed. With bubblewrap the
group leader is ``bwrap`` itself; its child runs with ``--die-with-parent`` as the init of
a fresh PID namespace, so killing bwrap tears the namespace down and every process in it
(daemons that double-forked and called setsid included) is killed by the kernel.

No ``preexec_fn`` is used (it is unsafe with threads, and :func:`execute_many` uses
threads): privileges are dropped with Popen's ``user``/``group``/``extra_groups`` (done in
C by _posixsubprocess) and rlimits are set by ``prlimit(1)`` exec'd as part of the command.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from .limits import Limits

TAIL_BYTES = 64 * 1024
WATCHDOG_PERIOD_S = 0.2


@dataclass
class StepResult:
    returncode: int | None
    stdout: bytes              # last TAIL_BYTES of stdout
    stderr: bytes              # last TAIL_BYTES of stderr
    duration_s: float
    timed_out: bool = False
    killed_reason: str = ""    # "output cap", "scratch watchdog: ...", "" if not killed
    marker_found: bool = False
    output_bytes: int = 0

    @property
    def signal(self) -> int | None:
        """Signal number that killed the command, when it can be told."""
        rc = self.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        if rc > 128 and rc < 128 + 65:   # shells, bwrap and prlimit report 128+N
            return rc - 128
        return None


class _Tail:
    """Keeps the last ``size`` bytes and searches a marker across chunk boundaries."""

    def __init__(self, size: int, marker: bytes | None):
        self.size = size
        self.buf = bytearray()
        self.marker = marker
        self.found = False
        self._carry = b""

    def add(self, data: bytes) -> None:
        if self.marker and not self.found:
            window = self._carry + data
            if self.marker in window:
                self.found = True
            self._carry = window[-(len(self.marker) - 1):] if len(self.marker) > 1 else b""
        self.buf += data
        if len(self.buf) > 2 * self.size:
            del self.buf[: len(self.buf) - self.size]

    def value(self) -> bytes:
        return bytes(self.buf[-self.size:])


def scratch_usage(root: str, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) under ``root``; stops counting after ``max_entries + 1`` entries."""
    total = 0
    entries = 0
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                entries += 1
                if entries > max_entries:
                    return total, entries
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    else:
                        # allocated blocks: what the disk really holds (sparse files are cheap)
                        total += e.stat(follow_symlinks=False).st_blocks * 512
                except OSError:
                    continue
    return total, entries


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _start(argv: list[str], cwd: str, env: dict[str, str] | None, user: int | None,
           group: int | None) -> subprocess.Popen:
    """Start the wrapped command in its own session, with privileges dropped when asked."""
    kw = {}
    if user is not None:
        kw.update(user=user, group=group if group is not None else user, extra_groups=[])
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env if env is not None else {"PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        **kw,
    )


def _feed_stdin(proc: subprocess.Popen, data: bytes) -> None:
    """Write all of stdin at once (a marker line and little else) and close it."""
    try:
        if data:
            proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _scratch_over_limit(scratch: str, limits: Limits) -> str:
    """Why the scratch dir is over its limits, or "" when it is not."""
    used, entries = scratch_usage(scratch, limits.scratch_max_files)
    if entries > limits.scratch_max_files:
        return f"scratch watchdog: more than {limits.scratch_max_files} files"
    if used > limits.scratch_max_bytes:
        return f"scratch watchdog: {used} bytes > {limits.scratch_max_bytes}"
    return ""


@dataclass
class _Supervision:
    """How the watch loop ended."""

    timed_out: bool = False
    killed_reason: str = ""
    output_bytes: int = 0


def _read_ready(sel: selectors.BaseSelector, timeout: float, watch: _Supervision, limits: Limits) -> None:
    """Move whatever the streams have into their tails; close streams at EOF; enforce the output cap."""
    for key, _ in sel.select(timeout):
        try:
            data = os.read(key.fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            continue
        watch.output_bytes += len(data)
        key.data.add(data)
        if watch.output_bytes > limits.output_cap_bytes:
            watch.killed_reason = f"output cap ({limits.output_cap_bytes} bytes) exceeded"
            return


def _watch(proc: subprocess.Popen, out: _Tail, err: _Tail, start: float, limits: Limits,
           scratch: str | None) -> _Supervision:
    """Read both streams until they close, the wall clock runs out, output passes the cap or the
    scratch dir passes its limits."""
    watch = _Supervision()
    deadline = start + limits.wall_timeout_s
    sel = selectors.DefaultSelector()
    for f, tail in ((proc.stdout, out), (proc.stderr, err)):
        os.set_blocking(f.fileno(), False)
        sel.register(f, selectors.EVENT_READ, tail)
    next_watch = start + WATCHDOG_PERIOD_S
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                watch.timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                break   # something outside the sandbox (none backend) still holds the pipe
            _read_ready(sel, min(deadline - now, max(next_watch - now, 0.0), 0.25), watch, limits)
            if watch.killed_reason:
                break
            if scratch is not None and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + WATCHDOG_PERIOD_S
                watch.killed_reason = _scratch_over_limit(scratch, limits)
                if watch.killed_reason:
                    break
    finally:
        sel.close()
    return watch


def _reap(proc: subprocess.Popen) -> int | None:
    """Kill the group and collect the exit status. With bwrap this only reaches bwrap (the
    sandbox has its own session and PID namespace, torn down when bwrap dies); with `none` it
    is the best there is."""
    _kill_group(proc)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - would need an unkillable process
        rc = None
    for f in (proc.stdout, proc.stderr):
        try:
            f.close()
        except OSError:
            pass
    return rc


def run_step(
    argv: list[str],
    *,
    cwd: str,
    limits: Limits,
    stdin_data: bytes = b"",
    env: dict[str, str] | None = None,
    scratch: str | None = None,
    marker: bytes | None = None,
    user: int | None = None,
    group: int | None = None,
) -> StepResult:
    """Run ``argv`` (already wrapped by a backend) under the supervisor."""
    start = time.monotonic()
    proc = _start(argv, cwd, env, user, group)
    out = _Tail(TAIL_BYTES, marker)
    err = _Tail(TAIL_BYTES, None)
    watch = _Supervision()
    try:
        _feed_stdin(proc, stdin_data)
        watch = _watch(proc, out, err, start, limits, scratch)
    finally:
        rc = _reap(proc)
    return StepResult(
        returncode=rc,
        stdout=out.value(),
        stderr=err.value(),
        duration_s=time.monotonic() - start,
        timed_out=watch.timed_out,
        killed_reason=watch.killed_reason,
        marker_found=out.found,
        output_bytes=watch.output_bytes,
    )
