"""launcher.slurm against fake Slurm commands on PATH: sbatch output parsing, errors, the clean
environment every Slurm command gets, and the squeue/sacct/scancel wrappers' arguments."""
from __future__ import annotations

import os

import pytest

from launcher import slurm
from launcher.inherited_env import kept_sbatch_defaults


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "job.sbatch"
    path.write_text("#!/bin/bash\ntrue\n")
    return path


@pytest.mark.parametrize("stdout,job_id", [
    ("123;cluster\n", "123"),
    ("4567\n", "4567"),
    ("  88;mycluster  \n", "88"),
    ("sbatch: warning: partition default time used\n321;cluster\n", "321"),
])
def test_sbatch_parsable_output(fake, script, stdout, job_id):
    fake.set("sbatch.stdout", stdout)
    assert slurm.sbatch(script) == job_id
    assert fake.argv("sbatch") == [["--parsable", str(script)]]


@pytest.mark.parametrize("stdout", ["", "Submitted batch job\n", "error;cluster\n"])
def test_sbatch_without_a_job_id_is_an_error(fake, script, stdout):
    fake.set("sbatch.stdout", stdout)
    with pytest.raises(slurm.SlurmError, match="could not read a job id"):
        slurm.sbatch(script)


def test_sbatch_failure_raises_with_slurms_message(fake, script):
    fake.set("sbatch.fail_at", "1")
    with pytest.raises(slurm.SlurmError) as err:
        slurm.sbatch(script)
    assert "Invalid account or account/partition combination" in str(err.value)
    assert "(1)" in str(err.value)


def test_sbatch_dependency_and_array_arguments(fake, script):
    assert slurm.sbatch(script, dependency="aftercorr:11:12", array="3,5%2") == "1000"
    assert fake.argv("sbatch") == [[
        "--parsable", "--dependency=aftercorr:11:12", "--kill-on-invalid-dep=yes", "--array=3,5%2", str(script),
    ]]


def test_missing_sbatch_is_a_clear_error(tmp_path, monkeypatch, script):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(slurm.SlurmError, match="sbatch not found on PATH"):
        slurm.sbatch(script)


def test_clean_env_strips_job_variables_but_keeps_slurm_conf_and_user_defaults():
    env = {
        "PATH": "/bin", "HOME": "/home/u", "HF_TOKEN": "x",
        "SLURM_CONF": "/etc/slurm/other.conf", "SLURM_TIME_FORMAT": "relative",
        "SLURM_JOB_ID": "77", "SLURM_JOBID": "77", "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_JOB_ID": "70",
        "SLURM_STEP_ID": "0", "SLURM_CPUS_PER_TASK": "4", "SLURM_MEM_PER_CPU": "1", "SLURM_NTASKS": "2",
        "SLURM_NODELIST": "n1", "SLURM_SUBMIT_DIR": "/home/u", "SLURMD_NODENAME": "n1",
        "SBATCH_ACCOUNT": "proj42", "SBATCH_QOS": "high", "SBATCH_PARTITION": "gpu",
        "SBATCH_MEM_BIND": "local", "SBATCH_MEM_BIND_TYPE": "local",
        "SRUN_CPUS_PER_TASK": "4", "PMIX_RANK": "0", "PMI_SIZE": "2",
        "MASTER_ADDR": "n1", "MASTER_PORT": "29500", "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "0", "MY_SLURM_NOTE": "kept",
    }
    assert slurm.clean_env(env) == {
        "PATH": "/bin", "HOME": "/home/u", "HF_TOKEN": "x", "SLURM_CONF": "/etc/slurm/other.conf",
        "SLURM_TIME_FORMAT": "relative", "MY_SLURM_NOTE": "kept",
        "SBATCH_ACCOUNT": "proj42", "SBATCH_QOS": "high", "SBATCH_PARTITION": "gpu",
    }
    assert env["SLURM_JOB_ID"] == "77"  # the caller's dict is not modified
    assert kept_sbatch_defaults(env) == {"SBATCH_ACCOUNT": "proj42", "SBATCH_PARTITION": "gpu", "SBATCH_QOS": "high"}


