"""Proof that the appended tests ran completely: per-run "ticks" inserted into the test code.

A generation comes before its tests in one program, so it can try to switch them off instead of
passing them: a Rust `#[cfg(any())]` in front of the test module (libtest then runs 0 tests and
exits 0), a Go `init()` that sets `-test.run` to match nothing, a C++ `#define main` that
renames the test's `main`, a Python decorator that swallows `def check`. The runner therefore
instruments the *tests* (the text the assembly appended, which `execute(..., tests=...)` names)
with calls that only the test code can make:

- each call passes a per-run random token that appears nowhere but in the instrumented test
  text, so generated code cannot make the calls itself;
- the harness counts the calls and prints the result marker only when the count equals the
  number the tests must make (`Instrumented.expected`, never 0):

  | language | where the tick goes | expected |
  |---|---|---|
  | rust | first statement of every `#[test]` fn of the appended module | number of `#[test]` |
  | go | first statement of every `func TestXxx(t *testing.T)` | number of Test functions |
  | cpp | last statement of the test's `main` (before a final `return 0;`) | 1 |
  | java | last statement of the test class's `main` | 1 |
  | python | a statement after the last test (and the driver checks the tests parse unchanged) | 1 |
  | js | a statement after the last test (`<name>_done()`, see the JS runner) | 1 |

A test that starts and fails panics/throws (scored failed); so a tick at the start of every
test (Rust, Go) plus exit status 0 means every test ran to its end, and a tick at the end (C++,
Java, Python, JS) means control reached the end of the tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


class InstrumentError(ValueError):
    """The tests do not have the shape this module knows (a bug or new benchmark data, never the
    generation's doing: only the appended tests are inspected)."""


@dataclass(frozen=True)
class Instrumented:
    program: str        # the full program, its tests part instrumented
    expected: int       # ticks a complete run makes


def split_tests(program: str, tests: str) -> str:
    """The generation part of `program` (which must end with `tests`)."""
    if not tests.strip() or not program.endswith(tests):
        raise InstrumentError("the program does not end with the tests it was given")
    return program[: len(program) - len(tests)]


def _skip_literal(text: str, i: int) -> int:
    """Index after the string/char literal or comment starting at `i` (C-like languages)."""
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end == -1 else end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end == -1 else end + 2
    quote = text[i]
    j = i + 1
    while j < len(text) and text[j] != quote:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def matching_brace(text: str, open_at: int, char_literals: bool = True) -> int:
    """Index of the `}` closing the `{` at `open_at`, skipping strings and comments."""
    depth = 0
    i = open_at
    quotes = "\"'" if char_literals else "\""
    while i < len(text):
        c = text[i]
        if c in quotes or text.startswith("//", i) or text.startswith("/*", i):
            i = _skip_literal(text, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InstrumentError("unbalanced braces in the tests")


def _insert_at_starts(tests: str, pattern: re.Pattern, tick: str) -> tuple[str, int]:
    """Insert `tick` right after the `{` ending every match of `pattern`."""
    out, last, count = [], 0, 0
    for match in pattern.finditer(tests):
        out += [tests[last: match.end()], tick]
        last = match.end()
        count += 1
    out.append(tests[last:])
    return "".join(out), count


_RUST_TEST_FN = re.compile(r"#\[test\](?:\s+|//[^\n]*\n|#\[[^\]]*\])*(?:pub\s+)?fn\s+\w+\s*\(\s*\)\s*(?:->[^{]*)?\{")


def rust(program: str, tests: str, name: str, token: str) -> Instrumented:
    """Tick at the start of each `#[test]` fn; the extern declaration goes after the tests."""
    head = split_tests(program, tests)
    expected = tests.count("#[test]")
    tick = f" unsafe {{ crate::{name}(b\"{token}\\0\".as_ptr()); }}"
    body, found = _insert_at_starts(tests, _RUST_TEST_FN, tick)
    if found != expected or expected == 0:
        raise InstrumentError(f"found {found} test functions for {expected} #[test] attributes")
    decl = f'\nextern "C" {{ #[link_name = "mft_sandbox_tick"] fn {name}(token: *const u8); }}\n'
    return Instrumented(head + body + decl, expected)


_GO_TEST_FN = re.compile(r"(?m)^func\s+Test\w*\s*\(\s*\w+\s+\*testing\.T\s*\)\s*\{")


def go(program: str, tests: str, name: str) -> Instrumented:
    """Tick at the start of each `func TestXxx(t *testing.T)`; `name` is defined by the harness."""
    head = split_tests(program, tests)
    body, found = _insert_at_starts(tests, _GO_TEST_FN, f" {name}();")
    if found == 0 or found != len(re.findall(r"(?m)^func\s+Test", tests)):
        raise InstrumentError(f"found {found} instrumentable Test functions")
    return Instrumented(head + body, found)


_CPP_MAIN = re.compile(r"\bint\s+main\s*\([^)]*\)\s*\{")
_FINAL_RETURN = re.compile(r"return\s*0\s*;\s*$")


def cpp(program: str, tests: str, name: str, token: str) -> Instrumented:
    """Tick as the last statement of the test's `main` (before a final `return 0;`)."""
    head = split_tests(program, tests)
    match = _CPP_MAIN.search(tests)
    if match is None:
        raise InstrumentError("the tests have no `int main`")
    close = matching_brace(tests, match.end() - 1)
    inner = tests[match.end(): close]
    ret = _FINAL_RETURN.search(inner.rstrip())
    at = match.end() + (ret.start() if ret else len(inner))
    tick = f"\n{name}(\"{token}\");\n"
    return Instrumented(head + tests[:at] + tick + tests[at:], 1)


_JAVA_MAIN = re.compile(r"public\s+static\s+void\s+main\s*\(\s*(?:final\s+)?String\s*(?:\[\s*\]\s*\w+|\w+\s*\[\s*\]|\.\.\.\s*\w+)\s*\)\s*(?:throws\s+[\w.,\s]+)?\{")


def java(program: str, tests: str, call: str) -> Instrumented:
    """Tick as the last statement of `main` in the tests; `call` is the harness's tick call."""
    head = split_tests(program, tests)
    match = _JAVA_MAIN.search(tests)
    if match is None:
        raise InstrumentError("the tests declare no `public static void main(String[] args)`")
    close = matching_brace(tests, match.end() - 1)
    return Instrumented(head + tests[:close] + f"\n{call};\n" + tests[close:], 1)


def python(program: str, tests: str, name: str) -> Instrumented:
    """A call after the last test (the driver also checks that the tests parse unchanged)."""
    split_tests(program, tests)
    return Instrumented(program + f"\n{name}()\n", 1)
