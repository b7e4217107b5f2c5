"""eval_sandbox through the real sandbox: per-language verdicts, hostile programs, faked passes.

The checks themselves live in eval_sandbox.selftest (so the same code runs here as the calling
user and, in test_sandbox_unprivileged.py, as an unprivileged user). Without bubblewrap these
tests skip, except in CI (CI=true) or with MFTLAUNCH_REQUIRE_SANDBOX=1, where they fail.
"""
from __future__ import annotations

import os

import pytest

import eval_sandbox
from eval_sandbox import Limits, execute, selftest
from eval_sandbox.backends import bubblewrap_works

pytestmark = pytest.mark.sandbox

REQUIRE = os.environ.get("MFTLAUNCH_REQUIRE_SANDBOX") == "1" or os.environ.get("CI") == "true"


def _need(langs=()):
    ok, why = bubblewrap_works()
    missing = set(langs) - selftest.available_languages()
    if ok and not missing:
        return
    msg = why if not ok else f"toolchains missing for {sorted(missing)}: bash eval_sandbox/toolchains/install.sh"
    if REQUIRE:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.mark.parametrize("name", list(selftest.CHECKS))
def test_selftest_check(name):
    check = selftest.CHECKS[name]
    _need(check.languages)
    problems = check.fn("bubblewrap")
    assert problems == [], "\n".join(problems)


def test_result_fields_and_tails():
    _need()
    r = execute("python", "print('x' * 100000)\nassert 1 == 1\n")
    assert r.status == "passed" and r.passed and r.returncode == 0
    assert set(r.to_dict()) >= {"status", "passed", "returncode", "stdout_tail", "stderr_tail", "duration_s"}
    assert 0 < len(r.stdout_tail) <= 4000 and "MFT-SANDBOX" not in r.stdout_tail
    assert r.backend == "bubblewrap" and r.language == "python" and r.duration_s > 0
    assert r.status in eval_sandbox.STATUSES


def test_timeout_argument_and_statuses():
    _need()
    r = execute("python", "import time\ntime.sleep(30)\n", timeout=1)
    assert r.status == "timeout" and not r.passed and r.duration_s < 10
    r = execute("python", "raise ValueError('boom')\n")
    assert r.status == "runtime_error" and "ValueError" in r.stderr_tail
    with pytest.raises(ValueError):
        execute("cobol", "")


def test_compile_timeout_is_reported_as_compile_phase():
    _need(["cpp"])
    # <regex> alone takes g++ well over a second; the compile step gets 0.3 s here
    prog = ("#include <regex>\n#include <string>\n"
            "int main() { std::regex r(\"a+b*\"); return std::regex_match(std::string(\"aab\"), r) ? 0 : 1; }\n")
    r = execute("cpp", prog, compile_limits=Limits(cpu_seconds=60, address_space_bytes=4 << 30,
                                                   processes=64, wall_timeout_s=0.3))
    assert r.status == "timeout" and r.phase == "compile"


def test_js_output_rule_matches_reference():
    _need(["js"])
    # the reference fails any output, even from a correct program
    r = execute("js", "console.log('debug');\nconsole.assert(1 === 1);\n")
    assert r.status == "failed" and "output" in r.detail
    r = execute("js", "const md5 = require('js-md5');\nconsole.assert(md5('') === 'd41d8cd98f00b204e9800998ecf8427e');\n")
    if selftest.toolchain.node_path():
        assert r.status == "passed", r
    else:
        assert r.status != "passed"


def test_missing_toolchain_is_not_scored_as_a_program_failure(monkeypatch):
    _need()
    monkeypatch.setattr(eval_sandbox.toolchain, "python_exe", lambda: "/nonexistent/python3")
    r = execute("python", "assert True\n")
    assert r.status == "killed" and r.detail.startswith("sandbox setup failed")


def test_timeout_argument_raises_cpu_limit_too():
    _need()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2.5:\n    pass\n"
    one_cpu_second = eval_sandbox.default_limits("python").replace(cpu_seconds=1)
    assert execute("python", spin, limits=one_cpu_second).status == "timeout"
    r = execute("python", spin, limits=one_cpu_second, timeout=6)
    assert r.status == "passed", r