def test_outside_a_job_a_users_mem_bind_default_is_kept():
    env = {"PATH": "/bin", "SBATCH_MEM_BIND": "local"}
    assert slurm.clean_env(env) == env


def test_sbatch_runs_in_the_clean_environment(fake, script, monkeypatch):
    """An sbatch issued from inside a job (e.g. a resume from an allocation) must not inherit the
    job's SLURM_* variables, but must still reach the cluster SLURM_CONF names and keep the user's
    SBATCH_* defaults."""
    monkeypatch.setenv("FAKE_SBATCH_RECORD_ENV", "1")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm-test/slurm.conf")
    monkeypatch.setenv("SLURM_JOB_ID", "555")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "550")
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")
    monkeypatch.setenv("MASTER_PORT", "12345")
    slurm.sbatch(script)
    env = fake.calls("sbatch")[0]["env"]
    assert env["SLURM_CONF"] == "/etc/slurm-test/slurm.conf"
    assert env["SBATCH_ACCOUNT"] == "proj42"
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "MASTER_PORT"):
        assert name not in env, name
    assert env["PATH"] == os.environ["PATH"]


def test_squeue_one_call_with_arrays_expanded(fake):
    fake.set("squeue.out", "100_0|RUNNING|n1|1:02|None\n100_1|PENDING||0:00|Priority\n101|PENDING||0:00|Dependency\n")
    rows = slurm.squeue(["101", "100", "100"])
    assert [(r.job_id, r.state, r.node, r.reason) for r in rows] == [
        ("100_0", "RUNNING", "n1", "None"), ("100_1", "PENDING", "", "Priority"), ("101", "PENDING", "", "Dependency"),
    ]
    (argv,) = fake.argv("squeue")
    assert "-r" in argv and argv[argv.index("-j") + 1] == "100,101"


def test_sacct_keeps_the_first_word_of_the_state(fake):
    fake.set("sacct.out", "100_0|COMPLETED|n1|00:01:00\n100_1|CANCELLED by 1001|n2|00:00:05\n101|PREEMPTED|n3|00:10:00\n")
    rows = slurm.sacct(["100", "101"], "2026-01-01T00:00:00")
    assert [(r.job_id, r.state) for r in rows] == [("100_0", "COMPLETED"), ("100_1", "CANCELLED"), ("101", "PREEMPTED")]
    (argv,) = fake.argv("sacct")
    assert argv[argv.index("-S") + 1] == "2026-01-01T00:00:00" and "-X" in argv


def test_sacct_disabled_raises(fake):
    fake.set("sacct.rc", "1")
    fake.set("sacct.err", "sacct: error: Slurm accounting storage is disabled\n")
    with pytest.raises(slurm.SlurmError, match="accounting storage is disabled"):
        slurm.sacct(["100"], "2026-01-01T00:00:00")


def test_empty_id_lists_call_nothing(fake):
    assert slurm.squeue([]) == [] and slurm.sacct([], "x") == []
    slurm.scancel([])
    assert fake.argv("squeue") == fake.argv("sacct") == fake.argv("scancel") == []


def test_scancel_arguments(fake):
    slurm.scancel(["12", "11", "12"])
    assert fake.argv("scancel") == [["11", "12"]]


def test_preempted_and_requeued_are_not_final():
    assert {"PREEMPTED", "REQUEUED", "REQUEUE_HOLD", "PENDING", "RUNNING"}.isdisjoint(slurm.FINAL_STATES)
    assert {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"} <= slurm.FINAL_STATES


def test_sacct_expands_array_elements_that_never_started(fake):
    fake.set("sacct.out", "42_[0-2,5%4]|CANCELLED by 0|None assigned|00:00:00|0:0\n44|FAILED|n1|00:00:01|1:0\n")
    rows = slurm.sacct(["42", "44"], "2026-01-01T00:00:00")
    assert [(r.job_id, r.state) for r in rows] == [("42_0", "CANCELLED"), ("42_1", "CANCELLED"), ("42_2", "CANCELLED"),
                                                   ("42_5", "CANCELLED"), ("44", "FAILED")]
    assert rows[-1].exit_code == "1:0"
