"""Smoke tests against the REAL local Slurm cluster (tests/cluster/cluster.sh).

Start it first:   bash tests/cluster/cluster.sh up
Run:              python -m pytest tests/test_cluster.py -v

Without a running cluster these tests are skipped, unless
MFTLAUNCH_REQUIRE_SLURM=1 is set (CI), in which case they fail.
"""

import ipaddress
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))

import slurm_env  # noqa: E402
from slurm_env import (  # noqa: E402
    NODES,
    cluster_is_up,
    release_requeued,
    run,
    sacct_fields,
    sbatch,
    wait_for_job,
    wait_for_state,
)

pytestmark = pytest.mark.slurm

JOB_TIMEOUT = 120


_UP = None


def require_cluster():
    """Skip (or, with MFTLAUNCH_REQUIRE_SLURM=1, fail) when the cluster is down.

    Called at the start of every test rather than from a fixture so that a
    required-but-missing cluster shows up as FAILED, not as a setup ERROR."""
    global _UP
    if _UP is None:
        _UP = cluster_is_up()
    if _UP:
        return
    msg = (
        "local Slurm test cluster is not up (SLURM_CONF=%s); start it with "
        "`bash tests/cluster/cluster.sh up`" % slurm_env.SLURM_CONF
    )
    if os.environ.get("MFTLAUNCH_REQUIRE_SLURM") == "1":
        pytest.fail("MFTLAUNCH_REQUIRE_SLURM=1 but " + msg, pytrace=False)
    pytest.skip(msg)


