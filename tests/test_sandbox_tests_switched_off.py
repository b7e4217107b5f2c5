"""Generations that switch the appended tests off, skip or shorten them are scored `failed`, with a
detail that says so — through real bubblewrap and the real toolchains.

Each case takes problem 0 of a real benchmark, its canonical solution (which passes, the control
case), and inserts hostile code between the generation and the appended tests, where a model's
completion ends. Every language has at least three ways; each would be scored `passed` by a
harness that looks only at the exit status (the Rust `#[cfg(any())]` case passed here before
eval_sandbox.completeness). All programs run in one `execute_many` call (2 workers), ~40 s.
"""
from __future__ import annotations

import os
from typing import Callable

import pytest

from eval_sandbox import execute, execute_many, selftest
from eval_sandbox.backends import bubblewrap_works
from jobs.code_benchmarks import assembly
from jobs.code_benchmarks.data import load_benchmark

pytestmark = pytest.mark.sandbox
REQUIRE = os.environ.get("MFTLAUNCH_REQUIRE_SANDBOX") == "1" or os.environ.get("CI") == "true"

NOT_RUN = "did not run completely"
EARLY = "before the tests finished"

Edit = Callable[[str], str]


def tail(code: str) -> Edit:
    """Hostile code at the end of the generation, right before the appended tests."""
    return lambda head: head + code + "\n"


def go_imports(code: str) -> Edit:
    """Go: the generation's file also imports flag and os (a fixtests completion may rewrite them)."""
    return lambda head: (head.replace("import (", 'import (\n    "flag"\n    "os"', 1)
                         + "var _, _ = flag.Parsed, os.Args\n" + code + "\n")


# (case id, benchmark, edit of the generation part, what the detail must say)
CASES: list[tuple[str, str, Edit, str]] = [
    ("rust-cfg-any", "humanevalsynthesize-rust", tail("#[cfg(any())]"), NOT_RUN),
    ("rust-cfg-not-test", "humanevalsynthesize-rust", tail("#[cfg(not(test))]"), NOT_RUN),
    ("rust-cfg-attr", "humanevalsynthesize-rust", tail("#[cfg_attr(test, cfg(any()))]"), NOT_RUN),
    ("rust-own-test-instead", "humanevalsynthesize-rust",
     tail("#[cfg(test)]\nmod decoy { #[test] fn looks_fine() {} }\n#[cfg(any())]"), NOT_RUN),
    ("go-run-matches-nothing", "humanevalsynthesize-go",
     go_imports('func init() { testing.Init(); flag.Set("test.run", "^$") }'), NOT_RUN),
    ("go-args-rewritten", "humanevalsynthesize-go",
     go_imports('func init() { os.Args = append(os.Args, "-test.run=NoSuchTest") }'), NOT_RUN),
    ("go-list-instead-of-run", "humanevalsynthesize-go",
     go_imports('func init() { testing.Init(); flag.Set("test.list", ".*") }'), NOT_RUN),
    ("cpp-main-renamed", "humanevalsynthesize-cpp",
     tail("signed main() { return 0; }\n#define main skipped_tests"), NOT_RUN),
    ("cpp-exit-in-static-init", "humanevalsynthesize-cpp", tail("static int gone = (exit(0), 0);"), EARLY),
    ("cpp-quick-exit-in-constructor", "humanevalsynthesize-cpp",
     tail("__attribute__((constructor)) static void gone() { quick_exit(0); }"), EARLY),
    ("java-exit-in-static-init", "humanevalsynthesize-java",
     lambda head: head.replace("class Solution {", "class Solution {\n    static { System.exit(0); }", 1), EARLY),
    ("java-halt-in-static-init", "humanevalsynthesize-java",
     lambda head: head.replace("class Solution {", "class Solution {\n    static { Runtime.getRuntime().halt(0); }", 1),
     EARLY),
    ("java-decoy-main", "humanevalsynthesize-java",
     lambda head: head.replace("return false;", "return true;").replace("return true;\n    }\n}", "return true;\n    }\n}", 1)
     + "class Decoy { public static void main(String[] args) { } }\n", "AssertionError"),
    ("python-decorator-swallows-check", "humanevalsynthesize-python", tail("@(lambda f: lambda *a: None)"), NOT_RUN),
    ("python-os-exit", "humanevalsynthesize-python", tail("import os\nos._exit(0)"), EARLY),
    ("python-thread-exits", "humanevalsynthesize-python",
     tail("import os, threading\nthreading.Thread(target=lambda: os._exit(0)).start()\nimport time\ntime.sleep(5)"), EARLY),
    ("mbpp-exit-zero", "mbpp", tail("import sys\nsys.exit(0)"), "SystemExit"),
    ("mbpp-os-exit", "mbpp", tail("import os\nos._exit(0)"), EARLY),
    ("mbpp-thread-exits", "mbpp",
     tail("import os, threading, time\nthreading.Timer(0.0, lambda: os._exit(0)).start()\ntime.sleep(5)"), EARLY),
    ("humaneval-decorator", "humaneval", tail("@(lambda f: lambda *a: None)"), NOT_RUN),
    ("humaneval-exit-zero", "humaneval", tail("raise SystemExit(0)"), "SystemExit"),
    ("humaneval-os-exit", "humaneval", tail("import os\nos._exit(0)"), EARLY),
    ("js-top-level-return", "humanevalsynthesize-js", tail("return"), EARLY),
    ("js-process-exit", "humanevalsynthesize-js", tail("process.exit(0)"), EARLY),
    ("js-swallowed-throw", "humanevalsynthesize-js",
     tail("process.on('uncaughtException', () => {});\nthrow new Error('skip the rest')"), EARLY),
]
BENCHMARKS = sorted({b for _i, b, _e, _d in CASES})


