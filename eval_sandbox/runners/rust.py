"""Rust: ``rustc --edition 2021 --test`` against prebuilt rlibs of Debian's ``regex`` and
``md5`` crates and our ``rand`` 0.4 shim (see :mod:`eval_sandbox.toolchain`), linked with
the C harness through ``-Wl,--wrap=main``: the marker is printed only when libtest's main
returned 0, so ``std::process::exit(0)`` inside the solution scores ``failed``. With the
appended tests named, every ``#[test]`` fn of them calls the harness's tick with a per-run token
at its start, and the harness requires as many ticks as there are ``#[test]`` attributes
(eval_sandbox.completeness): a ``#[cfg(any())]`` that switches the test module off, so that
libtest runs 0 tests and exits 0, scores ``failed``. Without named tests, a run in which libtest
ran no test is never a pass either.

``assert!``/``assert_eq!``/``assert_ne!`` are rewritten to ``::std::...!`` so a
``macro_rules! assert_eq`` in the program cannot shadow them.

The compiler is /usr/bin/rustc (Debian), not a rustup toolchain on the caller's PATH: the
rlibs must come from the same compiler, and the sandbox user cannot read /root/.cargo.
"""
from __future__ import annotations

import os
import re

from .. import completeness
from ..backends import Mounts
from .base import Context, Runner, Step, Verdict, base_env, write

_ASSERT = re.compile(r"(?<![\w:$])(assert|assert_eq|assert_ne)!")
_RAN = re.compile(r"^running (\d+) tests?$", re.M)


def harden_asserts(program: str) -> str:
    return _ASSERT.sub(r"::std::\1!", program)


class RustRunner(Runner):
    language = "rust"

    def build(self, program, ctx: Context):
        stdin = (ctx.marker + "\n").encode()
        if ctx.tests is not None:
            done = completeness.rust(program, ctx.tests, f"__mft_tick_{ctx.token}", ctx.tick_token)
            program = done.program
            stdin += f"{done.expected} {ctx.tick_token}\n".encode()
        write(ctx, "test.rs", harden_asserts(program))
        obj = ctx.paths.harness_object()
        deps = ctx.paths.rust_deps()
        argv = [ctx.paths.rustc(), "--edition", "2021", "--test", "-C", "debuginfo=0",
                "--crate-name", "test", "-L", f"dependency={deps['deps_dir']}"]
        for crate, path in sorted(deps["externs"].items()):
            argv += ["--extern", f"{crate}={path}"]
        argv += ["-C", f"link-arg={obj}", "-C", "link-arg=-Wl,--wrap=main",
                 "-o", f"{ctx.cwd}/prog", f"{ctx.cwd}/test.rs"]
        env = base_env(ctx)
        run_env = base_env(ctx)
        run_env.update({"RUST_TEST_THREADS": "2", "RUST_BACKTRACE": "0"})
        mounts = Mounts(ro=[os.path.dirname(deps["deps_dir"]), os.path.dirname(obj)])
        return (Step(argv, ctx.compile_limits, env, mounts),
                Step([f"{ctx.cwd}/prog"], ctx.run_limits, run_env, stdin=stdin, watch_marker=True))

    def accept(self, stdout, stderr):
        ran = _RAN.search(stdout)
        if ran is None or int(ran.group(1)) == 0:
            return Verdict("failed", "libtest ran no test (the tests were switched off)")
        return Verdict("passed")

    def classify_run(self, res, stdout, stderr):
        disabled = self.tests_disabled(stderr)
        if disabled:
            return disabled
        if "test result: FAILED" in stdout or "panicked at" in stdout + stderr:
            return Verdict("failed", "test failed")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        return Verdict("runtime_error", self.exit_detail(res))
