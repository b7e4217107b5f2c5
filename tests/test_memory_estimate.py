"""Memory estimate: parameter counts from config.json, refusals for impossible recipes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import memory_estimate as memory
from launcher.recipe import TrainStage

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "recipes" / "models"


def config(name: str) -> dict:
    return json.loads((MODELS / name / "config.json").read_text())


def stage(**fields) -> TrainStage:
    data = {"datasets": [{"path": "data/x"}], "seq_length": 4096, "per_device_train_batch_size": 1,
            "resources": {"nodes": 1, "gpus_per_node": 8}}
    data.update(fields)
    return TrainStage.model_validate(data)


def test_parameter_counts_match_the_published_sizes() -> None:
    assert memory.shapes_from_config(config("codellama-34b")).total_params() == pytest.approx(33.74e9, rel=0.01)
    assert memory.shapes_from_config(config("codellama-7b")).total_params() == pytest.approx(6.74e9, rel=0.01)
    # LoRA r=96 on all seven projections of CodeLlama-34B: 654M (training.md §2.3)
    assert memory.lora_params(memory.shapes_from_config(config("codellama-34b")), 96) == pytest.approx(654e6, rel=0.01)


def test_full_finetune_34b_without_zero3_on_8_gpus_is_refused() -> None:
    train = stage(peft_type="full", distributed={"zero_stage": 2})
    est = memory.estimate(config("codellama-34b"), train, num_gpus=8)
    problems = memory.problems(est, train, gpu_mem_gib=80)
    assert est.gpu_gib["weights"] > 60  # ZeRO-2 keeps the bf16 weights on every GPU
    assert problems and "zero_stage: 3" in problems[0]


def test_full_finetune_34b_needs_16_gpus_or_offload_with_zero3() -> None:
    cfg = config("codellama-34b")
    zero3 = stage(peft_type="full", distributed={"zero_stage": 3})
    assert memory.problems(memory.estimate(cfg, zero3, num_gpus=8), zero3, 80)
    assert not memory.problems(memory.estimate(cfg, zero3, num_gpus=16), zero3, 80)
    offload = stage(peft_type="full", distributed={"zero_stage": 3, "offload_optimizer": "cpu"})
    est = memory.estimate(cfg, offload, num_gpus=8)
    assert not memory.problems(est, offload, 80)
    assert est.cpu_gib_per_node > 400  # the host must hold the fp32 optimizer state (~0.5 TB)


def test_qlora_34b_fits_one_gpu_and_lora_7b_fits() -> None:
    qlora = stage(peft_type="qlora", per_device_train_batch_size=2, resources={"gpus_per_node": 1})
    est = memory.estimate(config("codellama-34b"), qlora)
    assert 25 < est.per_gpu_gib < 60 and not memory.problems(est, qlora, 80)
    lora = stage(peft_type="lora")
    assert not memory.problems(memory.estimate(config("codellama-7b"), lora), lora, 80)


def test_other_families_parse() -> None:
    bigcode = {"model_type": "gpt_bigcode", "n_embd": 6144, "n_layer": 40, "n_head": 48, "n_inner": 24576,
               "vocab_size": 49152, "n_positions": 8192, "multi_query": True}
    assert memory.shapes_from_config(bigcode).total_params() == pytest.approx(15.5e9, rel=0.03)  # StarCoder-15B
    mixtral = {"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000, "num_local_experts": 8}
    assert memory.shapes_from_config(mixtral).total_params() == pytest.approx(46.7e9, rel=0.01)


def test_model_config_lookup(tmp_path: Path) -> None:
    assert memory.load_model_config("builtin:tiny-llama")["model_type"] == "llama"
    assert memory.load_model_config(str(MODELS / "codellama-7b"))["hidden_size"] == 4096
    assert memory.load_model_config(str(tmp_path / "only-on-the-cluster")) is None


def test_memory_module_imports_no_torch() -> None:
    code = "import sys, launcher.memory_estimate as m; m.load_model_config('builtin:tiny-llama'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
