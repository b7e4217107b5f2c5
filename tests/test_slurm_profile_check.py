"""`profiles check` and GPU directives against the real local Slurm cluster: module loading on a
compute node with the real environment-modules, check jobs cancelled on timeout, the gpu
partition's GRES (ordinary files as devices), and the flagship recipe's real plan checked by
`sbatch --test-only` and submitted held."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from launcher import slurm as slurm_cmd
from launcher.cli import main
from launcher.submit import load, submit

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = REPO / "recipes" / "codellama34b_qlora.yaml"
MODULES_INIT = Path("/usr/share/modules/init/bash")


def write_profile(tmp_path: Path, name: str, **fields) -> Path:
    data = {"name": name, "scheduler": "slurm", "partitions": {"gpu": "main", "cpu": "cpu"},
            "cpus_per_node": 4, "max_time": "04:00:00", **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def queued(name: str) -> list[str]:
    return slurm_cmd.run(["squeue", "-h", "-n", name, "-o", "%i"]).split()


def modules_environment(modulefiles: Path) -> dict[str, str]:
    """What a login shell with environment-modules exports (the `module` function, MODULEPATH):
    sbatch hands it to the job, as on a real cluster."""
    out = subprocess.run(["bash", "-c", f"source {MODULES_INIT}; module use {modulefiles}; env -0"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in env.items() if k.startswith(("BASH_FUNC_", "MODULE", "__MODULES", "LOADEDMODULES"))}


def test_modules_are_loaded_on_a_compute_node(slurm, tmp_path, monkeypatch, capsys):
    assert MODULES_INIT.is_file(), "environment-modules is installed by tests/cluster/install.sh"
    (tmp_path / "modulefiles" / "mfttool").mkdir(parents=True)
    (tmp_path / "modulefiles" / "mfttool" / "1.0").write_text("#%Module1.0\nsetenv MFTTOOL_HOME /opt/mfttool\n")
    for key, value in modules_environment(tmp_path / "modulefiles").items():
        monkeypatch.setenv(key, value)
    profile = write_profile(tmp_path, "mods", modules=["mfttool/1.0", "nosuch/9.9"])
    code = main(["profiles", "check", str(profile), "--root", str(tmp_path / "runs"), "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "OK   module load mfttool/1.0 on mft-n" in out, out
    assert "FAIL module load nosuch/9.9 on mft-n" in out and "fix the name in `modules`" in out, out
    script = next((tmp_path / "runs").rglob("mft.probe.mods.sbatch")).read_text()
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --signal=B:USR2@" in script  # the jobs' renderer
    assert queued("mft.probe.mods") == []


def test_check_jobs_are_cancelled_on_timeout(slurm, tmp_path, capsys):
    """A probe (modules) and a distributed check that cannot start in time are cancelled."""
    profile = write_profile(tmp_path, "late", modules=["anything"], sbatch_extra={"begin": "now+1hour"})
    code = main(["profiles", "check", str(profile), "--root", str(tmp_path / "runs"), "--timeout", "3"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAIL probe job on partition 'cpu'" in out and "did not finish in 3s (last seen PENDING" in out, out
    assert "cancelled it" in out
    assert queued("mft.probe.late") == []
    plain = write_profile(tmp_path, "late2", sbatch_extra={"begin": "now+1hour"})
    code = main(["profiles", "check", str(plain), "--nodes", "2", "--root", str(tmp_path / "runs"), "--timeout", "3"])
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert "did not finish in 3s" in captured.err and "cancelled it" in captured.err, captured.err
    assert queued("mft.check.late2") == []


@pytest.fixture
def future_reservation():
    """A reservation of four cores of mft-n1 for ten minutes: jobs may name it, and the rest of the
    node stays free for others. (One that starts later is refused by --test-only: "Invalid time".)"""
    name = "mft-check-resv"
    slurm_cmd.run(["scontrol", "create", "reservation", f"ReservationName={name}", "StartTime=now",
                   "Duration=10", "Nodes=mft-n1", "CoreCnt=4", "Users=root"])
    try:
        yield name
    finally:
        slurm_cmd.run(["scontrol", "delete", f"ReservationName={name}"])


def test_account_qos_reservation_and_constraint_are_asked_of_slurmctld(slurm, tmp_path, capsys, future_reservation):
    """The profile's account, qos, reservation and constraint go into each `sbatch --test-only`:
    ones the cluster has pass, a feature no node has and a reservation that does not exist FAIL."""
    asks = {"account": "root", "qos": "normal", "reservation": future_reservation, "constraint": "mftnode"}
    good = write_profile(tmp_path, "asks", **asks)
    code = main(["profiles", "check", str(good)])
    out = capsys.readouterr().out
    assert code == 0, out
    with_asks = f"with account root, qos normal, reservation {future_reservation}, constraint mftnode"
    assert f"OK   sbatch --test-only partitions.cpu ('cpu') {with_asks}: sbatch: Job" in out, out
    for field, value, error in (("constraint", "nosuchfeature", "Invalid feature specification"),
                                ("reservation", "nosuchresv", "reservation is invalid")):
        bad = write_profile(tmp_path, f"bad-{field}", **{**asks, field: value})
        assert main(["profiles", "check", str(bad)]) == 1
        out = capsys.readouterr().out
        line = next(line for line in out.splitlines() if line.startswith("FAIL sbatch --test-only partitions.cpu"))
        assert f"{field} {value}" in line and error in line and "fix the profile's" in line, out


def test_gpu_partition_profile_passes_and_a_wrong_gres_fails(slurm, tmp_path, capsys):
    assert main(["profiles", "check", "test-cluster-gpu"]) == 0
    out = capsys.readouterr().out
    assert "OK   gres: every node of partition 'gpu' (2) has gpu:8 or more" in out, out
    assert "OK   sbatch --test-only partitions.gpu ('gpu') with gpu:8" in out, out
    wrong = write_profile(tmp_path, "a100", partitions={"gpu": "gpu", "cpu": "gpu"}, gpu_request="gres",
                          gres_type="gpu:a100", gpus_per_node=4)
    assert main(["profiles", "check", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL gres: profile asks gpu:a100:4 per node, no node of partition 'gpu' has it" in out, out
    assert "FAIL sbatch --test-only partitions.gpu ('gpu') with gpu:a100:4" in out, out
    assert all(line[:4] in ("OK  ", "WARN", "FAIL") for line in out.splitlines()), out  # one line per claim


def test_flagship_plan_passes_test_only_and_is_submitted_held(slurm, tmp_path, capsys):
    """2 nodes x 8 GPUs of training, a GPU generate array: every script of the real plan is
    accepted by slurmctld, then the whole graph goes out held and is cancelled."""
    code = main(["plan", str(FLAGSHIP), "--profile", "test-cluster-gpu", "--out", str(tmp_path / "plan"),
                 "--test-only"])
    out = capsys.readouterr().out
    assert code == 0, out
    scripts = sorted((tmp_path / "plan").rglob("*.sbatch"))
    assert len(scripts) == 5 and out.count("sbatch --test-only: sbatch: Job") == 5, out
    train = next(p for p in scripts if ".train" in p.name).read_text()
    assert "#SBATCH --gres=gpu:8" in train and "#SBATCH --nodes=2" in train and "#SBATCH --ntasks-per-node=8" in train
    assert "#SBATCH --hold" in train  # the profile holds whatever it submits: nothing can run there

    loaded = load(str(FLAGSHIP), "test-cluster-gpu", [f"output_root={tmp_path / 'runs'}"], check_paths=False)
    run = submit(loaded)
    try:
        ids = {stage: [j["id"] for j in jobs] for stage, jobs in
               json.loads(run.manifest_file.read_text())["jobs"].items()}
        assert sorted(ids) == ["collect", "evaluate", "generate", "merge", "train"]
        rows = slurm_cmd.run(["squeue", "-h", "-j", ",".join(i for v in ids.values() for i in v),
                            "-o", "%i|%T|%r|%b|%D"]).splitlines()
        by_id = {r.split("|")[0].split("_")[0]: r.split("|") for r in rows}
        assert all(r[1] == "PENDING" and r[2] == "JobHeldUser" for r in by_id.values()), rows
        assert by_id[ids["train"][0]][3:] == ["gres:gpu:8", "2"], rows
        assert by_id[ids["generate"][0]][3] == "gres:gpu:1", rows
    finally:
        assert main(["cancel", str(run.root)]) == 0
    capsys.readouterr()
    assert queued(loaded.plan.jobs[0].name) == []
