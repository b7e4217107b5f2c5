"""Crash anywhere, CI size: five `kill -9` at seeded random moments of each of train, generate and
evaluate on the tiny model; nothing on disk is half-written and every rerun ends with the outputs
of an uninterrupted run. The 20-trials-per-stage soak is benchmarks/crash_trials.py (figures in
docs/PERFORMANCE.md)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRIALS = 5
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "crash_trials.py"


def load_script():
    spec = importlib.util.spec_from_file_location("crash_trials", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("stage", ["train", "generate", "evaluate"])
def test_kill_9_leaves_whole_files_and_the_rerun_matches(stage, tmp_path, data_dir):
    crash = load_script()
    report = crash.trial_stage(stage, TRIALS, crash.random.Random(7), tmp_path, str(data_dir), limit=2)
    assert report.trials == TRIALS and len(report.killed_at) == TRIALS
    assert report.damaged == [], report.damaged
    assert report.different == [], report.different


def test_a_torn_file_is_reported(tmp_path, data_dir):
    """The check can fail: a results file cut in the middle of a record is named."""
    crash = load_script()
    run_dir = crash.new_run(crash.eval_recipe(tmp_path / "runs", str(data_dir), 1), tmp_path)
    metrics = run_dir.root / "evaluate" / "x" / "metrics_x_tiny.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"pass@1": 0.')
    assert [p for p in crash.damaged(run_dir, "evaluate") if "metrics_x_tiny.json" in p]
