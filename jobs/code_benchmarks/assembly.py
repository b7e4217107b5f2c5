"""Test-program assembly: (benchmark, problem row, post-processed generation) -> full program.

Reproduces what the reference harness (bigcode-evaluation-harness ``humanevalpack.py``
``process_results``, ``mbpp.py``, ``humaneval.py``, and the ``code_eval`` metric that joins
``candidate + "\\n" + reference``) does before execution; docs/EVALUATION.md states each rule.

``program`` is what generations files hold: the prompt base + completion after
post-processing (e.g. ``doc["prompt"].rstrip() + completion`` for humanevalsynthesize).
``problem`` is the raw JSONL row. The result is ``(language, full_program_text)`` ready for
:func:`eval_sandbox.execute`.

Reference quirks kept on purpose (they change scores, so matching them matters):
* python: the import helper (incl. ``numpy``) is prepended, then the text is ``strip()``ped.
* cpp: everything from the first ``"int main"`` of the generation on is dropped, and the
  21-line helper (with ``#include<boost/any.hpp>``) is prepended.
* java: only the exact text ``"public class Main {\\n    }"`` is removed.
* go: helper packages that are *used* but not imported get an ``import`` block, named by
  the last path component (so a used-but-unimported ``math/rand`` becomes ``"rand"``,
  which does not compile, exactly as in the reference); imports already in the generation
  are dropped from ``test_setup``.
* rust: ``fn main(){}`` and the declaration's lines missing from the generation are
  prepended; a second ``fn main()`` cuts the generation.
* humaneval appends ``check(<entry_point>)`` even when the row's test already calls it
  (HumanEvalPack rows do; calling check twice is harmless).
* mbpp: generation + the ``test_list`` asserts; ``test_setup_code`` is never added (so
  MBPP task 367 cannot pass, as in the reference).
"""
from __future__ import annotations

PYTHON_IMPORTS = [
    "import math",
    "import re",
    "import sys",
    "import copy",
    "import datetime",
    "import itertools",
    "import collections",
    "import heapq",
    "import statistics",
    "import functools",
    "import hashlib",
    "import numpy",
    "import numpy as np",
    "import string",
    "from typing import *",
    "from collections import *",
]

CPP_HELPER = [
    "using namespace std;",
    "#include<stdlib.h>",
    "#include<algorithm>",
    "#include<cmath>",
    "#include<math.h>",
    "#include<numeric>",
    "#include<stdio.h>",
    "#include<vector>",
    "#include<set>",
    "#include<map>",
    "#include<queue>",
    "#include<stack>",
    "#include<list>",
    "#include<deque>",
    "#include<boost/any.hpp>",
    "#include<string>",
    "#include<climits>",
    "#include<cstring>",
    "#include<iostream>",
    "#include<sstream>",
    "#include<fstream>",
]

GO_HELPER = ["math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand", "crypto/md5"]

LANGUAGES = ("python", "java", "js", "cpp", "go", "rust")
FAMILIES = ("humanevalsynthesize", "humanevalfixtests")


def split(benchmark: str) -> tuple[str, str]:
    """'humanevalfixtests-go' -> ('humanevalfixtests', 'go'); 'mbpp' -> ('mbpp', 'python')."""
    if benchmark in ("mbpp", "humaneval"):
        return benchmark, "python"
    family, _, lang = benchmark.partition("-")
    if family not in FAMILIES or lang not in LANGUAGES:
        raise ValueError(f"unknown benchmark {benchmark!r}")
    return family, lang


def tests_of(benchmark: str, problem: dict) -> str:
    """The reference's ``get_reference``: the text joined after ``candidate + "\\n"``."""
    family, _ = split(benchmark)
    if family == "mbpp":
        return "\n".join(problem["test_list"])
    if family == "humaneval":
        return "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
    return "\n" + problem["test"]


def _strip_import_line(line: str) -> str:
    return line.replace("import", "").replace("(", "").replace(")", "").strip()


