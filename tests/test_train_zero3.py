"""DeepSpeed ZeRO-3 LoRA with two ranks on one machine (gloo, DS_ACCELERATOR=cpu), through the
normal entry point `python -m jobs.run train RUN_DIR 0`: sharding, a USR2 to one rank stopping
both at the same step, resume, learning, and an adapter that reloads to the trained model."""
from __future__ import annotations

import socket
import signal
import time
from pathlib import Path

import pytest
import torch

from jobs.training import checkpoint
from local_ranks import prepare_run_dir, start_ranks
from launcher.recipe import Recipe
from test_train_resume import TINY_MFT, tb_scalars

STEPS = 30


def zero3_recipe() -> Recipe:
    return Recipe.model_validate({
        "name": "tiny-zero3", "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "stages": {"train": {
            "datasets": [{"path": str(TINY_MFT / name)} for name in ("codegen", "explain", "unittest")],
            "seq_length": 64, "padding_mode": "pack", "validation_split": 0.1,
            "per_device_train_batch_size": 2, "learning_rate": 3e-3, "min_lr": 3e-4, "num_warmup_steps": 2,
            "max_steps": STEPS, "log_interval": 1, "evaluation_steps": 100, "checkpointing_steps": 100,
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
            "gradient_checkpointing": True,
            "distributed": {"backend": "deepspeed", "zero_stage": 3, "mixed_precision": "no"},
            "resources": {"nodes": 2, "gpus_per_node": 0},
        }},
    })


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_text(path: Path, text: str, procs, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    raise AssertionError(f"'{text}' did not appear in {path}:\n{path.read_text(errors='replace')[-3000:] if path.is_file() else ''}")


def validation_loss(model: torch.nn.Module, run_dir, recipe: Recipe, world_size: int) -> float:
    """The validation loss as the trainer defines it (mean over all ranks' batches), computed
    here, in one process, with `model`."""
    from jobs.mft.batching import EpochLoader, model_inputs
    from jobs.mft.data import load_mft_data
    from jobs.mft.losses import mft_loss
    from jobs.tiny_model import resolve_model_path
    from jobs.training.model import load_tokenizer

    train = recipe.stages.train
    tokenizer = load_tokenizer(recipe.model, resolve_model_path(recipe.model.path))
    data = load_mft_data(train, tokenizer, run_dir.data_cache_dir)
    weights = torch.tensor(data.task_weights)
    losses = []
    model.eval()
    for rank in range(world_size):
        loader = EpochLoader(data.valid, mode=train.padding_mode, seq_length=train.seq_length,
                             batch_size=train.per_device_eval_batch_size, pad_id=data.pad_id, seed=train.seed,
                             rank=rank, world_size=world_size, shuffle=False)
        with torch.no_grad():
            for batch in loader.iterate(0):
                logits = model(**model_inputs(batch, recipe.model.attn_implementation, torch.float32)).logits
                losses.append(mft_loss(logits, batch, weights, train.weighted_loss_mode).loss.item())
    return sum(losses) / len(losses)


def base_plus_adapter(recipe: Recipe, adapter_dir: Path) -> torch.nn.Module:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from jobs.tiny_model import resolve_model_path

    base = AutoModelForCausalLM.from_pretrained(str(resolve_model_path(recipe.model.path)), dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter_dir))


@pytest.mark.slow
def test_zero3_lora_two_ranks(tmp_path: Path) -> None:
    recipe = zero3_recipe()
    run_dir = prepare_run_dir(tmp_path / "run", recipe)

    first = start_ranks(run_dir, 2, free_port(), log_dir=tmp_path)
    wait_for_text(tmp_path / "train-rank0-attempt0.log", "[train] step 4/", first.processes, timeout_s=240)
    first.processes[1].send_signal(signal.SIGUSR2)  # one rank only: the all-reduced flag must stop both
    assert first.wait(timeout_s=120) == [75, 75]
    stopped = checkpoint.saved_steps(run_dir.checkpoints_dir)
    assert len(stopped) == 1 and 4 <= stopped[0] < STEPS

    second = start_ranks(run_dir, 2, free_port(), restart=1, log_dir=tmp_path)
    codes = second.wait(timeout_s=240)
    log0 = (tmp_path / "train-rank0-attempt1.log").read_text(errors="replace")
    assert codes == [0, 0], log0[-3000:]
    assert f"resumed from step_{stopped[0]}" in log0
    done = run_dir.done_record("train", 0)
    assert done["steps"] == STEPS and done["restarts"] == 1

    # ZeRO-3 really shards: each rank holds about half of the parameters
    per_rank, total = done["params_per_rank"], done["params_total"]
    assert len(per_rank) == 2 and sum(per_rank) >= total
    assert all(0.45 * total <= n <= 0.55 * total for n in per_rank)

    # it learns
    loss = tb_scalars(run_dir.tensorboard_dir, "train/loss")
    assert sorted(loss) == list(range(1, STEPS + 1))
    head = sum(loss[s] for s in range(1, 6)) / 5
    tail = sum(loss[s] for s in range(STEPS - 4, STEPS + 1)) / 5
    assert tail < head - 0.2, (head, tail)

    # the saved adapter is the trained one (not an empty ZeRO-3 shard)
    reloaded = base_plus_adapter(recipe, checkpoint.step_dir(run_dir.checkpoints_dir, STEPS) / "adapter")
    assert validation_loss(reloaded, run_dir, recipe, world_size=2) == pytest.approx(done["eval_loss"], abs=1e-5)
