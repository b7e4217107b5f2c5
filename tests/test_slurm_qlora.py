"""The flagship's distributed setting, QLoRA nf4 + DeepSpeed ZeRO-2 in bf16, across the two nodes
of the real test cluster through `mftlaunch submit --profile test-cluster`: one rank per node,
each rank's log naming world size 2 and its 4-bit layers, the loss falling, and the adapter
saved."""
from __future__ import annotations

import re

import pytest
import yaml
from safetensors.torch import load_file

from jobs.training import checkpoint
from launcher.recipe import Recipe
from test_slurm_pipeline import run_log, submit, wait_final
from test_train_resume import TINY_MFT, tb_scalars

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STEPS = 20


def qlora_zero2_recipe() -> Recipe:
    return Recipe.model_validate({
        "name": "tiny-qlora-zero2", "model": {"path": "builtin:tiny-llama", "model_name": "tiny", "dtype": "bf16"},
        "stages": {"train": {
            "datasets": [{"path": str(TINY_MFT / name)} for name in ("codegen", "explain", "unittest")],
            "seq_length": 64, "padding_mode": "pack", "validation_split": 0.1,
            "peft_type": "qlora", "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True},
            "per_device_train_batch_size": 2, "learning_rate": 3e-3, "min_lr": 3e-4, "num_warmup_steps": 2,
            "max_steps": STEPS, "log_interval": 1, "evaluation_steps": 100, "checkpointing_steps": 100,
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
            "gradient_checkpointing": True,
            "distributed": {"backend": "deepspeed", "zero_stage": 2, "mixed_precision": "bf16"},
            "resources": {"nodes": 2, "gpus_per_node": 0, "cpus_per_task": 1, "time": "00:20:00"},
        }},
    })


def test_qlora_zero2_bf16_across_two_slurm_nodes(slurm, tmp_path, capsys):
    data = qlora_zero2_recipe().model_dump(mode="json", exclude_none=True)
    data["output_root"] = str(tmp_path / "runs")
    path = tmp_path / "qlora_zero2.yaml"
    path.write_text(yaml.safe_dump(data))
    run_dir = submit(path, capsys)
    rows = wait_final(run_dir, timeout=900)
    log = run_log(run_dir)
    assert rows[0]["state"] == "COMPLETED" and rows[0]["done"], log[-4000:]
    assert rows[0]["node"] == "mft-n[1-2]", rows[0]

    # every rank says it is one of two and names its 4-bit layers (bf16 storage and compute)
    for rank in (0, 1):
        line = re.search(rf"\[train\] rank {rank}/2: QLoRA base: (\d+) Linear4bit layers \(nf4, double quant on, "
                         r"storage torch\.bfloat16, compute torch\.bfloat16", log)
        assert line and int(line.group(1)) == 14, log[-4000:]

    done = run_dir.done_record("train", 0)
    assert done["steps"] == STEPS and len(done["params_per_rank"]) == 2
    loss = tb_scalars(run_dir.tensorboard_dir, "train/loss")
    head = sum(loss[s] for s in range(1, 6)) / 5
    tail = sum(loss[s] for s in range(STEPS - 4, STEPS + 1)) / 5
    assert tail < head - 0.2, (head, tail)

    adapter = checkpoint.step_dir(run_dir.checkpoints_dir, STEPS) / "adapter"
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert weights and all("lora_" in name for name in weights)
    assert any(w.abs().max() > 0 for name, w in weights.items() if "lora_B" in name)  # B starts at zero: it trained
