"""Ceiling check through the REAL sandbox: canonical solutions pass, buggy ones fail.

Default: a fixed sample of >= 20 problems per benchmark (13 benchmarks: synthesize and
fixtests-buggy for six languages, plus mbpp), every named exception included. The full run
(all 164 x 6 canonical, 164 x 6 buggy, 500 mbpp, plus fixtests-canonical and humaneval) is

    python -m jobs.code_benchmarks.ceiling --full --workers 2 --out ceiling.json

and its figures are recorded in docs/EVALUATION.md.
"""
from __future__ import annotations

import os

import pytest

from eval_sandbox import selftest
from jobs.code_benchmarks import ceiling
from eval_sandbox.backends import bubblewrap_works

REQUIRE = os.environ.get("MFTLAUNCH_REQUIRE_SANDBOX") == "1" or os.environ.get("CI") == "true"


def test_sample_includes_named_problems():
    idx = ceiling.sample_indices(164, 20, [22, 137, 162])
    assert len(idx) >= 20 and {22, 137, 162} <= set(idx) and idx == sorted(set(idx))
    assert idx[0] == 0 and idx[-1] == 163


def test_build_jobs_shapes(data_dir):
    jobs = ceiling.build_jobs(data_dir, ["synthesize", "fixtests-buggy", "mbpp"], False, 20)
    per = {}
    for s, b, task, expect, lang, prog, tests in jobs:
        assert prog.endswith(tests) and tests.strip()
        per.setdefault(b + "/" + s, []).append(task)
        assert expect == ("fail" if s == "fixtests-buggy" else "pass")
    assert len(per) == 13 and all(len(v) >= 20 for v in per.values())
    assert "CPP/22" in per["humanevalsynthesize-cpp/synthesize"]
    assert "Rust/50" in per["humanevalfixtests-rust/fixtests-buggy"]
    assert "367" in per["mbpp/mbpp"]


@pytest.mark.sandbox
@pytest.mark.slow
def test_ceiling_sample(data_dir):
    ok, why = bubblewrap_works()
    langs = tuple(l for l in ceiling.LANGS if l in selftest.available_languages())
    if not ok or len(langs) < len(ceiling.LANGS):
        msg = why or f"toolchains missing: only {langs}; run bash eval_sandbox/toolchains/install.sh"
        (pytest.fail if REQUIRE else pytest.skip)(msg)
    lines = []
    report = ceiling.run(data_dir, full=False, workers=2, languages=langs, log=lines.append)
    groups = report["groups"]
    assert len(groups) == 13
    for name, g in groups.items():
        assert g["n"] >= 20, name
        assert not g["unexpected"], (name, g["unexpected"])
        if g["expect"] == "fail":   # only the known data quirk (CPP/23) may pass while buggy
            assert g["passed"] == len(g["known_misses"]), name
    assert report["summary"]["unexpected"] == 0, "\n".join(lines)
    assert report["summary"]["stale_known"] == [], report["summary"]["stale_known"]
    # the one known MBPP exception really failed for its reason (no test_setup_code)
    mbpp = groups["mbpp/mbpp"]
    assert [m["task_id"] for m in mbpp["known_misses"]] == ["367"]
    assert "NameError" in mbpp["known_misses"][0]["stderr_tail"]
    # the named exceptions of the research notes now pass: real boost, js-md5, the rand 0.4 shim
    for bench, task in (("humanevalsynthesize-cpp", "CPP/22"), ("humanevalsynthesize-cpp", "CPP/137"),
                        ("humanevalsynthesize-js", "JavaScript/162"), ("humanevalsynthesize-rust", "Rust/50")):
        misses = [m["task_id"] for m in groups[f"synthesize/{bench}"]["known_misses"]]
        assert task not in misses or task == "JavaScript/162" and not ceiling.toolchain.node_path()
