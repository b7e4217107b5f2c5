"""How `python -m jobs.run` ends: the element's exit code stands even when the interpreter's
teardown would abort (as torch's gloo threads sometimes make it do after a finished job)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from launcher.contract import REQUEUE_EXIT_CODE

#: an atexit abort stands in for a C++ thread that kills the interpreter's teardown with SIGABRT
ABORTING_TEARDOWN = "import atexit, os, sys\natexit.register(os.abort)\nprint('element recorded', end='')\n"


def _run(ending: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ABORTING_TEARDOWN + ending], capture_output=True, text=True,
                          timeout=60)


def test_the_stand_in_really_aborts_a_normal_exit():
    assert _run("sys.exit(0)").returncode == -6


@pytest.mark.parametrize("code", [0, 1, REQUEUE_EXIT_CODE])
def test_exit_code_and_output_survive_an_aborting_teardown(code):
    proc = _run(f"from jobs.run import exit_without_teardown\nexit_without_teardown({code})")
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "element recorded"
