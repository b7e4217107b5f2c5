"""Build the model to train: base weights (optionally 4/8-bit), LoRA adapters, checkpointing.

Decisions worth keeping (training.md §1.6, §2.1, DESIGN.md):
- `from_pretrained` returns a model in eval mode and HF then skips gradient checkpointing without
  a word (memory balloons); `build_model` ends with `model.train()`.
- QLoRA stores the 4-bit weights in the compute dtype (`bnb_4bit_quant_storage`), the only way
  ZeRO-3 can shard them; under ZeRO-3 `prepare_model_for_kbit_training` is not called (it upcasts
  the non-quantised weights to fp32 per rank) and checkpointing is reentrant (the non-reentrant
  variant raises CheckpointError with ZeRO-3's gathered parameters).
- bitsandbytes is imported only for QLoRA, with an error that says what to install. QLoRA runs
  on CPU too (bitsandbytes' pure-torch kernels): the same load, k-bit preparation, checkpointing
  and LoRA as on GPUs, only slower; CI trains, resumes and merges a 4-bit model that way.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Union

import torch

from launcher.recipe import ModelSpec, TrainStage

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: The bitsandbytes versions QLoRA is tested with (setup.py's `train` extra says the same).
BITSANDBYTES_REQUIREMENT = "bitsandbytes>=0.50.2,<0.51"

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: LoRA targets when the recipe names none: every linear projection of the family's blocks.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "llama": _LLAMA_LIKE,
    "codellama": _LLAMA_LIKE,
    "deepseek": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    # transformers 5 stores Mixtral's experts as fused 3-D parameters, not Linear layers:
    # LoRA reaches the attention projections
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen": ["c_attn", "c_proj", "w1", "w2"],
    "starcoder": ["c_attn", "q_attn", "c_proj", "c_fc"],
    "gpt_bigcode": ["c_attn", "q_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def compute_dtype(model: ModelSpec, train: TrainStage) -> torch.dtype:
    """The dtype matmuls run in: the mixed-precision setting, else the model's dtype."""
    mixed = train.distributed.mixed_precision
    return TORCH_DTYPES[model.dtype] if mixed == "no" else TORCH_DTYPES[mixed]


def storage_dtype(model: ModelSpec, train: TrainStage) -> torch.dtype:
    """The dtype weights are loaded in. DeepSpeed keeps its own fp32 master copy, and frozen
    weights need none, so both load in the compute dtype; a full fine-tune without DeepSpeed
    keeps fp32 weights under mixed precision (autocast computes in the low precision)."""
    if train.is_peft or train.distributed.backend == "deepspeed" or train.distributed.mixed_precision == "no":
        return compute_dtype(model, train)
    return torch.float32


def target_modules(model: ModelSpec, train: TrainStage) -> Union[str, list[str]]:
    """The recipe's list, `all-linear`, or the family default."""
    chosen = train.lora.target_modules
    if chosen is not None:
        return chosen
    return list(DEFAULT_TARGETS[model.model_type])


def quantization_config(model: ModelSpec, train: TrainStage):
    """BitsAndBytesConfig for QLoRA (4-bit nf4/fp4 with double quant, or 8-bit). The same on CPU
    and GPU; which combinations DeepSpeed can shard is checked with the recipe (launcher.quant_rules)."""
    quant = train.quantization
    try:
        import bitsandbytes  # noqa: F401  (transformers needs it at load time; fail early and clearly)
    except ImportError as exc:
        raise RuntimeError(
            "peft_type: qlora needs the bitsandbytes package: pip install -e '.[train]' (or "
            f"pip install '{BITSANDBYTES_REQUIREMENT}'); use peft_type: lora where it cannot be installed"
        ) from exc
    from transformers import BitsAndBytesConfig

    compute = compute_dtype(model, train)
    if quant.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    storage = TORCH_DTYPES[quant.quant_storage] if quant.quant_storage else compute
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=storage,
    )


def _bnb_linear_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    """bitsandbytes' own Linear4bit / Linear8bitLt modules (peft's LoRA wrappers around them share
    the class names and are left out), found by module path: no import of bitsandbytes needed."""
    return [m for m in net.modules()
            if type(m).__module__.startswith("bitsandbytes") and type(m).__name__.startswith("Linear")]


