"""JavaScript: ``node --require mft_prelude.js test.js``.

Pass rule as in the reference harness (code_eval_octopack): no output at all on stdout or
stderr (a failed ``console.assert`` prints to stderr and does not throw). On top of it,
the prelude's marker: the appended ``<name>_done()`` call must have run, no assertion may
have failed, and the exit code must be 0.
"""
from __future__ import annotations

import re

from .. import completeness, harnesses
from ..backends import Mounts
from .base import Context, Runner, Step, Verdict, base_env, write

_CONSOLE_ASSERT = re.compile(r"\bconsole\s*\.\s*assert\b")


class JsRunner(Runner):
    language = "js"

    def build(self, program, ctx: Context):
        name = f"__mft_assert_{ctx.token}"
        if ctx.tests is not None:
            completeness.split_tests(program, ctx.tests)
        src = _CONSOLE_ASSERT.sub(name, program)
        src = src + f"\n;{name}_done();\n"
        write(ctx, "test.js", src)
        prelude = write(ctx, "mft_prelude.js", harnesses.JS_PRELUDE)
        env = base_env(ctx)
        env["UV_THREADPOOL_SIZE"] = "2"
        mounts = Mounts()
        np = ctx.paths.node_path()
        if np:
            env["NODE_PATH"] = np
            mounts.ro.append(np)
        node = ctx.paths.node()
        argv = [node, "--v8-pool-size=2", "--require", prelude, f"{ctx.cwd}/test.js"]
        stdin = f"{ctx.marker}\n{name}\n".encode()
        return None, Step(argv, ctx.run_limits, env, mounts, stdin=stdin, watch_marker=True)

    def accept(self, stdout, stderr):
        if stdout or stderr:
            return Verdict("failed", "printed output (the reference harness fails any output)")
        return Verdict("passed")

    def classify_run(self, res, stdout, stderr):
        if "Assertion failed" in stderr:
            return Verdict("failed", "console.assert failed")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        if "SyntaxError" in stderr:
            return Verdict("compile_error", "SyntaxError")
        last = [l for l in stderr.strip().splitlines() if l.strip()][-1:] or [""]
        return Verdict("runtime_error", last[0][:200] or self.exit_detail(res))
