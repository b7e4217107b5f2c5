"""Python: ``python3 -I -B -c <driver>``; the driver exec()s prog.py with empty globals.

With the appended tests named, prog.py gets a per-run tick call after them and tests.py holds
them alone, so the driver can check they parse unchanged and ran to the end
(eval_sandbox.completeness)."""
from __future__ import annotations

from .. import completeness, harnesses
from .base import Context, Runner, Step, Verdict, base_env, write


class PythonRunner(Runner):
    language = "python"

    def build(self, program, ctx: Context):
        tick = b"\n"
        if ctx.tests is not None:
            name = f"__mft_tests_done_{ctx.token}"
            done = completeness.python(program, ctx.tests, name)
            program = done.program
            write(ctx, "tests.py", ctx.tests)
            tick = f"{name} {done.expected}\n".encode()
        write(ctx, "prog.py", program)
        argv = [ctx.paths.python(), "-I", "-B", "-c", harnesses.PY_DRIVER]
        return None, Step(argv, ctx.run_limits, base_env(ctx),
                          stdin=(ctx.marker + "\n").encode() + tick, watch_marker=True)

    def classify_run(self, res, stdout, stderr):
        rc = res.returncode
        if rc == 2:
            return Verdict("compile_error", "syntax error")
        if rc == 3:
            return Verdict("failed", "AssertionError")
        if rc == 4:
            return Verdict("failed", "SystemExit raised before the tests finished")
        if rc == 5:
            return Verdict("failed", "the tests did not run completely: the generation changed how the "
                                     "appended tests parse (swallowed, decorated or merged them)")
        if rc == 6:
            return self.tests_disabled(stderr) or Verdict("failed", "the tests did not run completely")
        if rc == 0:
            return Verdict("failed", "exited with status 0 before the tests finished (no harness marker)")
        if rc == 1:
            last = stderr.strip().splitlines()[-1:] or [""]
            return Verdict("runtime_error", last[0][:200])
        return Verdict("runtime_error", self.exit_detail(res))