def _wait_for_file(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("file %s did not appear" % path)
        time.sleep(0.2)


def test_two_node_srun_ranks_on_different_addresses():
    require_cluster()
    script = (
        'echo "RANK $SLURM_NODEID $SLURM_PROCID $SLURMD_NODENAME '
        '$(ip -o -4 addr | awk \'{print $4}\' | tr \'\\n\' \' \')"'
    )
    out = run(["srun", "-N2", "-n2", "-t", "2", "bash", "-c", script], timeout=90)
    ranks = {}
    for line in out.stdout.splitlines():
        if not line.startswith("RANK "):
            continue
        fields = line.split()
        node_id, node = fields[1], fields[3]
        addrs = {
            str(ipaddress.ip_interface(a).ip)
            for a in fields[4:]
            if not ipaddress.ip_interface(a).ip.is_loopback
        }
        ranks[node_id] = (node, addrs)
    assert sorted(ranks) == ["0", "1"], out.stdout
    assert {ranks["0"][0], ranks["1"][0]} == set(NODES), out.stdout
    addrs0, addrs1 = ranks["0"][1], ranks["1"][1]
    assert addrs0 and addrs1, out.stdout
    # the two tasks live in different network namespaces: no shared address
    assert addrs0.isdisjoint(addrs1), out.stdout


def test_array_and_afterany_dependency(tmp_path):
    require_cluster()
    d = str(tmp_path)
    # element 2 fails on purpose: afterany must still release the dependent job
    array_id = sbatch(
        [
            "--array=0-2",
            "--chdir", d,
            "-o", os.path.join(d, "arr_%A_%a.out"),
            "-t", "2",
            "--wrap",
            "sleep 2; touch el_$SLURM_ARRAY_TASK_ID; "
            '[ "$SLURM_ARRAY_TASK_ID" != 2 ] || exit 3',
        ]
    )
    dep_id = sbatch(
        [
            "--dependency=afterany:%s" % array_id,
            "--chdir", d,
            "-o", os.path.join(d, "dep.out"),
            "-t", "2",
            "--wrap", "ls el_* | sort | tr '\\n' ' '",
        ]
    )
    assert wait_for_job(dep_id, timeout=JOB_TIMEOUT) == "COMPLETED"
    assert wait_for_job(array_id, timeout=JOB_TIMEOUT) == "FAILED"  # element 2
    with open(os.path.join(d, "dep.out")) as f:
        assert f.read().split() == ["el_0", "el_1", "el_2"]

    # the dependent job started only after every element had ended
    elements = sacct_fields(array_id, ["JobID", "State", "End"])
    assert sorted(r["JobID"] for r in elements) == [
        "%s_%d" % (array_id, i) for i in range(3)
    ], elements
    states = {r["JobID"].split("_")[1]: r["State"].split()[0] for r in elements}
    assert states == {"0": "COMPLETED", "1": "COMPLETED", "2": "FAILED"}
    (dep,) = sacct_fields(dep_id, ["JobID", "Start"])
    assert all(dep["Start"] >= r["End"] for r in elements), (dep, elements)


def test_sacct_sees_finished_jobs(tmp_path):
    require_cluster()
    d = str(tmp_path)
    ok = sbatch(["--chdir", d, "-o", "ok.out", "-J", "mft-sacct-ok", "-t", "1",
                 "--wrap", "echo hi"])
    bad = sbatch(["--chdir", d, "-o", "bad.out", "-J", "mft-sacct-bad", "-t", "1",
                  "-p", "cpu", "--wrap", "exit 7"])
    assert wait_for_job(ok, timeout=JOB_TIMEOUT) == "COMPLETED"
    assert wait_for_job(bad, timeout=JOB_TIMEOUT) == "FAILED"

    fields = ["JobID", "JobName", "Partition", "State", "ExitCode", "NodeList"]
    expected = {
        ok: {"JobID": ok, "JobName": "mft-sacct-ok", "Partition": "main",
             "State": "COMPLETED", "ExitCode": "0:0"},
        bad: {"JobID": bad, "JobName": "mft-sacct-bad", "Partition": "cpu",
              "State": "FAILED", "ExitCode": "7:0"},
    }

    def matches(rows):
        return all(
            {k: rows.get(j, {}).get(k) for k in want} == want
            for j, want in expected.items()
        )

    # Accounting reaches slurmdbd asynchronously; right after the job ends the
    # record can still be incomplete (e.g. JobName "allocation"), so poll.
    deadline = time.monotonic() + 60
    while True:
        rows = {r["JobID"]: r for r in sacct_fields(ok, fields) + sacct_fields(bad, fields)}
        if matches(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for j, want in expected.items():
        assert {k: rows.get(j, {}).get(k) for k in want} == want, rows
    assert rows[ok]["NodeList"] in NODES
    assert rows[bad]["NodeList"] in NODES


REQUEUE_SCRIPT = r"""#!/bin/bash
#SBATCH -J mft-requeue
#SBATCH -t 5
#SBATCH --open-mode=append
#SBATCH --requeue
restarts=${SLURM_RESTART_COUNT:-0}
echo "run start restart_count=$restarts job=$SLURM_JOB_ID"
if [ "$restarts" -ge 1 ]; then
    echo "resumed from: $(cat checkpoint)"
    echo "run done"
    exit 0
fi
on_usr2() {
    echo "got USR2"
    echo "step-42" > checkpoint
    scontrol requeue "$SLURM_JOB_ID"
    echo "requeue rc=$?"
    exit 0
}
trap on_usr2 USR2
touch ready
# sleep in the background + wait, so the trap runs as soon as USR2 arrives
while true; do
    sleep 1 &
    wait $!
done
"""


def test_requeue_on_usr2_keeps_output_and_counts_restart(tmp_path):
    require_cluster()
    d = str(tmp_path)
    out_file = os.path.join(d, "requeue.out")
    job = sbatch(["--chdir", d, "-o", out_file], script=REQUEUE_SCRIPT)

    wait_for_state(job, {"RUNNING"}, timeout=JOB_TIMEOUT)
    _wait_for_file(os.path.join(d, "ready"))
    run(["scancel", "--signal=USR2", "--batch", job])

    # Slurm holds a requeued job PENDING (BeginTime) for ~2 minutes
    wait_for_state(job, {"PENDING"}, timeout=JOB_TIMEOUT)
    release_requeued(job)
    assert wait_for_job(job, timeout=JOB_TIMEOUT) == "COMPLETED"

    with open(out_file) as f:
        text = f.read()
    assert "run start restart_count=0" in text, text
    assert "got USR2" in text, text
    assert "run start restart_count=1" in text, text
    assert "resumed from: step-42" in text, text
    assert text.index("restart_count=0") < text.index("restart_count=1"), text
    (row,) = sacct_fields(job, ["JobID", "State"])
    assert row["State"] == "COMPLETED"
    restart = run(["scontrol", "show", "job", job], check=False).stdout
    if restart:  # still known to slurmctld (MinJobAge): it counted one restart
        assert "Restarts=1" in restart, restart
