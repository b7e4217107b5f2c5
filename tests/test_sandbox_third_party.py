"""Programs shaped like other suites' run unchanged (docs/EVALUATION.md, "Programs of other suites").

MultiPL-E's shape (written here for the test): the solution and a `main` with the tests in one
file; Java's class is `Problem` and its tests are `assert` statements run with `java -ea`. Each
program has a right and a wrong solution: the right one must pass, the wrong one must not.
"""
from __future__ import annotations

import os

import pytest

from eval_sandbox import execute_many, selftest
from eval_sandbox.backends import bubblewrap_works
from eval_sandbox.runners.java import main_class

pytestmark = pytest.mark.sandbox
REQUIRE = os.environ.get("MFTLAUNCH_REQUIRE_SANDBOX") == "1" or os.environ.get("CI") == "true"

JAVA = """import java.util.*;
import java.lang.reflect.*;
class Problem {
    public static long nextOf(long x) {
        return SOLUTION;
    }
    public static void main(String[] args) {
    assert(nextOf((1l)) == (2l));
    assert(nextOf((41l)) == (42l));
    }

}
"""
JAVA_PUBLIC = JAVA.replace("class Problem", "public class Problem")
PYTHON = """def next_of(x: int) -> int:
    return SOLUTION

def check(candidate):
    assert candidate(1) == 2
    assert candidate(41) == 42

def test_check():
    check(next_of)

test_check()
"""
JS = """function nextOf(x) {
  return SOLUTION;
}

const assert = require('node:assert');

function test() {
  let candidate = nextOf;
  assert.deepEqual(candidate(1),2);
  assert.deepEqual(candidate(41),42);
}

test();
"""
CPP = """#include<assert.h>
#include<bits/stdc++.h>
long next_of(long x) {
    return SOLUTION;
}
int main() {
    auto candidate = next_of;
    assert(candidate((1)) == (2));
    assert(candidate((41)) == (42));
}
"""
PROGRAMS = {"java": JAVA, "java-public": JAVA_PUBLIC, "python": PYTHON, "js": JS, "cpp": CPP}


def test_java_main_class_is_the_one_that_declares_main():
    assert main_class(JAVA, None) == ("Problem", "Problem.java")
    assert main_class(JAVA_PUBLIC, None) == ("Problem", "Problem.java")
    tests = "public class Main {\n    public static void main(String[] args) { }\n}\n"
    decoy = "class Decoy { public static void main(String[] a) { } }\n"
    assert main_class(decoy + tests, tests) == ("Main", "Main.java")
    assert main_class("class Solution { }\n" + decoy, None) == ("Decoy", "Decoy.java")


@pytest.fixture(scope="module")
def results():
    ok, why = bubblewrap_works()
    missing = {"java", "python", "js", "cpp"} - selftest.available_languages()
    if not ok or missing:
        if REQUIRE:
            pytest.fail(why if not ok else f"missing toolchains {sorted(missing)}")
        pytest.skip(why if not ok else f"missing toolchains {sorted(missing)}")
    jobs, names = [], []
    for name, text in PROGRAMS.items():
        lang = name.split("-")[0]
        for verdict, solution in (("right", "x + 1"), ("wrong", "x")):
            jobs.append((lang, text.replace("SOLUTION", solution)))
            names.append((name, verdict))
    return dict(zip(names, execute_many(jobs, workers=2, backend="bubblewrap")))


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_multipl_e_shaped_program_runs_unchanged(results, name):
    right, wrong = results[(name, "right")], results[(name, "wrong")]
    assert right.status == "passed", (right.detail, right.stderr_tail[-600:])
    assert wrong.status in ("failed", "runtime_error"), (wrong.status, wrong.detail)
