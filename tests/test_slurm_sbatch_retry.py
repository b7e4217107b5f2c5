"""sbatch retries on the real test cluster, through an `sbatch` wrapper first on PATH: failing
transiently twice then succeeding gives one job per script and no duplicates (also when the lost
reply came after a real submission); a permanent failure half-way leaves nothing queued."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.rundir import RunDir, read_json
from test_slurm_pipeline import eval_recipe

pytestmark = [pytest.mark.slurm]
BENCH = ["humanevalsynthesize-python"]

# $MODE: fail-twice (error without submitting, calls 1-2), lost-reply (call 1 submits, then
# reports a timeout), permanent-second (call 2 fails for good). Counter in $STATE/calls.
WRAPPER = """#!/bin/bash
n=$(( $(cat "$STATE/calls" 2>/dev/null || echo 0) + 1 ))
echo $n > "$STATE/calls"
echo "$@" >> "$STATE/argv"
case "$MODE:$n" in
  fail-twice:1|fail-twice:2)
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1;;
  lost-reply:1)
    {real} "$@" > /dev/null
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1;;
  permanent-second:2)
    echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2
    exit 1;;
esac
exec {real} "$@"
"""


@pytest.fixture
def wrapper(slurm, tmp_path, monkeypatch):
    real = shutil.which("sbatch")
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "sbatch").write_text(WRAPPER.format(real=real))
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STATE", str(state))
    profile = tmp_path / "retrying.yaml"
    text = (Path(__file__).resolve().parent.parent / "cluster_profiles" / "test-cluster.yaml").read_text()
    profile.write_text(text.replace("name: test-cluster", "name: retrying")
                       + "sbatch_retry: {attempts: 4, backoff_s: 0.2, max_backoff_s: 1}\n")
    return profile, state


def _queued(run_name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%F|%k"], capture_output=True, text=True, check=True).stdout
    return sorted({line.split("|")[0] for line in out.splitlines() if f"mftlaunch:{run_name}-" in line})


def _submit(tmp_path, data_dir, profile, name, capsys) -> tuple[int, str]:
    code = main(["submit", str(eval_recipe(tmp_path, data_dir, BENCH, name)), "--profile", str(profile)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _run_dir(out: str) -> RunDir:
    return RunDir(next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: ")))


@pytest.mark.parametrize("mode", ["fail-twice", "lost-reply"])
def test_transient_failures_give_one_job_per_script(wrapper, tmp_path, data_dir, capsys, monkeypatch, mode):
    profile, state = wrapper
    monkeypatch.setenv("MODE", mode)
    code, out = _submit(tmp_path, data_dir, profile, f"retry-{mode}", capsys)
    assert code == 0, out
    run_dir = _run_dir(out)
    try:
        manifest = read_json(run_dir.manifest_file)
        ids = sorted(e["id"] for entries in manifest["jobs"].values() for e in entries)
        assert len(ids) == 3  # generate, evaluate, collect
        assert _queued(run_dir.root.name) == ids  # no duplicate in the queue
        calls = int((state / "calls").read_text())
        assert calls == (5 if mode == "fail-twice" else 3), (state / "argv").read_text()
        # a lost reply is found in the queue at once; a plain failure is tried again after a pause
        assert ("had gone through after all" if mode == "lost-reply" else "retrying in") in out
    finally:
        subprocess.run(["scancel", "-n", "mft.retry-" + mode + ".generate,mft.retry-" + mode + ".evaluate,"
                        "mft.retry-" + mode + ".collect"], check=False)


def test_permanent_failure_leaves_nothing_queued(wrapper, tmp_path, data_dir, capsys, monkeypatch):
    profile, state = wrapper
    monkeypatch.setenv("MODE", "permanent-second")
    code, out = _submit(tmp_path, data_dir, profile, "retry-permanent", capsys)
    assert code == 1 and "Invalid account" in out, out
    assert int((state / "calls").read_text()) == 2  # no retry of a real error
    run_dir = next((tmp_path / "runs").iterdir())
    assert _queued(run_dir.name) == []
    assert read_json(run_dir / "manifest.json")["status"].startswith("submit failed; cancelled")
