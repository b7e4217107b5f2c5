"""Resource limits for one sandboxed step (compile or run).

Every limit is enforced by the kernel (``setrlimit`` inside the sandbox, applied by
``prlimit(1)`` right before the untrusted command is exec'd) or by the supervising
process in :mod:`eval_sandbox.process` (wall clock, output cap, scratch watchdog).

Compilers (javac, go, rustc, g++) need far more memory, threads and time than the
programs they build, so every language has separate ``compile`` and ``run`` defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    """Limits for one sandboxed step.

    ``None`` means "no limit" for the rlimit fields. ``processes`` is RLIMIT_NPROC; it
    counts threads too (a JVM or the Go runtime starts dozens). Inside bubblewrap's user
    namespace it counts only the processes of that one sandbox (kernel >= 5.14 ucounts);
    see docs/EVALUATION.md for the setuid-bwrap caveat.
    """

    cpu_seconds: int | None = 10              # RLIMIT_CPU, per process
    address_space_bytes: int | None = 2 * GiB  # RLIMIT_AS, per process
    processes: int | None = 64                 # RLIMIT_NPROC (threads count)
    file_size_bytes: int | None = 64 * MiB     # RLIMIT_FSIZE, largest single file
    open_files: int | None = 256               # RLIMIT_NOFILE
    wall_timeout_s: float = 20.0               # whole step, kills the sandbox
    output_cap_bytes: int = 1 * MiB            # stdout+stderr bytes before the step is killed
    scratch_max_bytes: int = 256 * MiB         # watchdog: total bytes in the scratch dir
    scratch_max_files: int = 4096              # watchdog: files + dirs in the scratch dir

    def replace(self, **changes) -> "Limits":
        return dataclasses.replace(self, **changes)

    def prlimit_args(self) -> list[str]:
        """Arguments for ``prlimit(1)`` (soft = hard, so the program cannot raise them)."""
        out = ["--core=0"]
        if self.cpu_seconds is not None:
            # soft < hard: SIGXCPU at the limit (reported as a timeout), SIGKILL 1 s later
            out.append(f"--cpu={int(self.cpu_seconds)}:{int(self.cpu_seconds) + 1}")
        pairs = [
            ("as", self.address_space_bytes),
            ("nproc", self.processes),
            ("fsize", self.file_size_bytes),
            ("nofile", self.open_files),
        ]
        for name, value in pairs:
            if value is not None:
                out.append(f"--{name}={int(value)}:{int(value)}")
        return out


_PY_RUN = Limits(cpu_seconds=10, address_space_bytes=2 * GiB, processes=32, wall_timeout_s=15.0)

#: Defaults per language and phase. ``compile`` is None for interpreted languages.
DEFAULTS: dict[str, dict[str, Limits | None]] = {
    "python": {"compile": None, "run": _PY_RUN},
    "js": {
        "compile": None,
        # V8 reserves a lot of address space up front; 4 GiB is comfortable.
        "run": Limits(cpu_seconds=10, address_space_bytes=4 * GiB, processes=64, wall_timeout_s=15.0),
    },
    "java": {
        "compile": Limits(cpu_seconds=60, address_space_bytes=4 * GiB, processes=256,
                          wall_timeout_s=90.0, file_size_bytes=128 * MiB),
        "run": Limits(cpu_seconds=20, address_space_bytes=4 * GiB, processes=256, wall_timeout_s=20.0),
    },
    "cpp": {
        "compile": Limits(cpu_seconds=60, address_space_bytes=4 * GiB, processes=64,
                          wall_timeout_s=90.0, file_size_bytes=256 * MiB),
        "run": Limits(cpu_seconds=10, address_space_bytes=2 * GiB, processes=32, wall_timeout_s=15.0),
    },
    "go": {
        "compile": Limits(cpu_seconds=120, address_space_bytes=8 * GiB, processes=256,
                          wall_timeout_s=120.0, file_size_bytes=256 * MiB, open_files=1024,
                          scratch_max_bytes=512 * MiB),
        "run": Limits(cpu_seconds=20, address_space_bytes=4 * GiB, processes=128, wall_timeout_s=20.0),
    },
    "rust": {
        "compile": Limits(cpu_seconds=120, address_space_bytes=8 * GiB, processes=256,
                          wall_timeout_s=120.0, file_size_bytes=256 * MiB, open_files=1024,
                          scratch_max_bytes=512 * MiB),
        "run": Limits(cpu_seconds=20, address_space_bytes=4 * GiB, processes=128, wall_timeout_s=20.0),
    },
}


def default_limits(language: str, phase: str = "run") -> Limits | None:
    """Default :class:`Limits` of ``language`` for ``phase`` ("compile" or "run")."""
    try:
        return DEFAULTS[language][phase]
    except KeyError:
        raise ValueError(f"unknown language/phase {language!r}/{phase!r}") from None
