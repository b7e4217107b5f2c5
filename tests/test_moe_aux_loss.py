"""The MoE router load-balancing loss: a tiny Mixtral-architecture model trains with it, the
logged term is non-zero, and its coefficient changes the loss by exactly coefficient × the
balancing loss (the first step, before any update, sees the same weights in every run)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs import train
from jobs.mft.moe_aux import aux_coefficient
from launcher.recipe import Recipe
from test_train_resume import TINY_MFT, context, tb_scalars
from launcher.rundir import RunDir


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFTLAUNCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        from jobs.tiny_model import resolve_model_path

        llama = resolve_model_path("builtin:tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(llama))
    config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           router_aux_loss_coef=0.02, max_position_embeddings=256,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-mixtral")
    MixtralForCausalLM(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def mixtral_recipe(model: Path, steps: int, **fields) -> Recipe:
    stage = {
        "datasets": [{"path": str(TINY_MFT / name)} for name in ("codegen", "explain")],
        "seq_length": 64, "padding_mode": "pack", "validation_split": 0.1,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 2e-3, "min_lr": 1e-4,
        "num_warmup_steps": 1, "max_steps": steps, "log_interval": 1, "evaluation_steps": 100,
        "checkpointing_steps": 100, "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
        "gradient_checkpointing": False, "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"},
        "resources": {"gpus_per_node": 0}, **fields,
    }
    return Recipe.model_validate({
        "name": "moe", "model": {"path": str(model), "model_name": "tiny-moe", "model_type": "mixtral", "dtype": "fp32"},
        "stages": {"train": stage},
    })


def first_step(root: Path, recipe: Recipe) -> tuple[dict, dict]:
    train.run_stage(context(root, recipe))
    tb = RunDir(root).tensorboard_dir
    aux = tb_scalars(tb, "train/moe_aux_loss") if "train/moe_aux_loss" in _tags(tb) else {}
    return tb_scalars(tb, "train/loss"), aux


def _tags(directory: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return acc.Tags()["scalars"]


def test_the_coefficient_defaults_to_the_model_config_for_moe_only():
    from transformers import LlamaConfig, MixtralConfig

    assert aux_coefficient(None, MixtralConfig(num_local_experts=4, router_aux_loss_coef=0.02)) == 0.02
    assert aux_coefficient(0.0, MixtralConfig(num_local_experts=4)) == 0.0
    assert aux_coefficient(None, LlamaConfig()) == 0.0
    with pytest.raises(ValueError, match="no experts to balance"):
        aux_coefficient(0.01, LlamaConfig())


def test_mixtral_trains_with_the_aux_loss_and_its_coefficient_scales_it(tiny_mixtral, tmp_path):
    loss_a, aux_a = first_step(tmp_path / "a", mixtral_recipe(tiny_mixtral, 4))  # coefficient from config: 0.02
    assert len(loss_a) == 4 and all(torch.isfinite(torch.tensor(v)) for v in loss_a.values())
    assert set(aux_a) == {1, 2, 3, 4} and all(v > 0 for v in aux_a.values())
    loss_b, aux_b = first_step(tmp_path / "b", mixtral_recipe(tiny_mixtral, 1, moe_aux_loss_coef=0.04))
    loss_0, aux_0 = first_step(tmp_path / "0", mixtral_recipe(tiny_mixtral, 1, moe_aux_loss_coef=0.0))
    assert aux_b[1] == pytest.approx(2 * aux_a[1], rel=1e-5)  # the same router logits, twice the weight
    assert loss_b[1] - loss_a[1] == pytest.approx(aux_b[1] - aux_a[1], rel=1e-3)
    assert aux_0 == {} and loss_0[1] == pytest.approx(loss_a[1] - aux_a[1], rel=1e-5)
