"""Training on CPU with the tiny model: exact resume after USR2, the time budget, TensorBoard."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from jobs import train
from jobs.context import RequeueRequested, StageContext
from jobs.distributed import DistEnv
from jobs.training import checkpoint
from launcher.recipe import Recipe
from launcher.rundir import RunDir

REPO = Path(__file__).resolve().parent.parent
TINY_MFT = REPO / "recipes" / "data" / "tiny_mft"


def tiny_recipe(**train_fields: Any) -> Recipe:
    stage = {
        "datasets": [{"path": str(TINY_MFT / name)} for name in ("codegen", "explain", "unittest")],
        "seq_length": 64, "padding_mode": "dynamic", "validation_split": 0.1,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
        "learning_rate": 2e-3, "min_lr": 1e-4, "num_warmup_steps": 2, "max_steps": 10,
        "log_interval": 1, "evaluation_steps": 3, "checkpointing_steps": 4, "saving_limit": 3,
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": "all-linear"},
        "gradient_checkpointing": False,
        "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"},
        "resources": {"gpus_per_node": 0},
    }
    stage.update(train_fields)
    return Recipe.model_validate({
        "name": "tiny", "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "stages": {"train": stage},
    })


def context(root: Path, recipe: Recipe, restart: int = 0) -> StageContext:
    dist = DistEnv(rank=0, local_rank=0, world_size=1, local_world_size=1, node_rank=0,
                   master_addr="127.0.0.1", master_port=29500, job_id="test")
    return StageContext(run_dir=RunDir(root), recipe=recipe, plan={}, stage="train", index=0, item={"key": "train"},
                        dist=dist, restart_count=restart)


def tb_scalars(directory: Path, tag: str) -> dict[int, float]:
    """step → value over all event files of a run (later attempts purge what they redo)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {event.step: event.value for event in acc.Scalars(tag)}


def stop_by_usr2_after_step(root: Path, recipe: Recipe, step: int) -> RunDir:
    """Train in `root` and send this process USR2 at the trainer's `step`-th stop check (once per
    optimizer step), as Slurm does before a time limit; returns the run directory it saved in."""
    ctx = context(root, recipe)
    ctx.stop.install()
    votes = {"count": 0}
    should_stop = ctx.should_stop

    def usr2_after_step() -> bool:
        votes["count"] += 1
        if votes["count"] == step:
            os.kill(os.getpid(), signal.SIGUSR2)
        return should_stop()

    ctx.should_stop = usr2_after_step
    with pytest.raises(RequeueRequested):
        train.run_stage(ctx)
    return RunDir(root)


def test_resume_after_usr2_is_exact(tmp_path: Path, usr2_handler) -> None:
    recipe = tiny_recipe()
    whole = train.run_stage(context(tmp_path / "whole", recipe))
    assert whole["steps"] == 10

    run_dir = stop_by_usr2_after_step(tmp_path / "split", recipe, 5)
    assert checkpoint.saved_steps(run_dir.checkpoints_dir) == [3, 4, 5]
    resumed = train.run_stage(context(tmp_path / "split", recipe, restart=1))

    assert resumed["steps"] == 10 and resumed["restarts"] == 1
    loss_whole = tb_scalars(RunDir(tmp_path / "whole").tensorboard_dir, "train/loss")
    loss_split = tb_scalars(run_dir.tensorboard_dir, "train/loss")
    assert sorted(loss_split) == list(range(1, 11))
    assert [loss_split[s] for s in range(1, 11)] == pytest.approx([loss_whole[s] for s in range(1, 11)], abs=1e-6)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)
    a = load_file(str(Path(whole["checkpoint"]) / "trainable.safetensors"))
    b = load_file(str(Path(resumed["checkpoint"]) / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-7, rtol=0) for k in a)
    # the run learned something, and logged what the brief asks for
    assert loss_whole[10] < loss_whole[1]
    for tag in ("train/lr", "train/grad_norm", "train/tokens_per_s", "train/effective_tokens_per_s",
                "train_task_loss/codegen", "eval/loss"):
        assert tb_scalars(run_dir.tensorboard_dir, tag), tag


def test_time_budget_saves_and_requeues(tmp_path: Path) -> None:
    recipe = tiny_recipe(max_steps=4)
    ctx = context(tmp_path, recipe)
    ctx.deadline = 0.0  # long past: stop at the first step boundary
    with pytest.raises(RequeueRequested):
        train.run_stage(ctx)
    run_dir = RunDir(tmp_path)
    assert checkpoint.saved_steps(run_dir.checkpoints_dir) == [1]
    state = checkpoint.read_state(run_dir.checkpoints_dir / "step_1")
    assert (state.step, state.epoch, state.batch_in_epoch) == (1, 0, 2)  # two micro-batches per step
    assert (run_dir.checkpoints_dir / "step_1" / "adapter" / "adapter_config.json").is_file()
    assert train.run_stage(context(tmp_path, recipe, restart=1))["steps"] == 4


def test_early_stopping_ends_the_run_with_a_final_checkpoint(tmp_path: Path) -> None:
    recipe = tiny_recipe(max_steps=20, learning_rate=1.0, min_lr=1.0, num_warmup_steps=0, gradient_accumulation_steps=1,
                         evaluation_steps=1, checkpointing_steps=100, early_stopping={"enabled": True, "patience": 2})
    result = train.run_stage(context(tmp_path, recipe))  # lr 1.0 makes the validation loss climb
    assert result["stopped_early"] and result["steps"] < 20
    state = checkpoint.read_state(Path(result["checkpoint"]))
    assert state.stall == 2 and state.best_step < result["steps"]
    assert state.best_step in checkpoint.saved_steps(RunDir(tmp_path).checkpoints_dir)  # kept for merge


def test_coba_weights_train_and_resume(tmp_path: Path) -> None:
    recipe = tiny_recipe(max_steps=6, gradient_accumulation_steps=1, weighted_loss_mode="coba",
                         coba={"warmup_steps": 2, "history_length": 4}, checkpointing_steps=3)
    ctx = context(tmp_path, recipe)
    ctx.deadline = 0.0
    with pytest.raises(RequeueRequested):
        train.run_stage(ctx)
    result = train.run_stage(context(tmp_path, recipe, restart=1))
    coba = checkpoint.read_state(Path(result["checkpoint"])).coba
    # records after counters 1..5 (MFTCoder: c >= 1), weights at counters 2..5
    assert result["steps"] == 6 and len(coba["history"]) == 5 and len(coba["task_slopes"]) == 4
    assert sum(coba["weights"]) == pytest.approx(1.0)
