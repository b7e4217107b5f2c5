"""Public API: :func:`execute` and :func:`execute_many`."""
from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import toolchain
from .backends import Backend, get_backend
from .limits import Limits, default_limits
from .process import StepResult, run_step
from .result import ExecResult
from .runners import get_runner
from .runners.base import Context, Step, text

TAIL_CHARS = 4000
log = logging.getLogger(__name__)


def _setup_failed(be: Backend, res: StepResult) -> str:
    """bwrap/apptainer could not build the sandbox (not the program's doing): say so loudly."""
    if res.marker_found or res.returncode in (0, None):
        return ""
    head = text(res.stderr[:400]).lstrip()
    if be.name == "bubblewrap" and head.startswith("bwrap:"):
        return head.splitlines()[0]
    if head.startswith("prlimit:") and "failed to execute" in head:
        return head.splitlines()[0]
    return ""


def _tail(s: str, n: int = TAIL_CHARS) -> str:
    return s[-n:]


def _make_scratch() -> tuple[str, str, str]:
    root = tempfile.mkdtemp(prefix="mftsbx-", dir=toolchain.scratch_parent())
    work = os.path.join(root, "work")
    shm = os.path.join(root, "shm")
    os.mkdir(work, 0o700)
    os.mkdir(shm, 0o700)
    ids = toolchain.sandbox_ids()
    if ids:
        for p in (root, work, shm):
            os.chown(p, *ids)
    return root, work, shm


def _rmtree(path: str) -> None:
    """Remove a scratch dir even if the program chmod'ed things inside it. Never touches
    anything outside ``path``."""
    root = os.path.realpath(path)

    def inside(p: str) -> bool:
        rp = os.path.realpath(p)
        return rp == root or rp.startswith(root + os.sep)

    def fix(func, p, exc):
        try:
            parent = os.path.dirname(p)
            if inside(parent) and not os.path.islink(parent):
                os.chmod(parent, 0o700)
            if inside(p) and os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass
    for _ in range(3):
        shutil.rmtree(path, onerror=fix)
        if not os.path.exists(path):
            return
        time.sleep(0.05)


def _run(backend: Backend, step: Step, scratch_root: str, work: str, shm: str, marker: str) -> StepResult:
    argv = backend.wrap(step.argv, scratch=work, shm=shm, env=step.env, limits=step.limits,
                        mounts=step.mounts)
    ids = backend.run_as()
    return run_step(argv, cwd=work, limits=step.limits, stdin_data=step.stdin,
                    env=backend.host_env(), scratch=scratch_root,
                    marker=marker.encode() if step.watch_marker else None,
                    user=ids[0] if ids else None, group=ids[1] if ids else None)


def _run_limits(lang: str, limits: Limits | None, timeout: float | None) -> Limits:
    """The run step's limits: per-language defaults (or ``limits``), with ``timeout`` as the wall
    clock; the CPU limit is raised to match so a longer timeout is not cut short by RLIMIT_CPU."""
    run_limits = limits or default_limits(lang, "run")
    if timeout is None:
        return run_limits
    cpu = run_limits.cpu_seconds
    if cpu is not None:
        cpu = max(cpu, math.ceil(float(timeout)))
    return run_limits.replace(wall_timeout_s=float(timeout), cpu_seconds=cpu)


@dataclass
class _Outcome:
    """The status of one program and the step that decided it (before it becomes an ExecResult)."""

    status: str
    phase: str
    detail: str = ""
    res: StepResult | None = None
    stdout: str | None = None


def _compile_outcome(runner, be: Backend, res: StepResult) -> _Outcome | None:
    """The verdict of a compile step that stopped the program, or None when it compiled."""
    why = _setup_failed(be, res)
    if why:
        log.error("eval_sandbox: sandbox setup failed: %s", why)
        return _Outcome("killed", "compile", f"sandbox setup failed: {why}", res)
    if res.killed_reason:
        return _Outcome("killed", "compile", res.killed_reason, res)
    if res.timed_out or res.signal == signal.SIGXCPU:
        return _Outcome("timeout", "compile", "compile step timed out", res)
    if res.returncode != 0:
        v = runner.classify_compile(res)
        return _Outcome(v.status, "compile", v.detail, res)
    return None


