"""Local ranks (jobs/distributed.py:LocalRanks): what srun does on a cluster, for the `local`
profile — every rank told its place, signals passed on, and one failed rank ending the rest."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from jobs.distributed import LocalRanks, combined_exit_code
from launcher.contract import REQUEUE_EXIT_CODE

PY = sys.executable


def test_every_rank_gets_its_place_and_one_port(tmp_path):
    script = ("import json, os; print(json.dumps({k: os.environ[k] for k in "
              "('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')}))")
    ranks = LocalRanks([PY, "-c", script], 3, job_id="local7_0", log_dir=tmp_path, log_name="r")
    assert ranks.wait(timeout_s=60) == [0, 0, 0]
    seen = [json.loads((tmp_path / f"r{r}-attempt0.log").read_text()) for r in range(3)]
    assert [s["RANK"] for s in seen] == ["0", "1", "2"] == [s["LOCAL_RANK"] for s in seen]
    assert {s["WORLD_SIZE"] for s in seen} == {"3"} and {s["MASTER_ADDR"] for s in seen} == {"127.0.0.1"}
    assert len({s["MASTER_PORT"] for s in seen}) == 1


def test_a_crashed_rank_ends_the_others_within_seconds(tmp_path):
    """Rank 1 dies at once; rank 0 would wait 10 minutes in a collective that never completes."""
    script = "import os, sys, time; sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(600)"
    started = time.monotonic()
    ranks = LocalRanks([PY, "-c", script], 2, job_id="local8_0", log_dir=tmp_path, crash_grace_s=1.0)
    codes = ranks.wait(timeout_s=120)
    assert time.monotonic() - started < 15
    assert codes[1] == 3 and codes[0] == -signal.SIGTERM
    assert ranks.ended == [1, 0] and ranks.exit_code == 3


def test_a_rank_that_ignores_sigterm_is_killed_5_seconds_later(tmp_path):
    """A rank busy in a handler that swallows SIGTERM (as the save-on-SIGTERM ranks do) is still
    ended: SIGKILL 5 s after the SIGTERM."""
    script = ("import os, signal, sys, time\n"
              "if os.environ['RANK'] == '1': sys.exit(3)\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "time.sleep(600)\n")
    started = time.monotonic()
    ranks = LocalRanks([PY, "-c", script], 2, job_id="local9_0", log_dir=tmp_path, crash_grace_s=0.5)
    codes = ranks.wait(timeout_s=120)
    took = time.monotonic() - started
    assert codes[1] == 3 and codes[0] == -signal.SIGKILL
    assert 5 <= took < 20, took


@pytest.mark.parametrize("codes, expected", [
    ([0, 0], 0), ([REQUEUE_EXIT_CODE, REQUEUE_EXIT_CODE], REQUEUE_EXIT_CODE), ([0, REQUEUE_EXIT_CODE], REQUEUE_EXIT_CODE),
    ([REQUEUE_EXIT_CODE, 1], 1), ([-9, 0], -9),
])
def test_combined_exit_code(codes, expected):
    assert combined_exit_code(codes) == expected


def test_the_spawner_passes_usr2_on_and_exits_for_requeue(tmp_path):
    """`python -m jobs.distributed`: USR2 to the spawner reaches every rank, which save and exit 75."""
    rank = tmp_path / "rank.py"
    rank.write_text(
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGUSR2, lambda *_: sys.exit(75))\n"
        "open(os.environ['READY_DIR'] + '/' + os.environ['RANK'], 'w').close()\n"
        "time.sleep(600)\n"
    )
    env = {"READY_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "MFTLAUNCH_LOCAL_JOB_ID": "local9_0"}
    proc = subprocess.Popen([PY, "-m", "jobs.distributed", "--ranks", "2", "--", PY, str(rank)],
                            env={**env, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])})
    deadline = time.monotonic() + 60
    while not all((tmp_path / str(r)).exists() for r in range(2)) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=60) == REQUEUE_EXIT_CODE
