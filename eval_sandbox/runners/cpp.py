"""C++: ``g++ -std=c++17 test.cpp mft_harness.o -Wl,--wrap=main -lcrypto -lssl``, then run.

Hardening of the verdict (the program text precedes the tests in the same file):
* every ``assert(`` outside preprocessor lines is renamed to a per-run random macro that
  calls the harness' ``mft_sandbox_assert_fail`` through a pointer taken *before* the
  program's text, so ``#define assert``, ``NDEBUG`` or an own ``__assert_fail`` cannot
  silence the tests;
* ``--wrap=main`` routes the C runtime through the harness, which prints the marker only
  when the test's ``main`` returned 0 (``exit(0)`` inside the solution scores failed);
* with the appended tests named, their ``main`` calls the harness's tick with a per-run token
  as its last statement (eval_sandbox.completeness), so a ``#define main ...`` that renames the
  test's ``main`` away scores failed.
"""
from __future__ import annotations

import os
import re

from .. import completeness
from ..backends import Mounts
from .base import Context, Runner, Step, Verdict, base_env, write

_ASSERT = re.compile(r"(?<![\w.>:$])assert(\s*\()")


def harden_asserts(program: str, token: str) -> str:
    macro = f"MFT_ASSERT_{token}"
    out = []
    in_directive = False
    for line in program.split("\n"):
        directive = in_directive or line.lstrip().startswith("#")
        in_directive = directive and line.rstrip().endswith("\\")
        out.append(line if directive else _ASSERT.sub(macro + r"\1", line))
    head = (
        'extern "C" void mft_sandbox_assert_fail(const char*, const char*, int);\n'
        f"static void (*const MFT_FAIL_{token})(const char*, const char*, int) = &mft_sandbox_assert_fail;\n"
        f"#define {macro}(e) (static_cast<bool>(e) ? void(0) : MFT_FAIL_{token}(#e, __FILE__, __LINE__))\n"
        'extern "C" void mft_sandbox_tick(const char*);\n'
        f"static void (*const MFT_TICK_{token})(const char*) = &mft_sandbox_tick;\n"
        '#line 1 "test.cpp"\n'
    )
    return head + "\n".join(out)


class CppRunner(Runner):
    language = "cpp"

    def build(self, program, ctx: Context):
        stdin = (ctx.marker + "\n").encode()
        if ctx.tests is not None:
            done = completeness.cpp(program, ctx.tests, f"MFT_TICK_{ctx.token}", ctx.tick_token)
            program = done.program
            stdin += f"{done.expected} {ctx.tick_token}\n".encode()
        write(ctx, "test.cpp", harden_asserts(program, ctx.token))
        obj = ctx.paths.harness_object()
        env = base_env(ctx)
        compile_ = [ctx.paths.gxx(), "-std=c++17", "-o", f"{ctx.cwd}/prog", f"{ctx.cwd}/test.cpp",
                    obj, "-Wl,--wrap=main", "-lcrypto", "-lssl"]
        run = [f"{ctx.cwd}/prog"]
        return (Step(compile_, ctx.compile_limits, env, Mounts(ro=[os.path.dirname(obj)])),
                Step(run, ctx.run_limits, env, stdin=stdin, watch_marker=True))

    def classify_run(self, res, stdout, stderr):
        disabled = self.tests_disabled(stderr)
        if disabled:
            return disabled
        if "Assertion failed" in stderr or "Assertion `" in stderr:
            return Verdict("failed", "assertion failed")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        return Verdict("runtime_error", self.exit_detail(res))
