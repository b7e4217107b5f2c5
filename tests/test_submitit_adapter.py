"""submitit's renderer, pinned: if a submitit release renders our parameters differently, these
tests fail before any user's scripts change (launcher/submitit_adapter.py says why we use it)."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from launcher.submitit_adapter import SUPPORTED, check_version, sbatch_text

EXPECTED = """#!/bin/bash

# Parameters
#SBATCH --account=acct
#SBATCH --array=0-13%4
#SBATCH --cpus-per-task=8
#SBATCH --exclusive
#SBATCH --gpus-per-node=4
#SBATCH --job-name=mft.r.generate
#SBATCH --mem=64GB
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output=/runs/r/logs/%x_%A_%a.out
#SBATCH --partition=gpu
#SBATCH --requeue
#SBATCH --signal=B:USR2@120
#SBATCH --time=30

# setup
export A=1

# command
srun x
"""


def test_renderer_output_is_exactly_what_we_rely_on():
    """Sorted directives, `--flag` for True, no line for None (wckey), our --output/--signal
    overriding submitit's defaults, and no SUBMITIT_EXECUTOR line."""
    text = sbatch_text(
        "srun x", Path("/runs/r/logs"), ["export A=1"], job_name="mft.r.generate", time=30, nodes=2,
        ntasks_per_node=4, partition="gpu", cpus_per_task=8, mem="64GB", account="acct", gpus_per_node=4,
        exclusive=True, wckey=None, stderr_to_stdout=True, use_srun=False, map_count=14, array_parallelism=4,
        additional_parameters={"output": "/runs/r/logs/%x_%A_%a.out", "signal": "B:USR2@120", "requeue": True},
    )
    assert text == EXPECTED


def test_installed_submitit_is_in_the_supported_range():
    check_version(importlib.metadata.version("submitit"))
    assert importlib.metadata.version("submitit").startswith("1.5.")
    assert SUPPORTED == (">=1.5.2", "<1.6")


@pytest.mark.parametrize("version", ["1.4.6", "1.5.1", "1.6.0", "2.0"])
def test_unsupported_versions_are_refused_with_the_fix(version):
    with pytest.raises(RuntimeError, match=r"pip install 'submitit>=1.5.2,<1.6'"):
        check_version(version)


def test_setup_py_states_the_same_range():
    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    assert '"submitit>=1.5.2,<1.6"' in setup
