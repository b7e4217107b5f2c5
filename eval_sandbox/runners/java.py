"""Java: ``javac Main.java MftSandboxHarness.java`` then ``java MftSandboxHarness``.

The harness calls ``Main.main`` (the test's entry point) and prints the marker only if it
returned; ``System.exit(0)`` inside the program therefore scores ``failed``. Like the
reference, no ``-ea`` (the tests throw ``AssertionError`` themselves).
"""
from __future__ import annotations

from .. import harnesses
from .base import Context, Runner, Step, Verdict, base_env, write

_JVM = ["-Xshare:auto", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
        "-XX:CompressedClassSpaceSize=128m", "-XX:ReservedCodeCacheSize=64m",
        "-XX:MaxMetaspaceSize=256m", "-XX:ActiveProcessorCount=2"]


class JavaRunner(Runner):
    language = "java"

    def build(self, program, ctx: Context):
        write(ctx, "Main.java", program)
        write(ctx, "MftSandboxHarness.java", harnesses.JAVA_HARNESS)
        env = base_env(ctx)
        javac = ["javac", *[f"-J{o}" for o in _JVM], "-J-Xmx1g", "-encoding", "UTF-8", "-nowarn",
                 "-d", ctx.cwd, f"{ctx.cwd}/Main.java", f"{ctx.cwd}/MftSandboxHarness.java"]
        java = ["java", *_JVM, "-Xmx1g", "-Xss8m", "-cp", ctx.cwd, "MftSandboxHarness"]
        return (Step(javac, ctx.compile_limits, env),
                Step(java, ctx.run_limits, env, stdin=(ctx.marker + "\n").encode(), watch_marker=True))

    def classify_run(self, res, stdout, stderr):
        if "AssertionError" in stderr:
            return Verdict("failed", "AssertionError")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        exc = [l for l in stderr.splitlines() if "Exception" in l or "Error" in l][:1]
        return Verdict("runtime_error", (exc[0].strip()[:200] if exc else self.exit_detail(res)))
