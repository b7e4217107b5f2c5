"""sbatch retries (launcher/sbatch_retry.py) with scripted Slurm answers: transient errors are
retried with bounded backoff, a job whose sbatch reply was lost is found in the queue instead of
being submitted twice, an unreadable queue never leads to a second sbatch, a real error is raised
at once. The real-cluster test is test_slurm_sbatch_retry.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from launcher import sbatch_retry, slurm
from launcher.profile import SbatchRetry

SOCKET = slurm.SlurmError("sbatch --parsable x.sbatch failed (1): sbatch: error: Batch job submission failed: "
                          "Socket timed out on send/recv operation")
ACCOUNT = slurm.SlurmError("sbatch failed (1): sbatch: error: Batch job submission failed: Invalid account")


class Script:
    """Answers for slurm.sbatch and slurm.jobs_with_comment, one per call; records the calls."""

    def __init__(self, monkeypatch, sbatch: list, queue: list):
        self.sbatch_answers, self.queue_answers = list(sbatch), list(queue)
        self.calls: list[str] = []
        self.sleeps: list[float] = []
        monkeypatch.setattr(slurm, "sbatch", self._sbatch)
        monkeypatch.setattr(slurm, "jobs_with_comment", self._queue)

    @staticmethod
    def _answer(value):
        if isinstance(value, Exception):
            raise value
        return value

    def _sbatch(self, script, **kwargs):
        self.calls.append("sbatch")
        assert kwargs["comment"] == "tag"
        return self._answer(self.sbatch_answers.pop(0))

    def _queue(self, name, comment):
        self.calls.append("squeue")
        return self._answer(self.queue_answers.pop(0))

    def submit(self, attempts: int = 4) -> str:
        policy = SbatchRetry(attempts=attempts, backoff_s=1, max_backoff_s=3)
        return sbatch_retry.sbatch_once(Path("x.sbatch"), "mft.x", "tag", policy, sleep=self.sleeps.append)


def test_two_transient_failures_then_success(monkeypatch):
    s = Script(monkeypatch, sbatch=[SOCKET, SOCKET, "123"], queue=[[], []])
    assert s.submit() == "123"
    assert s.calls == ["sbatch", "squeue", "sbatch", "squeue", "sbatch"]
    assert s.sleeps == [1, 2]  # doubling


def test_a_lost_reply_is_found_in_the_queue_not_submitted_again(monkeypatch):
    s = Script(monkeypatch, sbatch=[SOCKET], queue=[["456"]])
    assert s.submit() == "456"
    assert s.calls == ["sbatch", "squeue"]


def test_an_unreadable_queue_never_leads_to_another_sbatch(monkeypatch):
    s = Script(monkeypatch, sbatch=[SOCKET, "789"], queue=[SOCKET, SOCKET, []])
    assert s.submit(attempts=5) == "789"
    assert s.calls == ["sbatch", "squeue", "squeue", "squeue", "sbatch"]
    assert s.sleeps == [1, 2, 3]  # bounded by max_backoff_s


def test_gives_up_after_the_bounded_number_of_tries(monkeypatch):
    s = Script(monkeypatch, sbatch=[SOCKET, SOCKET, SOCKET], queue=[[], [], []])
    with pytest.raises(slurm.SlurmError, match="gave up after 3 tries") as raised:
        s.submit(attempts=3)
    assert "may still appear" not in str(raised.value)  # the queue said: no such job
    assert s.calls == ["sbatch", "squeue"] * 3


def test_the_last_lost_reply_is_found_in_the_queue_too(monkeypatch):
    """Before: after the last failed try the queue was not asked, and a job that got through was
    left queued while submit cancelled everything else."""
    s = Script(monkeypatch, sbatch=[SOCKET, SOCKET], queue=[[], ["321"]])
    assert s.submit(attempts=2) == "321"
    assert s.calls == ["sbatch", "squeue", "sbatch", "squeue"]


def test_giving_up_while_the_queue_cannot_tell_says_so(monkeypatch):
    s = Script(monkeypatch, sbatch=[SOCKET], queue=[SOCKET, SOCKET])
    with pytest.raises(slurm.SlurmError, match="gave up after 2 tries.*comment tag may still appear"):
        s.submit(attempts=2)
    assert s.calls == ["sbatch", "squeue", "squeue"]


def test_the_tag_tells_runs_of_the_same_name_apart(tmp_path):
    script = Path("generate_0.sbatch")
    a = sbatch_retry.submission_comment(tmp_path / "one" / "run-1200", 0, script)
    b = sbatch_retry.submission_comment(tmp_path / "two" / "run-1200", 0, script)
    assert a != b and a.startswith("mftlaunch:run-1200-") and a.endswith(":0:generate_0.sbatch")


def test_a_real_error_is_raised_at_once(monkeypatch):
    s = Script(monkeypatch, sbatch=[ACCOUNT], queue=[])
    with pytest.raises(slurm.SlurmError, match="Invalid account"):
        s.submit()
    assert s.calls == ["sbatch"] and s.sleeps == []


@pytest.mark.parametrize("text,transient", [
    ("Socket timed out on send/recv operation", True),
    ("Batch job submission failed: Resource temporarily unavailable", True),
    ("Unable to contact slurm controller (connect failure)", True),
    ("sbatch --parsable did not answer in 60s", True),
    ("Batch job submission failed: Invalid account or account/partition combination specified", False),
    ("Batch job submission failed: Requested node configuration is not available", False),
])
def test_transient_errors(text, transient):
    assert sbatch_retry.is_transient(slurm.SlurmError(text)) is transient