def _go_candidate(problem: dict, program: str) -> str:
    for line in problem.get("import", "").split("\n"):
        name = _strip_import_line(line).replace('"', "")
        if name and name not in GO_HELPER:
            raise ValueError(f"{problem.get('task_id')}: import {name!r} is not in the Go helper list")
    test_setup = problem["test_setup"] + "\n"
    for line in test_setup.split("\n"):
        pkg = _strip_import_line(line)
        if pkg.startswith('"') and pkg in program:
            test_setup = test_setup.replace(pkg, "")
    whole = test_setup + program + "\n" + tests_of("humanevalfixtests-go", problem)
    used: list[str] = []
    for pkg in GO_HELPER:
        if f'"{pkg}"' in whole:
            continue
        short = pkg.split("/")[-1]
        if short + "." not in whole:
            continue
        for line in whole.split("\n"):
            if short + "." in line and not line.strip().startswith("//"):
                name = f'"{short}"'
                if name not in used:
                    used.append(name)
                break
    block = ""
    if used:
        block = "import (\n" + "\n".join("    " + p for p in used) + "\n)\n"
    if "package main" in program and "package main" in test_setup:
        program = program.replace("package main", "")
    return test_setup + block + program


def _rust_candidate(problem: dict, program: str) -> str:
    out = ""
    if "fn main()" not in program:
        out += "fn main(){}\n"
    for line in problem["declaration"].split("\n"):
        s = line.strip()
        if s in program:
            continue
        if s.startswith("fn") and s.split("(")[0] in program:
            continue
        out += s + "\n"
    program = "fn main()".join(program.split("fn main()")[0:2])
    return out + program


def candidate(benchmark: str, problem: dict, program: str) -> str:
    """The generation after the reference's per-language changes (before the tests)."""
    family, lang = split(benchmark)
    if family in ("mbpp", "humaneval"):
        return program
    if lang == "python":
        return ("\n".join(PYTHON_IMPORTS) + "\n" + program).strip()
    if lang == "cpp":
        return ("\n".join(CPP_HELPER) + "\n" + program.split("int main")[0]).strip()
    if lang == "java":
        return program.replace("public class Main {\n    }", "").strip()
    if lang == "js":
        return program
    if lang == "go":
        return _go_candidate(problem, program)
    if lang == "rust":
        return _rust_candidate(problem, program)
    raise AssertionError(lang)


def assemble(benchmark: str, problem: dict, program: str) -> tuple[str, str]:
    """(language, full program text) for :func:`eval_sandbox.execute`."""
    _, lang = split(benchmark)
    return lang, candidate(benchmark, problem, program) + "\n" + tests_of(benchmark, problem)


def assemble_checked(benchmark: str, problem: dict, program: str) -> tuple[str, str, str]:
    """(language, full program text, the appended tests): with the tests named,
    :func:`eval_sandbox.execute` also requires proof that they ran completely."""
    lang, text = assemble(benchmark, problem, program)
    return lang, text, tests_of(benchmark, problem)


# ----------------------------------------------------------------------------- reference programs

def prompt_base(benchmark: str, problem: dict) -> str:
    """What the model's completion is appended to (reference ``get_prompt_base``)."""
    family, lang = split(benchmark)
    if family == "humanevalfixtests":
        if lang == "rust":
            return "fn main(){}\n" + problem["declaration"]
        return problem["declaration"]
    return problem["prompt"]


def canonical_program(benchmark: str, problem: dict) -> str:
    """A correct generation: ``prompt base + canonical_solution`` (mbpp: ``code``)."""
    family, _ = split(benchmark)
    if family == "mbpp":
        return problem["code"]
    return prompt_base(benchmark, problem) + problem["canonical_solution"]


def buggy_program(benchmark: str, problem: dict) -> str:
    """The buggy program a humanevalfixtests prompt shows: ``declaration + buggy_solution``."""
    family, _ = split(benchmark)
    if family != "humanevalfixtests":
        raise ValueError("buggy solutions exist for humanevalfixtests-* only")
    return prompt_base(benchmark, problem) + problem["buggy_solution"]
