"""An sbatch issued from inside a real Slurm job: the enclosing job's variables are stripped (a
plain nested sbatch inherits SLURM_MEM_PER_CPU and its srun refuses to start), the user's own
SBATCH_* defaults are kept, and `plan` names the ones it keeps."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.cli import main

pytestmark = [pytest.mark.slurm]
REPO = Path(__file__).resolve().parent.parent

NESTED = """#!/bin/bash
#SBATCH -N1 -n1 --mem=100M -o {out}/nested_%j.txt
echo "nested job $SLURM_JOB_ID named $SLURM_JOB_NAME"
srun -n1 true && echo "srun ok"
"""


def _wait_for(path_glob: Path, text: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = "".join(p.read_text(errors="replace") for p in path_glob.parent.glob(path_glob.name))
        if text in found or "fatal" in found:
            return found
        time.sleep(0.5)
    pytest.fail(f"nothing matching {path_glob} said {text!r} in {timeout}s")


def _outer_job(tmp: Path, nested_submit: str) -> str:
    (tmp / "nested.sh").write_text(NESTED.format(out=tmp))
    outer = subprocess.run(
        ["sbatch", "--parsable", "-N1", "-n1", "--mem-per-cpu=50M", "-o", str(tmp / "outer_%j.txt"),
         "--export=ALL,SBATCH_JOB_NAME=user-default", "--wrap", nested_submit],
        capture_output=True, text=True, check=True, cwd=REPO)
    assert outer.stdout.strip().isdigit()
    return _wait_for(tmp / "nested_*.txt", "srun ok")


def test_nested_submission_through_the_launcher_starts_and_keeps_user_defaults(slurm, tmp_path):
    code = (f"from pathlib import Path; from launcher import slurm; "
            f"print(slurm.sbatch(Path('{tmp_path}/nested.sh')))")
    log = _outer_job(tmp_path, f"{sys.executable} -c \"{code}\"")
    assert "srun ok" in log, log
    assert "named user-default" in log, log


def test_plain_nested_sbatch_shows_the_problem(slurm, tmp_path):
    log = _outer_job(tmp_path, f"sbatch --parsable {tmp_path}/nested.sh")
    assert "mutually exclusive" in log and "srun ok" not in log, log


def test_plan_names_the_kept_sbatch_defaults(slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SBATCH_QOS", "normal")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert main(["plan", str(REPO / "recipes" / "tiny_demo.yaml"), "--profile", "test-cluster"]) == 0
    out = capsys.readouterr().out
    assert "kept from your environment" in out and "SBATCH_QOS=normal" in out, out
    assert "SLURM_ARRAY_TASK_ID" not in out