def quantized_layers(net: torch.nn.Module) -> dict[str, int]:
    """How many layers of each bitsandbytes class the model holds, e.g. {"Linear4bit": 14}."""
    counts: dict[str, int] = {}
    for module in _bnb_linear_layers(net):
        counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


def describe_quantization(net: torch.nn.Module, train: TrainStage) -> str:
    """One log line: the quantised layers really present and how they are stored, e.g.
    `QLoRA base: 14 Linear4bit layers (nf4, double quant, storage torch.bfloat16, compute ...)`."""
    counts = quantized_layers(net)
    layers = ", ".join(f"{n} {cls} layers" for cls, n in sorted(counts.items())) or "no quantised layers"
    quant = train.quantization
    if quant.bits == 8:
        return f"QLoRA base: {layers} (8-bit)"
    example = next((m for m in _bnb_linear_layers(net) if type(m).__name__ == "Linear4bit"), None)
    detail = ""
    if example is not None:
        state = example.weight.quant_state
        detail = (f", storage {example.weight.dtype}, compute {example.compute_dtype}, "
                  f"quant_type {state.quant_type}, blocksize {state.blocksize}")
    return (f"QLoRA base: {layers} ({quant.quant_type}, double quant {'on' if quant.double_quant else 'off'}"
            f"{detail}) on {next(net.parameters()).device}")


def load_tokenizer(model: ModelSpec, model_dir: Path):
    """The tokenizer of the model (or `tokenizer_path`); pad falls back to eos, which is safe
    because the losses use an explicit target mask, never `labels == pad`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(model.tokenizer_path or model_dir), trust_remote_code=model.trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(model: ModelSpec, train: TrainStage, model_dir: Path, device: torch.device):
    """The pretrained model, unwrapped. Under ZeRO-3 the caller has created a HfDeepSpeedConfig
    first, so transformers partitions the weights while loading (no device_map then: every rank
    would otherwise materialise the whole model). A quantised model must be placed on its GPU
    at load time; other models are moved by the engine."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        dtype=storage_dtype(model, train),
        attn_implementation=model.attn_implementation,
        trust_remote_code=model.trust_remote_code,
    )
    if train.peft_type == "qlora":
        kwargs["quantization_config"] = quantization_config(model, train)
        kwargs["device_map"] = {"": device}
    return AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)


def keep_cpu_weight_layout(net: torch.nn.Module) -> None:
    """Turn off bitsandbytes' CPU inference repacking. On CPUs with AVX512-BF16 a Linear4bit that
    runs in eval mode without grad (our validation passes) repacks its weight in place into a
    layout for a fused bf16 kernel and drops double quantisation; that repacking needs
    in_features divisible by the blocksize (the tiny model's 352 is not) and the layer then stays
    in that layout for the training steps after it. One layout keeps validation and training on
    the same weights, as on GPUs."""
    for module in _bnb_linear_layers(net):
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def enable_checkpointing(base, reentrant: bool) -> None:
    """Activation checkpointing under its transformers 5 name, or the older one."""
    kwargs = {"use_reentrant": reentrant}
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if reentrant:  # reentrant checkpointing needs an input that requires grad, or no grads flow
        base.enable_input_require_grads()


def build_model(model: ModelSpec, train: TrainStage, model_dir: Path, device: torch.device):
    """Base + (LoRA | QLoRA | nothing), checkpointing set up, in train mode."""
    base = load_base(model, train, model_dir, device)
    base.config.use_cache = False
    zero3 = train.distributed.backend == "deepspeed" and train.distributed.zero_stage == 3
    if train.peft_type == "qlora" and device.type == "cpu":
        print("[train] QLoRA on CPU: bitsandbytes' pure-torch 4-bit kernels, the same code path as on GPUs; "
              "correct but slow, meant for tests and demos", file=sys.stderr, flush=True)
        keep_cpu_weight_layout(base)
    if train.peft_type == "qlora" and not zero3:
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    if train.gradient_checkpointing:
        enable_checkpointing(base, reentrant=zero3)
    net = base
    if train.is_peft:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=train.lora.rank,
            lora_alpha=train.lora.alpha,
            lora_dropout=train.lora.dropout,
            target_modules=target_modules(model, train),
            bias="none",
        )
        net = get_peft_model(base, config)
    else:
        for param in net.parameters():
            param.requires_grad_(True)
    net.train()
    return net


def trainable_named_parameters(net: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in net.named_parameters() if p.requires_grad]