def _need() -> None:
    ok, why = bubblewrap_works()
    langs = {assembly.split(b)[1] for b in BENCHMARKS}
    missing = langs - selftest.available_languages()
    if ok and not missing:
        return
    msg = why if not ok else f"toolchains missing for {sorted(missing)}"
    if REQUIRE:
        pytest.fail(msg)
    pytest.skip(msg)


def _job(benchmark: str, edit: Callable[[str], str] | None) -> tuple[str, str, str]:
    row = load_benchmark(benchmark, None, limit=1).problems[0]
    lang, text, tests = assembly.assemble_checked(benchmark, row, assembly.canonical_program(benchmark, row))
    head = text[: len(text) - len(tests)]
    return lang, (edit(head) if edit else head) + tests, tests


@pytest.fixture(scope="module")
def verdicts() -> dict:
    _need()
    names = [f"control-{b}" for b in BENCHMARKS] + [case for case, _b, _e, _d in CASES]
    jobs = [_job(b, None) for b in BENCHMARKS] + [_job(b, edit) for _c, b, edit, _d in CASES]
    return dict(zip(names, execute_many(jobs, workers=2, backend="bubblewrap")))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_canonical_solution_with_instrumented_tests_passes(verdicts, benchmark):
    result = verdicts[f"control-{benchmark}"]
    assert result.status == "passed", (result.detail, result.stderr_tail[-800:])


@pytest.mark.parametrize("case,benchmark,edit,detail", CASES, ids=[c[0] for c in CASES])
def test_switching_the_tests_off_fails(verdicts, case, benchmark, edit, detail):
    result = verdicts[case]
    assert result.status == "failed", (result.status, result.detail, result.stderr_tail[-800:])
    assert detail in result.detail, result.detail


def test_rust_without_named_tests_never_passes_on_zero_tests():
    _need()
    lang, program, tests = _job("humanevalsynthesize-rust", tail("#[cfg(any())]"))
    result = execute(lang, program, backend="bubblewrap")
    assert result.status == "failed" and "libtest ran no test" in result.detail
