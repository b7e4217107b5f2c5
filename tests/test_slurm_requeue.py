"""USR2 → save → requeue → resume, on the real local Slurm cluster, through the launcher's own
batch scripts (the signal goes to the batch shell, as Slurm's --signal=B:USR2 does)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from launcher.cli import main
from launcher.rundir import RunDir, read_json
from test_slurm_pipeline import run_log, submit, wait_final

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
BENCH = "humanevalsynthesize-python"


def _recipe(tmp: Path, data_dir: Path, name: str, max_restarts: int) -> Path:
    recipe = {
        "name": name,
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp / "runs"),
        "data_dir": str(data_dir),
        "limit": 120,
        "stages": {"generate": {"benchmarks": [BENCH], "max_new_tokens": 48, "batch_size": 1,
                                "resources": {"gpus_per_node": 0, "cpus_per_task": 1, "time": "00:10:00",
                                              "max_restarts": max_restarts}}},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _signal_after_progress(run_dir: RunDir, timeout: float = 180) -> str:
    """Wait until the element generated a few batches, then send USR2 to its batch shell."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = re.findall(rf"generate {BENCH}: (\d+)/120 rows \[", run_log(run_dir))
        if done and int(done[-1]) >= 3:
            job_id = read_json(run_dir.element_state("generate", 0))["job_id"]
            # what `status` shows for the running element: its last progress line, rate and ETA
            line = run_dir.read_progress("generate", 0)
            assert re.fullmatch(rf"generate {BENCH}: \d+/120 rows \[\d\d:\d\d<\d\d:\d\d, .*rows/s, .* new tok/s\]", line), line
            subprocess.run(["scancel", "--signal=USR2", "--batch", job_id], check=True)
            return job_id
        time.sleep(0.3)
    pytest.fail(f"no progress in {timeout}s:\n{run_log(run_dir)[-2000:]}")


def _release_when_requeued(slurm, job_id: str, run_dir: RunDir, timeout: float = 120) -> None:
    """Once the element recorded its requeue, start it again without Slurm's BeginTime hold."""
    deadline = time.time() + timeout
    while read_json(run_dir.element_state("generate", 0)).get("state") != "REQUEUED":
        if time.time() > deadline:
            pytest.fail(f"job {job_id} was not requeued:\n{run_log(run_dir)[-2000:]}")
        time.sleep(0.5)
    slurm.release_requeued(job_id, timeout=timeout)


def test_usr2_saves_requeues_and_resumes(slurm, tmp_path, data_dir, capsys):
    run_dir = submit(_recipe(tmp_path, data_dir, "requeue", max_restarts=2), capsys)
    job_id = _signal_after_progress(run_dir)
    _release_when_requeued(slurm, job_id, run_dir)
    rows = wait_final(run_dir)
    assert rows[0]["state"] == "COMPLETED" and rows[0]["done"], rows
    assert rows[0]["restarts"] == 1
    log = run_log(run_dir)
    assert "requeueing job" in log
    resumed = re.search(rf"resuming {BENCH}: (\d+) of 120 rows already done", log)
    assert resumed and int(resumed.group(1)) >= 3, log[-3000:]
    generations = read_json(run_dir.piece_generations_file("tiny", BENCH, 0, 120))
    assert len(generations) == 120
    assert main(["status", str(run_dir.root), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    # both attempts of the requeued element, each its elapsed time x its allocated CPUs, as sacct says
    assert cost["source"] == "sacct" and cost["elements"][0]["attempts"] == 2, cost
    sacct = subprocess.run(["sacct", "-n", "-P", "-X", "--duplicates", "-j", job_id.split("_")[0], "-S",
                            read_json(run_dir.manifest_file)["submit_time"], "-o", "ElapsedRaw,AllocCPUS"],
                           capture_output=True, text=True, check=True).stdout.split()
    cpu_seconds = sum(int(e) * int(c) for e, c in (line.split("|") for line in sacct))
    assert len(sacct) == 2 and cost["elements"][0]["cpu_seconds"] == cpu_seconds > 0
    assert cost["by_stage"]["generate"]["cpu_hours"] == pytest.approx(cpu_seconds / 3600, abs=1e-6)
    assert cost["total"]["gpu_hours"] == 0


def test_restart_cap_stops_the_loop(slurm, tmp_path, data_dir, capsys):
    run_dir = submit(_recipe(tmp_path, data_dir, "capped", max_restarts=0), capsys)
    _signal_after_progress(run_dir)
    rows = wait_final(run_dir)
    assert rows[0]["state"] == "FAILED" and not rows[0]["done"], rows
    assert "restart cap (0) reached" in run_log(run_dir)

