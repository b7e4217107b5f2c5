"""Result types."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Every status :func:`eval_sandbox.execute` can return.
STATUSES = ("passed", "failed", "timeout", "compile_error", "runtime_error", "killed")


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one program.

    status:
        ``passed``        the harness's own result channel certified that every test ran and passed
        ``failed``        tests ran and one failed, or the program exited before the harness finished
                          (e.g. ``exit(0)`` inside the solution), or it printed output where the
                          reference harness forbids it (JS)
        ``timeout``       wall clock or CPU time limit hit (compile or run)
        ``compile_error`` the compiler (or Python/JS parser) rejected the program
        ``runtime_error`` crashed for another reason (exception, segfault, out of memory, ...)
        ``killed``        stopped by the supervisor: output cap, scratch-dir watchdog, or an
                          internal sandbox error (see ``detail``)
    """

    status: str
    passed: bool
    returncode: int | None
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    language: str = ""
    backend: str = ""
    phase: str = ""          # "compile" or "run": the step that decided the status
    detail: str = ""         # one line saying why
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
