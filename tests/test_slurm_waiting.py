"""Waiting commands on the real test cluster: `--wait` returns on a failed run (with the failure
explained in `status` and the compute side's versions in its state file), on held jobs and on
cancelled ones; without accounting it still returns. A resume after editing the recipe is refused."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from launcher import cli, status
from launcher.cli import main
from launcher.rundir import read_json
from test_slurm_pipeline import eval_recipe, submit

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
BENCH = ["humanevalsynthesize-python", "humanevalsynthesize-go"]


def _data_without_go(tmp: Path, data_dir: Path) -> Path:
    data = tmp / "data"
    shutil.copytree(data_dir, data)
    (data / "humanevalpack" / "go.jsonl").unlink()
    return data


def _job_ids(run) -> list[str]:
    manifest = read_json(run.manifest_file)
    return sorted({e["id"] for entries in manifest["jobs"].values() for e in entries})


def test_submit_wait_returns_1_and_status_says_why(slurm, tmp_path, data_dir, capsys):
    recipe = eval_recipe(tmp_path, _data_without_go(tmp_path, data_dir), BENCH, "failing")
    code = main(["submit", str(recipe), "--profile", "test-cluster", "--wait"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "run did not complete" in out and "generate[1] FAILED" in out
    run_dir = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run directory: "))
    rows = {(r.stage, r.index): r for r in status.read_status(cli.RunDir(run_dir))[0]}
    note = rows[("generate", 1)].note
    assert "exit 1" in note and "go.jsonl" in note, note
    versions = cli.RunDir(run_dir).read_state("generate", 0)["versions"]  # the compute side's own
    assert versions["torch"] and versions["transformers"] and "cuda" in versions, versions

    # resume after editing the recipe is refused with the field named; --force goes on, recorded
    recipe.write_text(recipe.read_text().replace("max_new_tokens: 8", "max_new_tokens: 9"))
    assert main(["resume", run_dir]) == 1
    err = capsys.readouterr().err
    assert "resume refused" in err and "stages.generate.max_new_tokens: 8 → 9" in err, err
    assert main(["resume", run_dir, "--force"]) == 0
    assert "resubmitted generate: [1]" in capsys.readouterr().out
    manifest = read_json(cli.RunDir(run_dir).manifest_file)
    assert len(manifest["attempts"]) == 2 and "max_new_tokens" in manifest["forced_resumes"][0]["config"][0]
    subprocess.run(["scancel", *_job_ids(cli.RunDir(run_dir))], check=True)


def test_wait_returns_3_on_held_jobs_and_1_once_cancelled(slurm, tmp_path, data_dir, capsys):
    run = submit(eval_recipe(tmp_path, data_dir, BENCH[:1], "held"), capsys)
    ids = _job_ids(run)
    subprocess.run(["scontrol", "hold", *ids], check=True)
    assert cli._wait(run, local=False, poll_s=1) == 3
    out = capsys.readouterr().out
    assert "stopped waiting: these wait for someone to act" in out and "generate[0] PENDING" in out, out
    subprocess.run(["scancel", *ids], check=True)
    assert cli._wait(run, local=False, poll_s=1) == 1
    assert "CANCELLED" in capsys.readouterr().out


def test_wait_without_accounting_returns(slurm, tmp_path, data_dir, capsys, monkeypatch):
    """sacct that always fails (accounting disabled): a failed element is ENDED and --wait ends."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    recipe = eval_recipe(tmp_path, _data_without_go(tmp_path, data_dir), BENCH[1:], "noacct")
    code = main(["submit", str(recipe), "--profile", "test-cluster", "--wait"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "sacct unavailable" in out
