"""The launcher against the real local Slurm cluster (tests/cluster/cluster.sh up)."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from launcher.cli import main

pytestmark = pytest.mark.slurm


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_text(errors="replace")]


def test_two_node_gloo_group_from_launcher_environment(slurm, tmp_path, monkeypatch, capsys):
    """Ranks on two nodes form a gloo group from the launcher's environment alone, all_reduce,
    and see world size 2 on two different IP addresses; a secret reaches the job, no file."""
    token = "hf_" + secrets.token_hex(12)
    monkeypatch.setenv("HF_TOKEN", token)
    code = main(["profiles", "check", "test-cluster", "--nodes", "2", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(next(tmp_path.rglob("dist_check.json")).read_text())
    assert report["world_size"] == 2
    assert report["all_reduce_sum"] == 3.0
    addresses = {r["address"] for r in report["ranks"]}
    assert len(addresses) == 2, report["ranks"]
    assert {r["node_rank"] for r in report["ranks"]} == {0, 1}
    assert report["secrets_present"] == ["HF_TOKEN"]
    assert _files_containing(tmp_path, token) == []


def test_profiles_check_asks_the_live_cluster(slurm, tmp_path, capsys):
    assert main(["profiles", "check", "test-cluster"]) == 0
    out = capsys.readouterr().out
    assert "OK   partitions.cpu: 'cpu' exists" in out
    assert "MaxArraySize 1001" in out and "OK   sbatch --test-only" in out
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: wrong\nscheduler: slurm\npartitions: {gpu: nosuch, cpu: cpu}\nmax_array_size: 5000\n")
    assert main(["profiles", "check", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL partitions.gpu: 'nosuch' not found" in out
    assert "FAIL max_array_size: profile says 5000" in out
