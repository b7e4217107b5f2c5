"""Checkpoints of a training run: atomic, pruned, and complete enough for an exact resume.

Layout: `run.checkpoints_dir/step_N/` holds the engine's state (weights or adapter, optimizer,
scheduler: `jobs.training.engine`), `rng_rank{R}.pt` per rank (python, numpy, torch RNGs) and
`trainer_state.json` (step, epoch, position in the epoch, evaluation history, CoBa state).

Atomic: every rank writes into `.tmp-step_N` and rank 0 renames it to `step_N` once all ranks
are done, so a `step_N` directory is always complete; a save killed half-way leaves only a
`.tmp-*` directory, which the next start deletes. The run directory must be on storage that all
nodes share (DeepSpeed writes one shard per rank).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

STEP_RE = re.compile(r"^step_(\d+)$")
TMP_PREFIX = ".tmp-"
STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    """Where training stands; the data position is (epoch, micro-batches of it consumed)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens: int = 0
    eval_history: list[list[float]] = field(default_factory=list)  # [step, loss]
    best_step: Optional[int] = None
    best_loss: Optional[float] = None
    stall: int = 0
    stopped_early: bool = False
    coba: Optional[dict[str, Any]] = None

    def record_eval(self, loss: float) -> bool:
        """Add an evaluation; True when it is the best so far (ties count as best, as in MFTCoder)."""
        self.eval_history.append([self.step, loss])
        if self.best_loss is None or loss <= self.best_loss:
            self.best_step, self.best_loss, self.stall = self.step, loss, 0
            return True
        self.stall += 1
        return False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "TrainerState":
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step}"


def saved_steps(root: Path) -> list[int]:
    """Steps with a complete checkpoint, ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := STEP_RE.match(p.name)) and (p / STATE_FILE).is_file())


def latest(root: Path) -> Optional[Path]:
    steps = saved_steps(root)
    return step_dir(root, steps[-1]) if steps else None


def read_state(checkpoint: Path) -> TrainerState:
    return TrainerState.from_file(Path(checkpoint) / STATE_FILE)


def remove_partial(root: Path) -> None:
    """Delete `.tmp-*` directories left by a save that was killed (rank 0, before training)."""
    root = Path(root)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(TMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)


def prune(root: Path, keep_last: Optional[int], protect: set[int]) -> list[int]:
    """Delete all but the newest `keep_last` checkpoints, never one in `protect` (the best).
    Returns the deleted steps. `keep_last=None` keeps everything."""
    if keep_last is None:
        return []
    steps = saved_steps(root)
    doomed = [s for s in steps[:-keep_last] if s not in protect] if len(steps) > keep_last else []
    for step in doomed:
        # rename first so a reader never sees a half-deleted step_N as complete
        trash = Path(root) / f"{TMP_PREFIX}deleting-step_{step}"
        os.rename(step_dir(root, step), trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def save(
    root: Path,
    state: TrainerState,
    write: Callable[[Path], None],
    *,
    is_main: bool,
    barrier: Callable[[], None],
    keep_last: Optional[int],
    protect: set[int],
) -> Path:
    """Collective save of checkpoint `state.step`: `write(tmp_dir)` runs on every rank between
    barriers; rank 0 then adds the trainer state, renames the directory into place and prunes."""
    root = Path(root)
    final = step_dir(root, state.step)
    tmp = root / f"{TMP_PREFIX}step_{state.step}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    write(tmp)
    barrier()
    if is_main:
        _write_synced(tmp / STATE_FILE, state.to_json())
        if final.exists():  # saved at this step before (a best checkpoint that is also the last)
            old = root / f"{TMP_PREFIX}replaced-step_{state.step}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        prune(root, keep_last, protect)
    barrier()
    return final


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------------------------
# random number generators


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(directory: Path, rank: int) -> None:
    torch.save(rng_state(), Path(directory) / f"rng_rank{rank}.pt")


def load_rng(directory: Path, rank: int) -> None:
    """Restore this rank's generators; a rank the checkpoint did not have (a restart with more
    ranks) keeps its seeded state."""
    path = Path(directory) / f"rng_rank{rank}.pt"
    if path.is_file():
        set_rng_state(torch.load(path, weights_only=False))
