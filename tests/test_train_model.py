"""Model construction: LoRA targets per family, QLoRA's dependency check, checkpointing really on."""
from __future__ import annotations

import sys

import pytest
import torch

from jobs.tiny_model import resolve_model_path
from jobs.training import model as model_mod
from jobs.training.engine import deepspeed_config
from launcher.recipe import ModelSpec, TrainStage


def stage(**fields) -> TrainStage:
    data = {"datasets": [{"path": "data/x"}], "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"}}
    data.update(fields)
    return TrainStage.model_validate(data)


def spec(model_type: str = "llama") -> ModelSpec:
    return ModelSpec(path="builtin:tiny-llama", model_name="tiny", model_type=model_type, dtype="fp32")


@pytest.mark.parametrize("family,expected", [
    ("codellama", "down_proj"), ("qwen2", "gate_proj"), ("gpt_bigcode", "c_fc"), ("starcoder", "c_attn"),
    ("gpt_neox", "query_key_value"), ("qwen", "w2"), ("mixtral", "o_proj"), ("deepseek", "up_proj"),
])
def test_family_default_targets(family: str, expected: str) -> None:
    assert expected in model_mod.target_modules(spec(family), stage())


def test_recipe_targets_win() -> None:
    assert model_mod.target_modules(spec(), stage(lora={"target_modules": "all-linear"})) == "all-linear"
    assert model_mod.target_modules(spec(), stage(lora={"target_modules": ["q_proj"]})) == ["q_proj"]


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, installed or not
    with pytest.raises(RuntimeError, match="bitsandbytes"):
        model_mod.quantization_config(spec(), stage(peft_type="qlora"))


def test_built_model_trains_with_checkpointing_and_lora() -> None:
    net = model_mod.build_model(spec(), stage(gradient_checkpointing=True, lora={"rank": 4}),
                                resolve_model_path("builtin:tiny-llama"), torch.device("cpu"))
    layers = net.base_model.model.model.layers
    assert net.training and all(layer.training and layer.gradient_checkpointing for layer in layers)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not net.base_model.model.config.use_cache


def test_deepspeed_config_follows_the_recipe() -> None:
    cfg = deepspeed_config(stage(per_device_train_batch_size=3, gradient_accumulation_steps=4, distributed={
        "backend": "deepspeed", "zero_stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu",
        "mixed_precision": "bf16", "gradient_clipping": 0.5}))
    assert (cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"], cfg["gradient_clipping"]) == (3, 4, 0.5)
    assert cfg["bf16"]["enabled"] and not cfg["fp16"]["enabled"]
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "auto" not in str(cfg)
