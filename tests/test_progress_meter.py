"""Progress lines: done/total, elapsed<ETA and rate of this attempt's work only, handed to a sink."""
from __future__ import annotations

from jobs.progress_meter import ProgressMeter
from launcher.rundir import RunDir


def test_rate_and_eta_count_only_this_attempt():
    now = [100.0]
    logged: list[str] = []
    meter = ProgressMeter("generate mbpp", 500, "rows", initial=100, log=logged.append, clock=lambda: now[0])
    now[0] = 110.0
    line = meter.update(150, "512.0 new tok/s")
    # 50 rows in 10 s this attempt: 5 rows/s; 350 left: 70 s
    assert line == "generate mbpp: 150/500 rows [00:10<01:10,  5.00rows/s, 512.0 new tok/s]"
    assert logged == [line]


def test_progress_file_holds_the_last_line(tmp_path):
    run = RunDir(tmp_path)
    meter = ProgressMeter("evaluate humaneval", 4, "programs", log=lambda _l: None,
                          sink=lambda text: run.write_progress("evaluate", 3, text))
    assert run.read_progress("evaluate", 3) == ""
    meter.update(2)
    meter.update(4)
    assert run.read_progress("evaluate", 3).startswith("evaluate humaneval: 4/4 programs [")
    run.progress_file("evaluate", 3).write_text("{cut")  # damaged: status shows nothing, no error
    assert run.read_progress("evaluate", 3) == ""
