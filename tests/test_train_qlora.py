"""QLoRA for real on CPU (bitsandbytes' pure-torch kernels, the code path GPUs run): the recipe's
quantization block becomes BitsAndBytesConfig, the tiny model loads into Linear4bit layers,
trains 20 steps with the loss falling, resumes exactly after USR2, and merges into a plain HF
directory whose logits equal the dequantised base + adapter."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jobs import merge, train
from jobs.tiny_model import resolve_model_path
from jobs.training import checkpoint
from jobs.training import model as model_mod
from launcher.recipe import ModelSpec, Recipe, TrainStage
from launcher.rundir import RunDir
from test_merge import merge_context, with_merge
from test_train_resume import context, stop_by_usr2_after_step, tb_scalars, tiny_recipe


#: Logits of the merged fp32 model against the dequantised base + unmerged adapter: the same
#: weights summed in another order, so they agree to float32 rounding.
MERGE_ATOL = 1e-5


def qlora_recipe(**fields) -> Recipe:
    return tiny_recipe(peft_type="qlora", gradient_checkpointing=True, **fields)


def stage(**fields) -> TrainStage:
    data = {"datasets": [{"path": "data/x"}], "peft_type": "qlora",
            "distributed": {"backend": "none", "zero_stage": 0, "mixed_precision": "no"}}
    data.update(fields)
    return TrainStage.model_validate(data)


def spec(dtype: str = "fp32") -> ModelSpec:
    return ModelSpec(path="builtin:tiny-llama", model_name="tiny", dtype=dtype)


def test_bitsandbytes_range_is_one_definition_and_installed() -> None:
    """setup.py's train extra and the error message name the same range, and this venv has it."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    setup_text = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    assert f'"{model_mod.BITSANDBYTES_REQUIREMENT}"' in setup_text
    assert version("bitsandbytes") in Requirement(model_mod.BITSANDBYTES_REQUIREMENT).specifier


def test_quantization_block_becomes_bitsandbytes_config() -> None:
    fp4 = model_mod.quantization_config(spec(), stage(quantization={"quant_type": "fp4", "double_quant": False}))
    assert fp4.load_in_4bit and fp4.bnb_4bit_quant_type == "fp4" and not fp4.bnb_4bit_use_double_quant
    assert fp4.bnb_4bit_compute_dtype == fp4.bnb_4bit_quant_storage == torch.float32  # the model's dtype
    bf16 = stage(distributed={"backend": "none", "zero_stage": 0, "mixed_precision": "bf16"})
    nf4 = model_mod.quantization_config(spec("bf16"), bf16)
    assert nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant
    assert nf4.bnb_4bit_compute_dtype == nf4.bnb_4bit_quant_storage == torch.bfloat16
    stored = model_mod.quantization_config(spec("bf16"), stage(quantization={"quant_storage": "fp16"}))
    assert stored.bnb_4bit_quant_storage == torch.float16
    eight = model_mod.quantization_config(spec(), stage(quantization={"bits": 8}))
    assert eight.load_in_8bit and not eight.load_in_4bit


@pytest.mark.parametrize("dtype,mixed", [("fp32", "no"), ("bf16", "bf16")])
def test_4bit_model_is_really_built(dtype: str, mixed: str) -> None:
    train_stage = stage(lora={"rank": 4, "target_modules": None},
                        distributed={"backend": "none", "zero_stage": 0, "mixed_precision": mixed})
    net = model_mod.build_model(spec(dtype), train_stage, resolve_model_path("builtin:tiny-llama"), torch.device("cpu"))
    assert model_mod.quantized_layers(net) == {"Linear4bit": 14}  # 2 layers x 7 projections (the llama targets)
    want = model_mod.TORCH_DTYPES[dtype]
    q_proj = net.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit" and q_proj.base_layer.weight.dtype == want
    assert q_proj.base_layer.compute_dtype == want
    layers = net.base_model.model.model.layers
    assert net.training and all(layer.gradient_checkpointing for layer in layers)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    line = model_mod.describe_quantization(net, train_stage)
    assert "14 Linear4bit layers" in line and "nf4" in line and str(want) in line


def test_8bit_model_trains_a_step(tmp_path: Path) -> None:
    result = train.run_stage(context(tmp_path, qlora_recipe(quantization={"bits": 8}, max_steps=2, evaluation_steps=2)))
    assert result["steps"] == 2 and result["train_loss"] > 0
    adapter = load_file(str(Path(result["checkpoint"]) / "trainable.safetensors"))
    assert adapter and all("lora_" in name for name in adapter)


