"""Go: ``go test -c`` in GOPATH mode (offline, Debian's testify under /usr/share/gocode),
then the test binary. A second test file adds ``TestMain``, which prints the marker only
when ``m.Run()`` returned 0 and, with the appended tests named, every ``TestXxx`` of them
called the per-run tick at its start (eval_sandbox.completeness): a generation whose ``init()``
sets ``-test.run`` to match nothing, or lists instead of running, scores ``failed``.

The shared Go build cache is bound read-write for the compile step only (the toolchain
writes hash-keyed outputs there; the program's code does not run at compile time, and cgo
is disabled); the test binary runs without it.
"""
from __future__ import annotations

from .. import completeness, harnesses
from ..backends import Mounts
from .base import Context, Runner, Step, Verdict, base_env, write


class GoRunner(Runner):
    language = "go"

    def build(self, program, ctx: Context):
        tick, expected = f"mftTick{ctx.token}", -1
        if ctx.tests is not None:
            done = completeness.go(program, ctx.tests, tick)
            program, expected = done.program, done.expected
        write(ctx, "main_test.go", program)
        write(ctx, "zz_mft_harness_test.go", harnesses.GO_HARNESS.format(tick=tick, expected=expected))
        cache = ctx.paths.go_cache()
        env = base_env(ctx)
        env.update({"GO111MODULE": "off", "GOPATH": ctx.paths.gopath(), "GOCACHE": cache,
                    "CGO_ENABLED": "0", "GOFLAGS": "", "GOMAXPROCS": "4", "GOPROXY": "off",
                    "GOENV": "off"})
        go = ctx.paths.go()
        compile_ = [go, "test", "-c", "-vet=off", "-o", f"{ctx.cwd}/prog.test",
                    f"{ctx.cwd}/main_test.go", f"{ctx.cwd}/zz_mft_harness_test.go"]
        run_env = base_env(ctx)
        run_env["GOMAXPROCS"] = "4"
        run = [f"{ctx.cwd}/prog.test", "-test.count=1"]
        return (Step(compile_, ctx.compile_limits, env, Mounts(rw=[cache])),
                Step(run, ctx.run_limits, run_env, stdin=(ctx.marker + "\n").encode(), watch_marker=True))

    def classify_run(self, res, stdout, stderr):
        disabled = self.tests_disabled(stderr)
        if disabled:
            return disabled
        if "--- FAIL" in stdout or "--- FAIL" in stderr:
            return Verdict("failed", "test failed")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        if "panic:" in stdout or "panic:" in stderr:
            return Verdict("runtime_error", "panic")
        return Verdict("runtime_error", self.exit_detail(res))
