"""Train stage entry point: `run(ctx)` fine-tunes the recipe's model (jobs.training.trainer).

Run through the common entry point, one process per rank (Slurm task, or a local process with
RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set):

    python -m jobs.run train RUN_DIR 0

On USR2 or the end of the time budget it saves a checkpoint and raises RequeueRequested; the
next attempt resumes from the newest checkpoint in the run directory.
"""
from __future__ import annotations

import os
from typing import Any

from jobs.context import StageContext


def prepare_environment(local_world_size: int) -> None:
    """Settings that must be in place before torch/deepspeed/tokenizers are first used.

    DeepSpeed picks its accelerator when first imported; without a GPU it must be the CPU one
    (gloo process group). Without a GPU, ranks on one node share its cores: each gets its share
    of threads (OpenMP threads of several ranks spinning on the same cores slow every rank
    several-fold), unless OMP_NUM_THREADS says otherwise."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // max(1, local_world_size)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(ctx: StageContext) -> dict[str, Any]:
    prepare_environment(ctx.dist.local_world_size)
    from jobs.training.trainer import Trainer

    return Trainer(ctx).fit()