def test_qlora_trains_20_steps_and_merges(tmp_path: Path) -> None:
    recipe = with_merge(qlora_recipe(max_steps=20, evaluation_steps=10, checkpointing_steps=10), "last")
    result = train.run_stage(context(tmp_path, recipe))
    run = RunDir(tmp_path)
    loss = tb_scalars(run.tensorboard_dir, "train/loss")
    assert sorted(loss) == list(range(1, 21))
    head, tail = sum(loss[s] for s in range(1, 6)) / 5, sum(loss[s] for s in range(16, 21)) / 5
    assert tail < head - 0.2, (head, tail)

    merged_info = merge.run_stage(merge_context(tmp_path, recipe))
    assert merged_info["step"] == 20
    assert json.loads((run.merged_dir / merge.INFO_FILE).read_text())["base"] == "dequantized"
    config = json.loads((run.merged_dir / "config.json").read_text())
    assert "quantization_config" not in config and not (run.merged_dir / "adapter_config.json").exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(run.merged_dir), dtype=torch.float32).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert all(type(m).__module__.startswith(("torch", "transformers")) for m in merged.modules())

    # the reference: the 4-bit base as trained, dequantised, with the adapter applied unmerged
    quantised = AutoModelForCausalLM.from_pretrained(
        str(resolve_model_path("builtin:tiny-llama")), dtype=torch.float32, device_map={"": "cpu"},
        quantization_config=model_mod.quantization_config(recipe.model, recipe.stages.train))
    dequantised = quantised.dequantize()
    reference = PeftModel.from_pretrained(dequantised, str(Path(result["checkpoint"]) / "adapter")).eval()
    ids = torch.randint(8, 1024, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = merged(ids).logits, reference(ids).logits
        with reference.disable_adapter():
            base = reference(ids).logits
    assert (got - want).abs().max().item() <= MERGE_ATOL
    assert (got - base).abs().max().item() > 1e-2  # the adapter did change the model

    # generation with the merged model works, and matches the trained model's greedy tokens
    prompt = ids[:1, :8]
    out = merged.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=7)
    assert out.shape == (1, 16)
    assert torch.equal(out, reference.generate(input_ids=prompt, max_new_tokens=8, do_sample=False, pad_token_id=7))

    # merge.qlora_base: original merges into the full-precision weights instead
    data = recipe.model_dump(mode="json")
    data["stages"]["merge"]["qlora_base"] = "original"
    original = Recipe.model_validate(data)
    assert merge.run_stage(merge_context(tmp_path, original))["step"] == 20
    assert json.loads((run.merged_dir / merge.INFO_FILE).read_text())["base"] == "original"
    full_base = AutoModelForCausalLM.from_pretrained(str(resolve_model_path("builtin:tiny-llama")), dtype=torch.float32)
    on_original = PeftModel.from_pretrained(full_base, str(Path(result["checkpoint"]) / "adapter")).eval()
    remerged = AutoModelForCausalLM.from_pretrained(str(run.merged_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        assert (remerged(ids).logits - on_original(ids).logits).abs().max().item() <= MERGE_ATOL


def test_qlora_resume_after_usr2_is_exact(tmp_path: Path, usr2_handler) -> None:
    recipe = qlora_recipe()
    whole = train.run_stage(context(tmp_path / "whole", recipe))
    assert whole["steps"] == 10

    run = stop_by_usr2_after_step(tmp_path / "split", recipe, 5)
    assert checkpoint.saved_steps(run.checkpoints_dir)[-1] == 5
    resumed = train.run_stage(context(tmp_path / "split", recipe, restart=1))

    assert resumed["steps"] == 10 and resumed["restarts"] == 1
    loss_whole = tb_scalars(RunDir(tmp_path / "whole").tensorboard_dir, "train/loss")
    loss_split = tb_scalars(run.tensorboard_dir, "train/loss")
    assert sorted(loss_split) == list(range(1, 11))
    assert [loss_split[s] for s in range(1, 11)] == pytest.approx([loss_whole[s] for s in range(1, 11)], abs=1e-6)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)
    a = load_file(str(Path(whole["checkpoint"]) / "trainable.safetensors"))
    b = load_file(str(Path(resumed["checkpoint"]) / "trainable.safetensors"))
    assert a.keys() == b.keys() and all("lora_" in k for k in a)
    assert all(torch.allclose(a[k], b[k], atol=1e-7, rtol=0) for k in a)
