"""Commands that wait always end: `--wait` on every terminal or unknowable state (with its exit
code), `logs -f` picking up files that appear later and ending with the run, `--index` meaning the
element's index in the stage for chunked arrays, and `status` explaining failures. Fake Slurm
commands on PATH; the real-cluster versions are in test_slurm_waiting.py."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from launcher import cli, logs, status, waiting
from launcher.cli import main
from launcher.rundir import RunDir
from launcher.status import ElementStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launcher_fakes import eval_recipe  # noqa: E402
from test_launcher_status import mark_all_done, submit  # noqa: E402


def row(state: str, done: bool = False, note: str = "", index: int = 0) -> ElementStatus:
    return ElementStatus(stage="generate", index=index, key="k", job_id="1", state=state, node="", elapsed="",
                         restarts=0, done=done, note=note)


@pytest.mark.parametrize("state,code", [
    ("COMPLETED", 1),  # COMPLETED without a sentinel did not complete
    ("FAILED", 1), ("CANCELLED", 1), ("TIMEOUT", 1), ("OUT_OF_MEMORY", 1), ("NODE_FAIL", 1),
    ("BOOT_FAIL", 1), ("DEADLINE", 1), ("ENDED", 1), ("LOST", 1),
    ("UNKNOWN", 4), ("REQUEUE_HOLD", 3), ("SPECIAL_EXIT", 3),
])
def test_verdict_on_each_terminal_state(state, code):
    assert waiting.verdict([row("COMPLETED", done=True, index=1), row(state)]) == code


@pytest.mark.parametrize("state,note", [("PENDING", "Priority"), ("RUNNING", ""), ("PREEMPTED", ""),
                                        ("REQUEUED", ""), ("COMPLETING", ""), ("SUSPENDED", "")])
def test_verdict_keeps_waiting_while_something_can_still_happen(state, note):
    assert waiting.verdict([row("FAILED"), row(state, note=note, index=1)]) is None


def test_verdict_held_by_user_and_all_done():
    assert waiting.verdict([row("FAILED"), row("PENDING", note="JobHeldUser", index=1)]) == 3
    assert waiting.verdict([row("COMPLETED", done=True), row("COMPLETED", done=True, index=1)]) == 0


@pytest.mark.parametrize("reason,code", [("BadConstraints", 3), ("InvalidAccount", 3), ("PartitionTimeLimit", 3),
                                         ("PartitionDown", None), ("ReqNodeNotAvail", None), ("Resources", None)])
def test_pending_for_a_reason_only_a_person_clears_ends_the_wait(reason, code):
    assert waiting.verdict([row("FAILED"), row("PENDING", note=reason, index=1)]) == code


def test_unreachable_slurm_ends_the_wait_after_patience(tmp_path):
    reads = []

    def read(_run):
        reads.append(1)
        return [row("RUNNING")], ["squeue: squeue did not answer in 60s"]

    code, message = waiting.wait_for_run(RunDir(tmp_path), read, poll_s=0.01, patience_s=0.05)
    assert code == 4 and "did not answer" in message and len(reads) >= 2


def test_queue_that_forgot_the_jobs_is_not_an_outage(tmp_path):
    assert not waiting.slurm_unreachable(["squeue: squeue ... failed (1): slurm_load_jobs error: Invalid job id specified"])


@pytest.mark.parametrize("sacct_state,code,words", [
    ("FAILED", 1, "did not complete"), ("NODE_FAIL", 1, "did not complete"),
    ("OUT_OF_MEMORY", 1, "did not complete"), ("TIMEOUT", 1, "did not complete"),
])
def test_submit_wait_returns_on_each_final_state(fake, tmp_path, capsys, sacct_state, code, words):
    run = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.rc", "1")
    fake.set("squeue.err", "slurm_load_jobs error: Invalid job id specified\n")
    fake.set("sacct.out", f"1000_0|COMPLETED|n1|1:00|0:0\n1000_1|{sacct_state}|n1|1:00|1:0\n"
                          "1001_0|COMPLETED|n1|1:00|0:0\n1001_1|CANCELLED by 0|n1|0:00|0:0\n1002|COMPLETED|n1|1:00|0:0\n")
    mark_all_done(run, except_=(("generate", 1), ("evaluate", 1)))
    assert cli._wait(run, local=False, poll_s=0.01) == code
    out = capsys.readouterr().out
    assert words in out and sacct_state in out


def test_wait_without_accounting_ends_when_the_queue_is_empty(fake, tmp_path, capsys):
    """Before: ENDED was not final and --wait polled forever without accounting."""
    run = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.rc", "1")
    fake.set("squeue.err", "slurm_load_jobs error: Invalid job id specified\n")
    fake.set("sacct.rc", "1")
    fake.set("sacct.err", "sacct: error: Slurm accounting storage is disabled\n")
    mark_all_done(run, except_=(("generate", 1),))
    run.update_state("generate", 1, state="RUNNING", job_id="1000_1")
    assert cli._wait(run, local=False, poll_s=0.01) == 1
    assert "generate[1] ENDED" in capsys.readouterr().out


def test_wait_on_elements_nobody_knows_is_unknowable(fake, tmp_path, capsys):
    run = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.rc", "1")
    fake.set("squeue.err", "slurm_load_jobs error: Invalid job id specified\n")
    fake.set("sacct.out", "")
    mark_all_done(run, except_=(("collect", 0),))
    assert cli._wait(run, local=False, poll_s=0.01) == 4
    assert "collect[0] UNKNOWN" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# status explains failures


def test_failed_row_names_reason_exit_and_log_error(fake, tmp_path):
    run = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.out", "")
    fake.set("sacct.out", "1000_0|OUT_OF_MEMORY|n1|1:00|0:9\n1000_1|FAILED|n1|1:00|1:0\n"
                          "1001_0|NODE_FAIL|n2|1:00|0:0\n1001_1|TIMEOUT|n1|10:00|0:15\n1002|PREEMPTED|n1|0:10|0:15\n")
    (run.logs_dir / "mft.evalrun.generate_1000_1.out").write_text(
        "mftlaunch: generate[1] (mbpp) on n1\nTraceback (most recent call last):\n  File x\n"
        "FileNotFoundError: [Errno 2] No such file or directory: 'mbpp.jsonl'\n")
    (run.logs_dir / "mft.evalrun.generate_1000_0.out").write_text("slurmstepd: error: Detected 1 oom-kill event(s)\n")
    rows = {(r.stage, r.index): r for r in status.read_status(run)[0]}
    oom, failed = rows[("generate", 0)].note, rows[("generate", 1)].note
    assert "OUT_OF_MEMORY" in oom and "signal 9 (SIGKILL)" in oom and "oom-kill" in oom, oom
    assert "exit 1" in failed and "FileNotFoundError: [Errno 2]" in failed, failed
    assert rows[("evaluate", 0)].note.startswith("NODE_FAIL")
    assert "TIMEOUT" in rows[("evaluate", 1)].note and "SIGTERM" in rows[("evaluate", 1)].note
    assert "PREEMPTED" in rows[("collect", 0)].note


# ------------------------------------------------------------------------------------------
# logs


def chunked_run(fake, tmp_path) -> RunDir:
    profile = tmp_path / "small-arrays.yaml"
    profile.write_text("name: small-arrays\ngpus_per_node: 0\nmax_array_size: 5\n")
    return submit(tmp_path, eval_recipe(tmp_path, benchmarks="[competition, humaneval]"), str(profile))


def test_index_means_the_index_in_the_stage_for_chunked_arrays(fake, tmp_path, capsys):
    run = chunked_run(fake, tmp_path)  # generate chunks: 1000 (0-4), 1001 (5-9), 1002 (10-13)
    (run.logs_dir / "mft.evalrun.generate_1000_2.out").write_text("element two\n")
    (run.logs_dir / "mft.evalrun.generate_1001_2.out").write_text("element seven\n")
    (run.logs_dir / "mft.evalrun.generate_1002_2.out").write_text("element twelve\n")
    capsys.readouterr()
    assert main(["logs", str(run.root), "--stage", "generate", "--index", "7"]) == 0
    out = capsys.readouterr().out
    assert "element seven" in out and "element two" not in out and "element twelve" not in out
    assert main(["logs", str(run.root), "--stage", "generate", "--index", "12"]) == 0
    assert "element twelve" in capsys.readouterr().out
    assert main(["logs", str(run.root), "--stage", "generate", "--index", "3"]) == 1  # no log yet


def test_follow_picks_up_files_that_appear_later(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.out").write_text("first attempt\n")
    ended = threading.Event()
    seen: list[str] = []

    def consume():
        for text in logs.follow(lambda: sorted(folder.glob("*.out")), ended.is_set, poll_s=0.02,
                                check_every_s=0.02):
            seen.append(text)

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)
    with open(folder / "a.out", "a") as handle:
        handle.write("requeued: attempt 2\n")
    (folder / "b.out").write_text("resumed element\n")
    time.sleep(0.2)
    ended.set()
    thread.join(timeout=5)
    assert not thread.is_alive(), "follow did not end with the run"
    text = "".join(seen)
    assert text.index("first attempt") < text.index("requeued: attempt 2")
    assert f"==> {folder / 'b.out'} <==" in text and "resumed element" in text


def test_logs_follow_ends_by_itself_when_the_run_is_over(fake, tmp_path, capsys):
    run = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.out", "")
    fake.set("sacct.out", "1000_0|COMPLETED|n1|1:00|0:0\n1000_1|COMPLETED|n1|1:00|0:0\n1001_0|COMPLETED|n1|1:00|0:0\n"
                          "1001_1|COMPLETED|n1|1:00|0:0\n1002|COMPLETED|n1|1:00|0:0\n")
    mark_all_done(run)
    (run.logs_dir / "mft.evalrun.collect_1002.out").write_text("collected\n")
    capsys.readouterr()
    assert main(["logs", str(run.root), "-f"]) == 0
    assert "collected" in capsys.readouterr().out


def test_logs_follow_gives_up_when_slurm_stops_answering(fake, tmp_path, capsys):
    """Before: `logs -f` followed a RUNNING element for ever once squeue and sacct went silent."""
    run = submit(tmp_path, eval_recipe(tmp_path))
    for command in ("squeue", "sacct"):
        fake.set(f"{command}.rc", "1")
        fake.set(f"{command}.err", "slurm_load_jobs error: Socket timed out on send/recv operation\n")
    run.update_state("generate", 0, state="RUNNING", job_id="1000_0")
    (run.logs_dir / "mft.evalrun.generate_1000_0.out").write_text("generating\n")
    capsys.readouterr()
    args = cli.build_parser().parse_args(["logs", str(run.root), "-f", "--stage", "generate", "--index", "0"])
    assert cli._follow_logs(run, args, patience_s=0.05) == 4
    captured = capsys.readouterr()
    assert "generating" in captured.out
    assert "stopped following: Slurm did not answer" in captured.err and "Socket timed out" in captured.err


def test_preempted_for_good_ends_the_wait(fake, tmp_path, capsys):
    """PreemptMode=CANCEL: only sacct knows the element, as PREEMPTED; it will not run again."""
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    fake.set("squeue.out", "")
    fake.set("sacct.out", "1000_0|COMPLETED|n1|1:00|0:0\n1000_1|PREEMPTED|n1|1:00|0:15\n"
                          "1001_0|COMPLETED|n1|1:00|0:0\n1001_1|CANCELLED by 0|n1|0:00|0:0\n1002|COMPLETED|n1|1:00|0:0\n")
    mark_all_done(run_dir, except_=(("generate", 1), ("evaluate", 1)))
    assert cli._wait(run_dir, local=False, poll_s=0.01) == 1
    assert "PREEMPTED and not requeued" in capsys.readouterr().out
