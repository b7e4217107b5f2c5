"""Rust: ``rustc --edition 2021 --test`` against prebuilt rlibs of Debian's ``regex`` and
``md5`` crates and our ``rand`` 0.4 shim (see :mod:`eval_sandbox.toolchain`), linked with
the C harness through ``-Wl,--wrap=main``: the marker is printed only when libtest's main
returned 0, so ``std::process::exit(0)`` inside the solution scores ``failed``.

``assert!``/``assert_eq!``/``assert_ne!`` are rewritten to ``::std::...!`` so a
``macro_rules! assert_eq`` in the program cannot shadow them.

The compiler is /usr/bin/rustc (Debian), not a rustup toolchain on the caller's PATH: the
rlibs must come from the same compiler, and the sandbox user cannot read /root/.cargo.
"""
from __future__ import annotations

import os
import re

from ..backends import Mounts
from .base import Context, Runner, Step, Verdict, base_env, write

_ASSERT = re.compile(r"(?<![\w:$])(assert|assert_eq|assert_ne)!")


def harden_asserts(program: str) -> str:
    return _ASSERT.sub(r"::std::\1!", program)


class RustRunner(Runner):
    language = "rust"

    def build(self, program, ctx: Context):
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
                Step([f"{ctx.cwd}/prog"], ctx.run_limits, run_env,
                     stdin=(ctx.marker + "\n").encode(), watch_marker=True))

    def classify_run(self, res, stdout, stderr):
        if "test result: FAILED" in stdout or "panicked at" in stdout + stderr:
            return Verdict("failed", "test failed")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        return Verdict("runtime_error", self.exit_detail(res))
