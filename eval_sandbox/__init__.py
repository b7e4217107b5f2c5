"""eval_sandbox: run untrusted generated code (python, js, java, cpp, go, rust) isolated.

Public API (stable)::

    from eval_sandbox import execute, execute_many, Limits, ExecResult

    r = execute("python", program_text)              # program = solution + tests, assembled
    r.status  # "passed" | "failed" | "timeout" | "compile_error" | "runtime_error" | "killed"
    rs = execute_many([("cpp", p1), ("go", p2)], workers=2)   # order preserved

See docs/EVALUATION.md for the isolation model, the verdict channel and its limits.
"""
from .api import execute, execute_many
from .backends import SandboxUnavailable, get_backend
from .limits import DEFAULTS, Limits, default_limits
from .result import STATUSES, ExecResult

LANGUAGES = ("python", "js", "java", "cpp", "go", "rust")

__all__ = ["execute", "execute_many", "Limits", "ExecResult", "STATUSES", "LANGUAGES", "DEFAULTS",
           "default_limits", "get_backend", "SandboxUnavailable"]
