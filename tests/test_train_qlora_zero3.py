"""QLoRA with DeepSpeed ZeRO-3, two ranks (gloo, DS_ACCELERATOR=cpu), 4-bit weights stored in
the compute dtype (`quant_storage`, the rule validate enforces): ZeRO-3 really partitions the
packed 4-bit weights (each rank holds half), the loss falls, and the gathered adapter is the
trained one (its validation loss on the dequantised base equals the trainer's); the same with
ZeRO-3 parameter offload."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs.training import checkpoint
from jobs.training.model import quantization_config
from launcher.recipe import Recipe
from local_ranks import prepare_run_dir, start_ranks
from test_train_resume import TINY_MFT, tb_scalars
from test_train_zero3 import free_port, validation_loss

STEPS = 10


def qlora_zero3_recipe(offload_param: str = "none") -> Recipe:
    return Recipe.model_validate({
        "name": "tiny-qlora-zero3", "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "fp32"},
        "stages": {"train": {
            "datasets": [{"path": str(TINY_MFT / name)} for name in ("codegen", "explain", "unittest")],
            "seq_length": 64, "padding_mode": "pack", "validation_split": 0.1,
            "peft_type": "qlora", "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True,
                                                   "quant_storage": "fp32"},
            "per_device_train_batch_size": 2, "learning_rate": 3e-3, "min_lr": 3e-4, "num_warmup_steps": 2,
            "max_steps": STEPS, "log_interval": 1, "evaluation_steps": 100, "checkpointing_steps": 100,
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
            "gradient_checkpointing": True,
            "distributed": {"backend": "deepspeed", "zero_stage": 3, "mixed_precision": "no",
                            "offload_param": offload_param},
            "resources": {"nodes": 2, "gpus_per_node": 0},
        }},
    })


@pytest.mark.slow
@pytest.mark.parametrize("offload_param", ["none", "cpu"])
def test_qlora_zero3_two_ranks_shards_the_4bit_weights(offload_param: str, tmp_path: Path) -> None:
    recipe = qlora_zero3_recipe(offload_param)
    run_dir = prepare_run_dir(tmp_path / "run", recipe)
    codes = start_ranks(run_dir, 2, free_port(), log_dir=tmp_path).wait(timeout_s=600)
    logs = [(tmp_path / f"train-rank{r}-attempt0.log").read_text(errors="replace") for r in (0, 1)]
    assert codes == [0, 0], logs[0][-3000:]
    for rank, log in enumerate(logs):
        assert f"[train] rank {rank}/2: QLoRA base: 14 Linear4bit layers" in log

    done = run_dir.done_record("train", 0)
    assert done["steps"] == STEPS
    per_rank, total = done["params_per_rank"], done["params_total"]
    assert len(per_rank) == 2 and all(0.45 * total <= n <= 0.55 * total for n in per_rank), done

    loss = tb_scalars(run_dir.tensorboard_dir, "train/loss")
    assert sorted(loss) == list(range(1, STEPS + 1))
    assert sum(loss[s] for s in range(8, 11)) / 3 < sum(loss[s] for s in range(1, 4)) / 3 - 0.2, loss

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from jobs.tiny_model import resolve_model_path

    base = AutoModelForCausalLM.from_pretrained(
        str(resolve_model_path(recipe.model.path)), dtype=torch.float32, device_map={"": "cpu"},
        quantization_config=quantization_config(recipe.model, recipe.stages.train)).dequantize()
    reloaded = PeftModel.from_pretrained(base, str(checkpoint.step_dir(run_dir.checkpoints_dir, STEPS) / "adapter"))
    assert validation_loss(reloaded, run_dir, recipe, world_size=2) == pytest.approx(done["eval_loss"], abs=1e-5)
