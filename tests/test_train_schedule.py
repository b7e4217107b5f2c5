"""Learning-rate schedule: warmup, decay to the min_lr floor, step counting."""
from __future__ import annotations

import math

import pytest
import torch

from jobs.training import schedule


def curve(kind: str, total: int = 20, warmup: int = 4, base: float = 1e-3, floor: float = 1e-4) -> list[float]:
    return [schedule.lr_at(s, kind=kind, base_lr=base, min_lr=floor, total_steps=total, warmup=warmup) for s in range(total + 3)]


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decay_ends_on_min_lr_and_stays_there(kind: str) -> None:
    lrs = curve(kind)
    assert lrs[4] == pytest.approx(1e-3)  # first update after warmup runs at the full rate
    assert lrs[20] == pytest.approx(1e-4) and lrs[22] == pytest.approx(1e-4)
    assert min(lrs) >= 1e-4 - 1e-12
    assert all(a >= b - 1e-15 for a, b in zip(lrs[4:], lrs[5:]))  # never rises after warmup


def test_warmup_is_linear_and_never_zero() -> None:
    lrs = curve("cosine")
    assert lrs[:4] == pytest.approx([1e-3 * k / 5 for k in range(1, 5)])
    assert lrs[0] > 0


def test_cosine_midpoint_and_constant() -> None:
    mid = schedule.lr_at(12, kind="cosine", base_lr=1.0, min_lr=0.0, total_steps=20, warmup=4)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert curve("constant")[4:] == pytest.approx([1e-3] * 19)


def test_warmup_fraction_and_total_steps() -> None:
    assert schedule.warmup_steps(0.1, 200) == 20
    assert schedule.warmup_steps(30, 200) == 30
    assert schedule.total_optimizer_steps([10, 9], grad_accum=4, max_steps=None) == 3 + 3  # partial windows update
    assert schedule.total_optimizer_steps([10, 9], grad_accum=4, max_steps=7) == 7


def test_scheduler_drives_optimizer_groups() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([{"params": [param]}, {"params": [], "weight_decay": 0.0}], lr=1e-3)
    sched = schedule.build_scheduler(optimizer, kind="linear", base_lr=1e-3, min_lr=1e-4, total_steps=10, warmup=2)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    assert seen == pytest.approx(curve("linear", total=10, warmup=2)[:12])
    assert optimizer.param_groups[1]["lr"] == pytest.approx(seen[-1])
