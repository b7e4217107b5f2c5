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


def prepare_environment() -> None:
    """Settings that must be in place before torch/deepspeed/tokenizers do real work.

    DeepSpeed picks its accelerator when first imported; without a GPU it must be the CPU one
    (gloo process group). CPU training is for tiny models (demos, tests): one intra-op thread
    per rank unless OMP_NUM_THREADS says otherwise, because OpenMP threads spinning on shared
    or oversubscribed cores made a 10-step run 6x slower on a busy 2-core machine, while a tiny
    model gains nothing from more threads."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_stage(ctx: StageContext) -> dict[str, Any]:
    prepare_environment()
    from jobs.training.trainer import Trainer

    return Trainer(ctx).fit()
