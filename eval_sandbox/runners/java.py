"""Java: ``javac <Class>.java MftSandboxHarness.java`` then ``java MftSandboxHarness``.

The runner compiles the class that declares ``public static void main(String[] args)``, whatever
its name: HumanEvalPack's ``Main``, MultiPL-E's ``Problem``. With the appended tests named, that
is the class declared in the tests (a generation cannot substitute its own ``main``); the source
file is named after the program's public class, as javac requires. The harness calls that
``main`` and prints the marker only if it returned and the tick appended as its last statement
ran (eval_sandbox.completeness); ``System.exit(0)`` inside the program therefore scores
``failed``. Assertions are enabled for the main class only (``-ea:<Class>``): MultiPL-E's tests
are ``assert`` statements and it runs ``java -ea``, while HumanEvalPack's tests throw
``AssertionError`` themselves and the reference runs its solutions without ``-ea``.
"""
from __future__ import annotations

import re

from .. import completeness, harnesses
from .base import Context, Runner, Step, Verdict, base_env, write

_JVM = ["-Xshare:auto", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
        "-XX:CompressedClassSpaceSize=128m", "-XX:ReservedCodeCacheSize=64m",
        "-XX:MaxMetaspaceSize=256m", "-XX:ActiveProcessorCount=2"]
_CLASS = re.compile(r"\b((?:(?:public|final|abstract|static|strictfp)\s+)*)(?:class|interface|enum|record)\s+([A-Za-z_$][\w$]*)")
_MAIN = re.compile(r"\bstatic\s+void\s+main\s*\(")


def top_level_types(text: str) -> list[tuple[str, bool, int, int]]:
    """(name, is public, start, end) of every top-level class/interface/enum/record in `text`."""
    out = []
    pos = 0
    while True:
        match = _CLASS.search(text, pos)
        if match is None:
            return out
        brace = text.find("{", match.end())
        if brace == -1:
            return out
        try:
            end = completeness.matching_brace(text, brace)
        except completeness.InstrumentError:
            end = len(text)
        out.append((match.group(2), "public" in match.group(1).split(), match.start(), end))
        pos = end + 1


def main_class(program: str, tests: str | None) -> tuple[str, str]:
    """(class whose main runs, file name javac needs): the tests' class when tests are named."""
    offset = len(program) - len(tests) if tests is not None else 0
    types = top_level_types(program)
    mains = [m.start() for m in _MAIN.finditer(program) if m.start() >= offset]
    name = "Main"
    if mains:
        at = mains[-1]
        name = next((n for n, _pub, start, end in types if start <= at <= end), name)
    public = [n for n, pub, _s, _e in types if pub]
    return name, (public[0] if public else name) + ".java"


class JavaRunner(Runner):
    language = "java"

    def build(self, program, ctx: Context):
        cls, source = main_class(program, ctx.tests)
        expected = -1
        if ctx.tests is not None:
            done = completeness.java(program, ctx.tests, f'MftSandboxHarness.tick("{ctx.tick_token}")')
            program, expected = done.program, done.expected
        write(ctx, source, program)
        write(ctx, "MftSandboxHarness.java",
              harnesses.JAVA_HARNESS.format(token=ctx.tick_token, main_class=cls, expected=expected))
        env = base_env(ctx)
        javac = ["javac", *[f"-J{o}" for o in _JVM], "-J-Xmx1g", "-encoding", "UTF-8", "-nowarn",
                 "-d", ctx.cwd, f"{ctx.cwd}/{source}", f"{ctx.cwd}/MftSandboxHarness.java"]
        java = ["java", *_JVM, "-Xmx1g", "-Xss8m", f"-ea:{cls}", "-cp", ctx.cwd, "MftSandboxHarness"]
        return (Step(javac, ctx.compile_limits, env),
                Step(java, ctx.run_limits, env, stdin=(ctx.marker + "\n").encode(), watch_marker=True))

    def classify_run(self, res, stdout, stderr):
        disabled = self.tests_disabled(stderr)
        if disabled:
            return disabled
        if "AssertionError" in stderr:
            return Verdict("failed", "AssertionError")
        if res.returncode == 0:
            return Verdict("failed", "exited before the tests finished (no harness marker)")
        exc = [l for l in stderr.splitlines() if "Exception" in l or "Error" in l][:1]
        return Verdict("runtime_error", (exc[0].strip()[:200] if exc else self.exit_detail(res)))
