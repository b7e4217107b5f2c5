"""A node lost in the middle of a run, on the real test cluster.

mft-n2 is lost as a crashed node is: its slurmd, its step daemons and every job process on it are
killed at once, and it is marked DOWN, which slurmctld does by itself after SlurmdTimeout (too long
to wait for in CI). Two runs lose elements to it together:

* `ends`: the 13-task competition suite on a profile with `requeue: false`. The run ends; `status`
  names the lost elements with NODE_FAIL; the collector names the tasks that are missing and gives
  no mean. Once the node is back, `mftlaunch resume` finishes the run.
* `requeued`: one task on the default `requeue: true`, kept on mft-n2 so that it surely loses an
  element. Slurm requeues the element, which finishes once the node is back.

Each ends with the same per-problem verdicts, generations and mean as a clean run of its recipe.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from launcher.cli import main
from launcher.profile import BUILTIN_DIR
from launcher.rundir import RunDir, read_json
from test_slurm_pipeline import SUITE, eval_recipe, submit, wait_final

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

MODEL = "tiny"
REQUEUED_TASK = "humanevalsynthesize-python"
#: what a verdict is; durations and stderr text may differ between two runs of one program
VERDICT_FIELDS = ("index", "task_id", "sample", "passed", "status", "error", "key")


def _profile(tmp: Path, name: str, **changes) -> str:
    """The test-cluster profile with `changes`, as a file `submit --profile` takes."""
    profile = yaml.safe_load((BUILTIN_DIR / "test-cluster.yaml").read_text())
    profile.update(name=name, **changes)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


def _status(run_dir: RunDir) -> dict:
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "status", str(run_dir.root), "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def _running_on_n2(slurm, run_dir: RunDir) -> list[str]:
    """Slurm ids of the run's elements running on mft-n2 now."""
    ids = {row["job_id"] for row in _status(run_dir)["elements"] if row["job_id"]}
    out = slurm.run(["squeue", "-h", "-w", "mft-n2", "-t", "RUNNING", "-o", "%i"]).stdout.split()
    return [job_id for job_id in out if job_id in ids]


def _explain(slurm, run_dir: RunDir, rows: list[dict]) -> str:
    """Why elements are not done: their rows, Slurm's record of every attempt and their logs' tails."""
    lines = []
    for row in rows:
        if row["done"]:
            continue
        lines.append(f"{row['stage']}[{row['index']}] {row['job_id']} {row['state']}: {row['note']}")
        sacct = slurm.run(["sacct", "-n", "-D", "-P", "-j", row["job_id"],
                           "-o", "JobID,State,ExitCode,Reason,NodeList,Start,End"], check=False)
        lines.extend(f"  sacct {line}" for line in sacct.stdout.splitlines())
    for log in sorted(run_dir.logs_dir.glob("*.out")):
        lines.append(f"--- {log.name}")
        lines.extend(log.read_text(errors="replace").splitlines()[-15:])
    return "\n".join(lines)


def _outcome(run_dir: RunDir, tasks: list[str]) -> dict:
    """What a run produced: per task its generations, pass@1 and per-problem verdicts; the mean."""
    results = read_json(run_dir.results_table("json"))
    (model,) = results["models"]
    out: dict = {"mean": model["mean_competition"]}
    for task in tasks:
        verdicts = [json.loads(line) for line in run_dir.results_file(task, MODEL).read_text().splitlines()]
        out[task] = {
            "generations": run_dir.generations_file(task, MODEL).read_bytes(),
            "pass@1": read_json(run_dir.metrics_file(task, MODEL))[task]["pass@1"],
            "verdicts": [{k: v[k] for k in VERDICT_FIELDS} for v in verdicts],
        }
    return out


def test_node_lost_mid_array_ends_or_requeues_and_resume_matches_a_clean_run(slurm, tmp_path, data_dir, capsys):
    ends_profile = _profile(tmp_path, "test-cluster-no-requeue", requeue=False, array_throttle=8)
    on_n2 = _profile(tmp_path, "test-cluster-n2", sbatch_extra={"nodelist": "mft-n2"})
    requeued = submit(eval_recipe(tmp_path, data_dir, [REQUEUED_TASK], "requeued"), capsys, on_n2)
    ends = submit(eval_recipe(tmp_path, data_dir, ["competition"], "ends"), capsys, ends_profile)
    try:
        deadline = time.time() + 300
        while not (_running_on_n2(slurm, ends) and _running_on_n2(slurm, requeued)):
            assert time.time() < deadline, (_status(ends), _status(requeued))
            time.sleep(0.3)
        lost = set(slurm.lose_node_n2())
        ends_lost = {r["job_id"] for r in _status(ends)["elements"]} & lost
        requeued_lost = {r["job_id"] for r in _status(requeued)["elements"]} & lost
        assert ends_lost and requeued_lost, (lost, _status(ends), _status(requeued))

        # requeue: false: the run ends, and says which elements were lost and why
        rows = wait_final(ends)
        for row in rows:
            if row["job_id"] in ends_lost:
                assert row["state"] == "NODE_FAIL" and not row["done"], row
                assert "NODE_FAIL: a node of the job failed" in row["note"], row
        assert main(["status", str(ends.root)]) == 0
        table = capsys.readouterr().out
        assert table.count("NODE_FAIL") >= len(ends_lost), table
        missing = sorted(r["key"] for r in rows if r["stage"] == "evaluate" and not r["done"])
        assert missing, rows
        collect = next(r for r in rows if r["stage"] == "collect")
        assert collect["state"] == "FAILED", collect
        (model,) = read_json(ends.results_table("json"))["models"]
        assert model["mean_competition"] is None and sorted(model["missing"]) == missing, model
        log = "".join(p.read_text() for p in ends.logs_dir.glob("mft.ends.collect_*.out"))
        assert all(task in log for task in missing), log[-3000:]
        # requeue: true: Slurm put the lost element back in the queue
        assert {row["state"] for row in _status(requeued)["elements"] if row["job_id"] in requeued_lost} <= {
            "PENDING", "REQUEUED"}, _status(requeued)
    finally:
        slurm.restore_nodes()

    for job_id in requeued_lost:
        slurm.release_requeued(job_id)
    (tmp_path / "clean").mkdir()
    clean_ends = submit(eval_recipe(tmp_path / "clean", data_dir, ["competition"], "ends"), capsys)
    clean_requeued = submit(eval_recipe(tmp_path / "clean", data_dir, [REQUEUED_TASK], "requeued"), capsys)
    assert main(["resume", str(ends.root)]) == 0, capsys.readouterr().out
    for run_dir in (ends, requeued, clean_ends, clean_requeued):
        rows = wait_final(run_dir)
        assert all(r["done"] for r in rows), _explain(slurm, run_dir, rows)
    assert all(r["restarts"] >= 1 for r in _status(requeued)["elements"] if r["job_id"] in requeued_lost)

    assert _outcome(ends, SUITE) == _outcome(clean_ends, SUITE)
    assert _outcome(ends, SUITE)["mean"] is not None
    assert _outcome(requeued, [REQUEUED_TASK]) == _outcome(clean_requeued, [REQUEUED_TASK])
