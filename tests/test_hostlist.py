"""Slurm host lists → host names (jobs.distributed): the grammar table, the scontrol path and the
fallback parser, and agreement with the real `scontrol show hostnames` of the test cluster."""
from __future__ import annotations

import subprocess

import pytest

from jobs import distributed
from jobs.distributed import expand_nodelist, from_environ, parse_hostlist

GRAMMAR = [
    ("node1", ["node1"]),
    ("a1,b2", ["a1", "b2"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("n[01-3]", ["n01", "n02", "n03"]),
    ("x[1-3,5-6]", ["x1", "x2", "x3", "x5", "x6"]),
    ("gpu[01-03,7],cpu1", ["gpu01", "gpu02", "gpu03", "gpu7", "cpu1"]),
    ("gpu[1,3],cpu[01-02]", ["gpu1", "gpu3", "cpu01", "cpu02"]),
    ("r[1-2]-n[01-02]", ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]),
    ("x1000c[0-1]s0b0n[0-1]", ["x1000c0s0b0n0", "x1000c0s0b0n1", "x1000c1s0b0n0", "x1000c1s0b0n1"]),
    ("a-[1-2],b", ["a-1", "a-2", "b"]),
    ("r[1-2]-n[01-02],login[1]", ["r1-n01", "r1-n02", "r2-n01", "r2-n02", "login1"]),
]
# Accepted by the parser although Slurm 22.05's scontrol rejects them (suffix after the brackets).
PARSER_ONLY = [
    ("rack1-n[1-2]-ib", ["rack1-n1-ib", "rack1-n2-ib"]),
    ("a[1-2]b[3-4]c", ["a1b3c", "a1b4c", "a2b3c", "a2b4c"]),
]


@pytest.mark.parametrize("nodelist,hosts", GRAMMAR + PARSER_ONLY)
def test_parser_grammar_table(nodelist, hosts):
    assert parse_hostlist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["n[1-", "n1-2]", "n[a-b]", "n[3-1]", "n[[1]]", "n[1-2-]"])
def test_parser_rejects_malformed_lists(bad):
    with pytest.raises(ValueError, match="host list"):
        parse_hostlist(bad)


def test_without_scontrol_the_parser_decides(monkeypatch):
    monkeypatch.setattr(distributed.shutil, "which", lambda name: None)
    assert expand_nodelist("r[1-2]-n[01-02]") == ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]
    dist = from_environ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NUM_NODES": "4",
                         "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "r[3-4]-n[07-08]"})
    assert dist.master_addr == "r3-n07"


def test_scontrol_answer_wins_when_it_answers(monkeypatch, tmp_path):
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\necho site-host-a\necho site-host-b\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert expand_nodelist("whatever[1-2]") == ["site-host-a", "site-host-b"]
    fake.write_text("#!/bin/sh\necho 'scontrol: fatal: Could not establish a configuration source' >&2\nexit 1\n")
    assert expand_nodelist("n[1-2]") == ["n1", "n2"]


@pytest.mark.slurm
@pytest.mark.parametrize("nodelist,hosts", GRAMMAR)
def test_table_agrees_with_real_scontrol(slurm, nodelist, hosts):
    real = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    assert real.stdout.split() == hosts
    assert expand_nodelist(nodelist) == hosts
