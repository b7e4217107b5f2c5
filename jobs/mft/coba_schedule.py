"""When CoBa samples validation loss and when it recomputes the task weights, as MFTCoder v0.5's
trainer does (mftcoder_accelerate, `CoBaStatus` driven from the training loop).

`c` below is the optimizer-step counter *before* the current step is counted (MFTCoder's
`completed_steps`, which it increments after the optimizer step):

- weights: recomputed while the micro-batch that synchronises gradients (the last of the step's
  gradient-accumulation window) is computed, when c >= warmup_steps and c % update_interval == 0;
  the earlier micro-batches of that step still use the previous weights;
- records: after that micro-batch's optimizer step, when c >= 1 and c % update_interval == 0,
  i.e. after optimizer steps iv+1, 2iv+1, ... (1-based; iv = update_interval). MFTCoder also
  evaluates one batch before training but keeps nothing of it (its history starts at c >= 1);
- validation batches: record c uses batches (sample_valid_num * c // iv + i) mod L, i < sample_valid_num.
"""
from __future__ import annotations

from launcher.recipe import CobaSpec


def weights_due(c: int, spec: CobaSpec) -> bool:
    """Whether the gradient-synchronising micro-batch of step counter `c` recomputes the weights."""
    return c >= spec.warmup_steps and c % spec.update_interval == 0


def record_due(c: int, spec: CobaSpec) -> bool:
    """Whether the optimizer step with pre-increment counter `c` is followed by a validation record."""
    return c >= 1 and c % spec.update_interval == 0


def record_batches(c: int, spec: CobaSpec, num_batches: int) -> list[int]:
    """The validation batch indices the record after counter `c` evaluates."""
    first = spec.sample_valid_num * c // spec.update_interval
    return [(first + i) % num_batches for i in range(spec.sample_valid_num)]
