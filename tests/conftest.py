"""Shared pytest configuration: markers, and where the benchmark data lives ($MFTLAUNCH_DATA_DIR,
else the copy installed with the package)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from jobs.code_benchmarks.data import default_data_dir

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = default_data_dir()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: runs against the real local Slurm test cluster (tests/cluster)")
    config.addinivalue_line("markers", "sandbox: runs untrusted code through eval_sandbox")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"benchmark data not found at {DATA_DIR}: set MFTLAUNCH_DATA_DIR")
    return DATA_DIR


@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch):
    """The real local Slurm cluster, with this process's environment pointed at it.

    Skips when the cluster is down, unless MFTLAUNCH_REQUIRE_SLURM=1 (CI), where it fails."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "cluster"))
    import slurm_env

    if not slurm_env.cluster_is_up():
        message = "the test Slurm cluster is not up: bash tests/cluster/cluster.sh up"
        if os.environ.get("MFTLAUNCH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    for key, value in slurm_env.cluster_env().items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"]:
        monkeypatch.delenv(key)
    return slurm_env


@pytest.fixture
def usr2_handler():
    """Give the test's SIGUSR2 handler back: tests that stop a stage install their own."""
    previous = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in tiny model, built once per session into a cache of its own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFTLAUNCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        from jobs.tiny_model import resolve_model_path

        return resolve_model_path("builtin:tiny-llama")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Fake Slurm commands on PATH (tests/launcher_fakes.py), run from a scratch directory with
    no profile chosen by the environment."""
    from launcher_fakes import FakeSlurm

    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.delenv("MFTLAUNCH_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return FakeSlurm(tmp_path / "slurm").install(monkeypatch)