def _run_outcome(runner, be: Backend, res: StepResult, marker: str, run_limits: Limits) -> _Outcome:
    """The verdict of the run step: supervisor kills first, then the result channel."""
    why = _setup_failed(be, res)
    if why:
        log.error("eval_sandbox: sandbox setup failed: %s", why)
        return _Outcome("killed", "run", f"sandbox setup failed: {why}", res)
    # The marker line is ours: do not hand it back as program output.
    stdout = text(res.stdout).replace("\n" + marker + "\n", "", 1)
    stderr = text(res.stderr)
    if res.killed_reason:
        return _Outcome("killed", "run", res.killed_reason, res, stdout)
    if res.timed_out:
        return _Outcome("timeout", "run", f"wall clock limit {run_limits.wall_timeout_s}s", res, stdout)
    if res.signal == signal.SIGXCPU:
        return _Outcome("timeout", "run", f"CPU time limit {run_limits.cpu_seconds}s", res, stdout)
    if res.marker_found and res.returncode == 0:
        v = runner.accept(stdout, stderr)
    else:
        v = runner.classify_run(res, stdout, stderr)
    return _Outcome(v.status, "run", v.detail, res, stdout)


def _exec_result(outcome: _Outcome, lang: str, be: Backend, started: float) -> ExecResult:
    res = outcome.res
    stdout = outcome.stdout if outcome.stdout is not None else (text(res.stdout) if res else "")
    stderr = text(res.stderr) if res else ""
    return ExecResult(status=outcome.status, passed=outcome.status == "passed",
                      returncode=res.returncode if res else None,
                      stdout_tail=_tail(stdout), stderr_tail=_tail(stderr),
                      duration_s=round(time.monotonic() - started, 4), language=lang,
                      backend=be.name, phase=outcome.phase, detail=outcome.detail)


def execute(language: str, program: str, *, limits: Limits | None = None, backend: str | Backend = "auto",
            timeout: float | None = None, compile_limits: Limits | None = None,
            image: str | None = None, tests: str | None = None) -> ExecResult:
    """Compile (if needed) and run one FULL test program (solution + tests) in the sandbox.

    language:        python | js | java | cpp | go | rust (aliases: javascript, c++, ...)
    program:         the complete program text, as assembled by ``jobs.code_benchmarks.assembly``
    limits:          limits of the run step (default: per-language, see eval_sandbox.limits)
    backend:         "auto" (bubblewrap if it works, else apptainer if configured), "bubblewrap",
                     "apptainer", "none" (no isolation; explicit opt-in), or a Backend instance
    timeout:         wall-clock seconds of the run step (overrides ``limits.wall_timeout_s``)
    compile_limits:  limits of the compile step (default: per-language)
    image:           Apptainer image (.sif) for backend="apptainer" (default $MFTLAUNCH_SANDBOX_IMAGE)
    tests:           the appended test code, which ``program`` must end with: the runner then
                     also requires proof that these tests ran completely (eval_sandbox.completeness)

    Never raises for anything the program does; raises ``SandboxUnavailable`` / ``ValueError``
    for a missing backend, an unknown language, or ``tests`` that ``program`` does not end with.
    """
    runner = get_runner(language)
    lang = runner.language
    be = get_backend(backend, image=image) if isinstance(backend, str) else backend
    run_limits = _run_limits(lang, limits, timeout)
    marker = "MFT-SANDBOX-OK-" + secrets.token_hex(16)
    started = time.monotonic()
    root, work, shm = _make_scratch()
    try:
        ctx = Context(scratch=work, cwd=be.cwd_in_sandbox(work), marker=marker, token=secrets.token_hex(6),
                      compile_limits=compile_limits or default_limits(lang, "compile"),
                      run_limits=run_limits, paths=be.paths(), tests=tests,
                      tick_token="MFT" + secrets.token_hex(16))
        compile_step, run_step_ = runner.build(program, ctx)
        outcome = None
        if compile_step is not None:
            outcome = _compile_outcome(runner, be, _run(be, compile_step, root, work, shm, marker))
        if outcome is None:
            outcome = _run_outcome(runner, be, _run(be, run_step_, root, work, shm, marker), marker, run_limits)
        return _exec_result(outcome, lang, be, started)
    finally:
        _rmtree(root)


def execute_many(jobs: list[tuple[str, ...]], workers: int = 1, **kw) -> list[ExecResult]:
    """Run ``(language, program)`` or ``(language, program, tests)`` jobs on ``workers`` threads
    (each job is its own sandboxed process tree); results come back in the order of ``jobs``.
    ``kw`` goes to :func:`execute`.
    An unexpected internal error in one job is reported as status ``killed`` for that job."""
    backend = kw.pop("backend", "auto")
    be = get_backend(backend, image=kw.pop("image", None)) if isinstance(backend, str) else backend

    def one(job):
        lang, prog, *tests = job
        t0 = time.monotonic()
        try:
            return execute(lang, prog, backend=be, tests=tests[0] if tests else None, **kw)
        except Exception as e:  # noqa: BLE001
            return ExecResult(status="killed", passed=False, returncode=None, stdout_tail="",
                              stderr_tail="", duration_s=time.monotonic() - t0, language=lang,
                              backend=be.name, phase="", detail=f"internal error: {e!r}")

    if workers <= 1:
        return [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))
