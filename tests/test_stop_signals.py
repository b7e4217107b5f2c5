"""USR2 and SIGTERM both ask a stage to save and stop (jobs/context.py); SIGCONT, which Slurm sends
with the TERM of a preemption, does nothing."""
from __future__ import annotations

import os
import signal

import pytest

from jobs.context import STOP_SIGNALS, StopSignal


@pytest.fixture
def restore_handlers():
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGTERM])
def test_stop_signals_set_the_flag_and_the_process_lives_on(restore_handlers, signum):
    stop = StopSignal()
    stop.install()
    os.kill(os.getpid(), signal.SIGCONT)
    assert not stop.requested
    os.kill(os.getpid(), signum)
    assert stop.requested and stop.reason == signal.Signals(signum).name
