"""Checkpoint directories: atomic saves, keep-last-K with the best protected, RNG round trip."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.training import checkpoint
from jobs.training.checkpoint import TrainerState


def save(root: Path, step: int, keep: int | None = 2, protect: set[int] = frozenset(), payload: str = "x") -> Path:
    def write(directory: Path) -> None:
        (directory / "weights.bin").write_text(payload)

    return checkpoint.save(root, TrainerState(step=step), write, is_main=True, barrier=lambda: None,
                           keep_last=keep, protect=set(protect))


def test_keep_last_k_and_protected_best(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save(tmp_path, step, keep=2, protect={20})
    assert checkpoint.saved_steps(tmp_path) == [20, 30, 40]
    assert checkpoint.latest(tmp_path) == tmp_path / "step_40"
    assert checkpoint.read_state(tmp_path / "step_40").step == 40
    save(tmp_path, 50, keep=None)
    assert checkpoint.saved_steps(tmp_path) == [20, 30, 40, 50]


def test_a_failed_save_leaves_the_previous_checkpoint_as_latest(tmp_path: Path) -> None:
    save(tmp_path, 5)

    def crash(directory: Path) -> None:
        (directory / "weights.bin").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.save(tmp_path, TrainerState(step=10), crash, is_main=True, barrier=lambda: None,
                        keep_last=2, protect=set())
    assert checkpoint.latest(tmp_path) == tmp_path / "step_5"
    assert not (tmp_path / "step_10").exists()
    assert (tmp_path / ".tmp-step_10").exists()  # what a killed job leaves behind ...
    checkpoint.remove_partial(tmp_path)  # ... and the next start removes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_5"]


def test_incomplete_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    save(tmp_path, 5)
    (tmp_path / "step_9").mkdir()  # e.g. copied by hand without trainer_state.json
    assert checkpoint.latest(tmp_path) == tmp_path / "step_5"


def test_saving_the_same_step_again_replaces_it(tmp_path: Path) -> None:
    save(tmp_path, 7, payload="first")
    save(tmp_path, 7, payload="second")
    assert (tmp_path / "step_7" / "weights.bin").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_7"]


def test_eval_tracking() -> None:
    state = TrainerState()
    for step, loss in ((1, 3.0), (2, 2.0), (3, 2.5), (4, 2.0), (5, 2.1)):
        state.step = step
        state.record_eval(loss)
    assert (state.best_step, state.best_loss, state.stall) == (4, 2.0, 1)


def test_rng_round_trip(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    checkpoint.save_rng(tmp_path, rank=3)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    checkpoint.load_rng(tmp_path, rank=3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
