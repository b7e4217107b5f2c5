"""Preemption on the real test cluster, mid-training → the ranks save, the batch script requeues,
the next attempt resumes, and the final adapter is identical to an uninterrupted run's:
- SIGCONT + SIGTERM sent to the job's tasks with scancel (what slurmctld sends when it preempts:
  a signal to every step, not the batch shell); `logs -f` follows both attempts and ends with the run;
- a real preemption: a job in the cluster's `urgent` partition (higher PriorityTier, PreemptMode
  REQUEUE, GraceTime 60 on main) takes the node."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from launcher.rundir import RunDir, read_json
from test_slurm_pipeline import run_log, submit, wait_final
from test_train_resume import TINY_MFT

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
STEPS = 40


def _train_recipe(tmp: Path, name: str, steps: int = STEPS) -> Path:
    recipe = {
        "name": name,
        "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "output_root": str(tmp / "runs"),
        "stages": {"train": {
            "datasets": [{"path": str(TINY_MFT / n)} for n in ("codegen", "explain", "unittest")],
            "seq_length": 64, "padding_mode": "dynamic", "validation_split": 0.1,
            "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
            "learning_rate": 2e-3, "min_lr": 1e-4, "num_warmup_steps": 2, "max_steps": steps,
            "log_interval": 1, "evaluation_steps": 1000, "checkpointing_steps": 1000, "saving_limit": 2,
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": "all-linear"},
            "gradient_checkpointing": False,
            "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"},
            "resources": {"gpus_per_node": 0, "cpus_per_task": 1, "time": "00:10:00", "max_restarts": 2},
        }},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def preempt_after(run: RunDir, pattern: str, timeout: float = 300) -> str:
    """Once `pattern` is in the log, signal the element's tasks as a preemption does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if re.search(pattern, run_log(run)):
            job_id = read_json(run.element_state("train", 0))["job_id"]
            for sig in ("CONT", "TERM"):
                subprocess.run(["scancel", f"--signal={sig}", job_id], check=True)
            return job_id
        time.sleep(0.1)
    pytest.fail(f"no {pattern!r} in {timeout}s:\n{run_log(run)[-2000:]}")


def release_when_requeued(slurm, job_id: str, run: RunDir, stage: str, timeout: float = 180) -> None:
    """Once the element recorded its requeue, start it again without Slurm's BeginTime hold."""
    deadline = time.time() + timeout
    while run.read_state(stage, 0).get("state") != "REQUEUED":
        if time.time() > deadline:
            pytest.fail(f"job {job_id} was not requeued:\n{run_log(run)[-3000:]}")
        time.sleep(0.5)
    slurm.release_requeued(job_id, timeout=timeout)


def test_sigterm_mid_training_saves_requeues_and_resumes_exactly(slurm, tmp_path, capsys):
    whole = submit(_train_recipe(tmp_path, "whole"), capsys)
    preempted = submit(_train_recipe(tmp_path, "preempted"), capsys)
    follower = subprocess.Popen([sys.executable, "-m", "launcher.cli", "logs", str(preempted.root), "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job_id = preempt_after(preempted, r"\[train\] step 2/")
    release_when_requeued(slurm, job_id, preempted, "train")
    for run in (whole, preempted):
        rows = wait_final(run, timeout=600)
        assert rows[0]["state"] == "COMPLETED" and rows[0]["done"], run_log(run)[-3000:]
    # `logs -f` followed both attempts and ended by itself with the run
    followed, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0
    assert "attempt 1" in followed and "attempt 2" in followed and "[train] done" in followed, followed[-3000:]

    log = run_log(preempted)
    assert "requeueing job" in log, log[-3000:]
    stopped = re.search(r"resumed from step_(\d+)", log)
    assert stopped and 2 <= int(stopped.group(1)) < STEPS, log[-3000:]
    assert preempted.read_state("train", 0)["reason"].endswith("(SIGTERM)")
    assert preempted.done_record("train", 0)["restarts"] == 1

    a = load_file(str(Path(whole.done_record("train", 0)["checkpoint"]) / "trainable.safetensors"))
    b = load_file(str(Path(preempted.done_record("train", 0)["checkpoint"]) / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _adapter(run_dir: RunDir) -> dict:
    return load_file(str(Path(run_dir.done_record("train", 0)["checkpoint"]) / "trainable.safetensors"))


def test_real_preemption_by_an_urgent_job_resumes_exactly(slurm, tmp_path, capsys):
    # long enough for slurmctld to schedule the urgent job (sched_interval 5 s) while it trains
    whole = submit(_train_recipe(tmp_path, "calm", steps=400), capsys)
    assert wait_final(whole, timeout=600)[0]["done"], run_log(whole)[-3000:]
    preempted = submit(_train_recipe(tmp_path, "bumped", steps=400), capsys)
    deadline = time.time() + 300
    while not re.search(r"\[train\] step 2/", run_log(preempted)):
        assert time.time() < deadline, run_log(preempted)[-2000:]
        time.sleep(0.1)
    state = preempted.read_state("train", 0)
    node = subprocess.run(["squeue", "-h", "-j", state["job_id"], "-o", "%N"], capture_output=True, text=True,
                          check=True).stdout.strip()
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-w", node, "--exclusive", "-t", "2",
                             "-o", str(tmp_path / "urgent_%j.out"), "--wrap", "sleep 3"],
                            capture_output=True, text=True, check=True).stdout.strip()
    try:
        release_when_requeued(slurm, state["job_id"], preempted, "train")
        rows = wait_final(preempted, timeout=600)
    finally:
        subprocess.run(["scancel", urgent], check=False)
    log = run_log(preempted)
    assert rows[0]["state"] == "COMPLETED" and rows[0]["done"], log[-3000:]
    assert "requeueing job" in log and re.search(r"resumed from step_\d+", log), log[-3000:]
    assert preempted.read_state("train", 0)["reason"].endswith("(SIGTERM)")
    a, b = _adapter(whole), _adapter(preempted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
