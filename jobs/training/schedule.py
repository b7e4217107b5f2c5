"""Learning-rate schedule, counted in optimizer steps.

Why our own: MFTCoder hands `transformers.get_scheduler` a warmup multiplied by GA × world size
and lets accelerate step the scheduler once per process (FSDP) or once per update (DeepSpeed),
so the same recipe gives different curves per backend and GPU count (training.md §1.9). Here the
schedule is a pure function of the optimizer-step index, the training loop steps it exactly once
per optimizer update on every backend, and `min_lr` is the floor the decay ends on (not a clamp
applied after a decay towards zero).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

KINDS = ("cosine", "linear", "constant")


def total_optimizer_steps(batches_per_epoch: Sequence[int], grad_accum: int, max_steps: Optional[int]) -> int:
    """Optimizer updates of the whole run: `max_steps` when set, else the updates of every epoch
    (packing can give each epoch its own number of micro-batches).

    A partial accumulation window at the end of an epoch still makes an update (its gradients
    would otherwise leak into the next epoch's first update)."""
    if max_steps is not None:
        return max_steps
    return max(1, sum(math.ceil(n / grad_accum) for n in batches_per_epoch))


def warmup_steps(num_warmup_steps: Union[int, float], total_steps: int) -> int:
    """An int is a step count; a float below 1 is a fraction of all optimizer steps."""
    if isinstance(num_warmup_steps, float) and num_warmup_steps < 1:
        return int(num_warmup_steps * total_steps)
    return int(num_warmup_steps)


def lr_at(step: int, *, kind: str, base_lr: float, min_lr: float, total_steps: int, warmup: int) -> float:
    """The learning rate of optimizer update number `step` (0-based).

    Warmup rises linearly to `base_lr` so that update `warmup` runs at the full rate and the
    first update is not wasted at lr 0; the decay then runs from `base_lr` to `min_lr` over the
    remaining updates and stays at `min_lr` after `total_steps` (e.g. a resumed run that was
    given more steps)."""
    if kind not in KINDS:
        raise ValueError(f"unknown lr_scheduler_type '{kind}'; known: {', '.join(KINDS)}")
    if step < warmup:
        return base_lr * (step + 1) / (warmup + 1)
    if kind == "constant":
        return base_lr
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    if kind == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr + (base_lr - min_lr) * shape


def build_scheduler(optimizer, *, kind: str, base_lr: float, min_lr: float, total_steps: int, warmup: int):
    """A torch LambdaLR over `optimizer` following `lr_at`; every param group gets the same rate.

    The optimizer's groups must have been created with lr=base_lr (LambdaLR multiplies the
    initial lr). Stepped once per optimizer update by the training loop, on every backend."""
    from torch.optim.lr_scheduler import LambdaLR

    def factor(step: int) -> float:
        return lr_at(step, kind=kind, base_lr=base_lr, min_lr=min_lr, total_steps=total_steps, warmup=warmup) / base_lr

    return LambdaLR(optimizer, factor)
