"""jobs.distributed: Slurm's variables → RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (no torch)."""
from __future__ import annotations

import socket

import pytest

from jobs import distributed
from jobs.distributed import DistEnv, expand_nodelist, from_environ, port_for_job


def slurm_env(**extra: str) -> dict[str, str]:
    """Rank 5 of a 2-node x 4-task step."""
    env = {
        "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("nodelist,hosts", [
    ("gpu[01-03,7],cpu1", ["gpu01", "gpu02", "gpu03", "gpu7", "cpu1"]),
    ("node1", ["node1"]),
    ("a1,b2", ["a1", "b2"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("rack1-n[1-2]-ib", ["rack1-n1-ib", "rack1-n2-ib"]),
    ("gpu[1,3],cpu[01-02]", ["gpu1", "gpu3", "cpu01", "cpu02"]),
    ("", []),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


def test_slurm_step_variables():
    dist = from_environ(slurm_env())
    assert dist == DistEnv(rank=5, local_rank=1, world_size=8, local_world_size=4, node_rank=1,
                           master_addr="gpu07", master_port=port_for_job("4242"), job_id="4242")
    assert not dist.is_main
    assert dist.as_env() == {
        "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "NODE_RANK": "1",
        "MASTER_ADDR": "gpu07", "MASTER_PORT": str(port_for_job("4242")),
    }


def test_first_host_of_a_complex_nodelist_is_master():
    dist = from_environ(slurm_env(SLURM_JOB_NODELIST="gpu[01-03,7],cpu1"))
    assert dist.master_addr == "gpu01"


def test_every_rank_agrees_on_master():
    envs = [slurm_env(SLURM_PROCID=str(r), SLURM_LOCALID=str(r % 4), SLURM_NODEID=str(r // 4)) for r in range(8)]
    dists = [from_environ(e) for e in envs]
    assert {(d.master_addr, d.master_port) for d in dists} == {("gpu07", port_for_job("4242"))}
    assert [d.rank for d in dists] == list(range(8))
    assert sum(d.is_main for d in dists) == 1


def test_array_elements_get_distinct_ports():
    """Elements of one array run side by side, possibly on the same node: each has its own
    SLURM_JOB_ID (the array's id is SLURM_ARRAY_JOB_ID), so each gets its own port."""
    ports = []
    for task in range(16):
        env = slurm_env(SLURM_JOB_ID=str(5001 + task), SLURM_ARRAY_JOB_ID="5001", SLURM_ARRAY_TASK_ID=str(task),
                        SLURM_JOB_NODELIST="gpu01")
        port = from_environ(env).master_port
        assert distributed.PORT_RANGE[0] <= port < distributed.PORT_RANGE[1]
        ports.append(port)
    assert len(set(ports)) == 16


def test_port_is_stable_per_job():
    assert port_for_job("123") == port_for_job("123")
    assert port_for_job("123_4") != port_for_job("123_5")


def test_user_master_port_and_addr_win():
    dist = from_environ(slurm_env(MASTER_PORT="29555", MASTER_ADDR="10.0.0.9"))
    assert (dist.master_addr, dist.master_port) == ("10.0.0.9", 29555)


def test_ip_mode_resolves_the_master_host():
    dist = from_environ(slurm_env(SLURM_JOB_NODELIST="localhost", MFTLAUNCH_MASTER_ADDR_MODE="ip"))
    assert dist.master_addr == socket.gethostbyname("localhost")
    assert dist.master_addr.count(".") == 3 and dist.master_addr != "localhost"


def test_ip_mode_keeps_a_user_master_addr():
    dist = from_environ(slurm_env(MASTER_ADDR="gpu99", MFTLAUNCH_MASTER_ADDR_MODE="ip"))
    assert dist.master_addr == "gpu99"


def test_nnodes_fallback_and_missing_nodelist():
    env = slurm_env()
    del env["SLURM_JOB_NUM_NODES"], env["SLURM_JOB_NODELIST"]
    env.update(SLURM_NNODES="4", SLURM_NODELIST="c[1-4]")
    dist = from_environ(env)
    assert (dist.local_world_size, dist.master_addr) == (2, "c1")
    del env["SLURM_NODELIST"]
    assert from_environ(env).master_addr == "127.0.0.1"


def test_outside_slurm_single_process():
    dist = from_environ({"MFTLAUNCH_LOCAL_JOB_ID": "local7_3"})
    assert (dist.rank, dist.world_size, dist.local_world_size, dist.master_addr) == (0, 1, 1, "127.0.0.1")
    assert dist.master_port == port_for_job("local7_3") and dist.is_main


def test_outside_slurm_torchrun_style_variables():
    env = {"RANK": "2", "LOCAL_RANK": "2", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "23456"}
    dist = from_environ(env)
    assert (dist.rank, dist.local_rank, dist.world_size, dist.master_port) == (2, 2, 4, 23456)


def test_slurm_wins_over_stale_rank_variables():
    """A job started from a shell that had RANK/WORLD_SIZE set still follows Slurm."""
    dist = from_environ(slurm_env(RANK="0", WORLD_SIZE="1"))
    assert (dist.rank, dist.world_size) == (5, 8)


def test_export_sets_variables_and_named_interface(monkeypatch):
    for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME", "MFTLAUNCH_NET_IFNAME"):
        monkeypatch.setenv(name, "")  # recorded first, so the test leaves them as it found them
        monkeypatch.delenv(name)
    import os

    dist = from_environ(slurm_env(SLURM_JOB_NODELIST="localhost"))
    # restore everything export() touches when the test ends
    for key in list(dist.as_env()):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    distributed.export(dist, "ib0")
    assert os.environ["RANK"] == "5" and os.environ["MASTER_ADDR"] == "localhost"
    assert os.environ["GLOO_SOCKET_IFNAME"] == os.environ["NCCL_SOCKET_IFNAME"] == "ib0"
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "eth9")  # the profile's own NCCL setting is kept
    monkeypatch.delenv("GLOO_SOCKET_IFNAME")
    distributed.export(dist, "ib0")
    assert os.environ["NCCL_SOCKET_IFNAME"] == "eth9" and os.environ["GLOO_SOCKET_IFNAME"] == "ib0"
