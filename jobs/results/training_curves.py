"""Training curves of a run, read from its TensorBoard event files with tensorboard's own reader
(EventAccumulator), so every event the trainer wrote, across restarts, is read as TensorBoard
shows it (a restart's `purge_step` drops what an interrupted attempt logged past its checkpoint).
"""
from __future__ import annotations

from pathlib import Path

#: the scalars the trainer writes (jobs/training/metrics.py) that the report draws
TRAIN_LOSS = "train/loss"
LEARNING_RATE = "train/lr"
VALIDATION_LOSS = "eval/loss"
CURVES = (TRAIN_LOSS, LEARNING_RATE, VALIDATION_LOSS)

Curve = list[tuple[int, float]]


def read_curves(tensorboard_dir: Path, tags: tuple[str, ...] = CURVES) -> dict[str, Curve]:
    """{tag: [(step, value), ...]} for each of `tags` present under `tensorboard_dir`; empty when
    the run has no event files (an eval-only run). Steps ascending, one value per step (the last
    written)."""
    if not Path(tensorboard_dir).is_dir() or not any(Path(tensorboard_dir).rglob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0: keep every scalar, not TensorBoard's default reservoir sample of 10,000
    accumulator = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    present = set(accumulator.Tags().get("scalars", []))
    curves: dict[str, Curve] = {}
    for tag in tags:
        if tag in present:
            by_step = {int(event.step): float(event.value) for event in accumulator.Scalars(tag)}
            curves[tag] = sorted(by_step.items())
    return curves
