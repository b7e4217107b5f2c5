"""Shared pytest configuration: markers, and where the pinned benchmark data lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("MFTLAUNCH_DATA_DIR") or REPO.parent / "shared" / "data")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: runs against the real local Slurm test cluster (tests/cluster)")
    config.addinivalue_line("markers", "sandbox: runs untrusted code through eval_sandbox")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"benchmark data not found at {DATA_DIR}: set MFTLAUNCH_DATA_DIR")
    return DATA_DIR
