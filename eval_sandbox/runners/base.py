"""Common parts of the language runners."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import toolchain
from ..backends import Mounts
from ..limits import Limits
from ..process import StepResult


@dataclass
class Context:
    scratch: str          # host path of the scratch dir (files are written here)
    cwd: str              # the same dir as the sandboxed command sees it
    marker: str           # per-run random marker (result channel)
    token: str            # per-run random identifier (for renamed helpers)
    compile_limits: Limits | None
    run_limits: Limits
    paths: toolchain.Paths = field(default_factory=toolchain.Paths)
    tests: str | None = None  # the appended tests (a suffix of the program), when the caller names them
    tick_token: str = ""      # per-run secret the instrumented tests pass to the harness


@dataclass
class Step:
    argv: list[str]
    limits: Limits
    env: dict[str, str]
    mounts: Mounts = field(default_factory=Mounts)
    stdin: bytes = b""
    watch_marker: bool = False


@dataclass
class Verdict:
    status: str
    detail: str = ""


def base_env(ctx: Context) -> dict[str, str]:
    return {
        "PATH": toolchain.SANDBOX_PATH,
        "HOME": ctx.cwd,
        "TMPDIR": ctx.cwd,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # Thread pools sized by the host's core count would trip RLIMIT_NPROC on big nodes.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def write(ctx: Context, name: str, text: str | bytes, mode: int = 0o644) -> str:
    path = os.path.join(ctx.scratch, name)
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    ids = toolchain.sandbox_ids()
    if ids:
        os.chown(path, *ids)
    return os.path.join(ctx.cwd, name)


def text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


class Runner:
    language = "?"

    def build(self, program: str, ctx: Context) -> tuple[Step | None, Step]:
        raise NotImplementedError

    def classify_compile(self, res: StepResult) -> Verdict:
        lines = [l.strip() for l in text(res.stderr + res.stdout).splitlines() if l.strip()]
        errs = [l for l in lines if "error" in l.lower()] or lines
        first = errs[0][:200] if errs else ""
        return Verdict("compile_error", first or "compiler exited with status %s" % res.returncode)

    def tests_disabled(self, stderr: str) -> Verdict | None:
        """The harness said the appended tests did not all run (eval_sandbox.completeness)."""
        for line in stderr.splitlines():
            if line.startswith("mft-sandbox: ") and "appended tests" in line:
                return Verdict("failed", "the tests did not run completely (the generation disabled, skipped "
                                         "or shortened them): " + line[len("mft-sandbox: "):].strip())
        return None

    def accept(self, stdout: str, stderr: str) -> Verdict:
        """The harness printed the marker and exited 0. Languages with extra pass rules
        (JS: no output at all) override this."""
        return Verdict("passed")

    def classify_run(self, res: StepResult, stdout: str, stderr: str) -> Verdict:
        """Called only when the run step was not killed and did not time out, and the
        marker check has not already decided ``passed``."""
        raise NotImplementedError

    # helpers -------------------------------------------------------------------------------
    @staticmethod
    def exit_detail(res: StepResult) -> str:
        sig = res.signal
        if sig:
            return f"killed by signal {sig}"
        return f"exit status {res.returncode}"
