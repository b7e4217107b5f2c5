"""The rules that tie QLoRA's quantisation to DeepSpeed's ZeRO stages and offload settings.

Why a table of named rules: each combination below fails at run time, hours into a queue wait,
in a way that does not say what went wrong (a shape error inside DeepSpeed, silently corrupted
weights, an adapter saved empty). `mftlaunch validate` (and every later step that reads the
recipe) checks them up front; the error names the rule, the fields and the fix, and
docs/TRAINING.md lists the same rules. Plain data, no torch: this runs on the login node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from launcher.recipe import TrainStage

#: The dtype matmuls run in, by `distributed.mixed_precision`; "no" means the model's own dtype.
MIXED_DTYPE = {"bf16": "bf16", "fp16": "fp16", "no": None}


@dataclass(frozen=True)
class Rule:
    """One refused combination: `check` returns the problem and its fix, or None."""

    name: str
    check: Callable[["TrainStage", Optional[str]], Optional[str]]


def compute_dtype(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    """bf16/fp16/fp32, or None when it is the model's dtype and that is not known here (the
    train stage is checked alone first, then again inside the recipe, with model.dtype)."""
    return MIXED_DTYPE[train.distributed.mixed_precision] or model_dtype


def _zero3(train: "TrainStage") -> bool:
    return train.distributed.backend == "deepspeed" and train.distributed.zero_stage == 3


def _qlora(train: "TrainStage") -> bool:
    return train.peft_type == "qlora" and train.quantization is not None


def _8bit_zero3(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    if _qlora(train) and train.quantization.bits == 8 and _zero3(train):
        return ("quantization.bits: 8 with distributed.zero_stage: 3: bitsandbytes' 8-bit weights (int8 with "
                "per-row scales) cannot be partitioned by ZeRO-3; fix: quantization.bits: 4 (quant_storage equal "
                "to the compute dtype) or distributed.zero_stage: 2")
    return None


def _zero3_storage(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    if not (_qlora(train) and train.quantization.bits == 4 and _zero3(train)):
        return None
    compute = compute_dtype(train, model_dtype)
    storage = train.quantization.quant_storage
    if compute is not None and storage is not None and storage != compute:
        return (f"QLoRA with ZeRO-3 needs quantization.quant_storage equal to the compute dtype ({compute}), got "
                f"{storage}: ZeRO-3 flattens parameters of one dtype into its partitions; fix: "
                f"quantization.quant_storage: {compute} (or leave it unset)")
    return None


def _zero3_save(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    if _qlora(train) and _zero3(train) and not train.distributed.zero3_save_16bit_model:
        return ("QLoRA with ZeRO-3 needs distributed.zero3_save_16bit_model: true to save the adapter: without it "
                "every rank saves only its empty shard of the LoRA weights; fix: zero3_save_16bit_model: true")
    return None


def _deepspeed_cast(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    dist = train.distributed
    if not (_qlora(train) and train.quantization.bits == 4 and dist.backend == "deepspeed") or _zero3(train):
        return None
    compute = MIXED_DTYPE[dist.mixed_precision]  # DeepSpeed casts only under mixed precision
    storage = train.quantization.quant_storage
    if compute is not None and storage is not None and storage != compute:
        return (f"quantization.quant_storage: {storage} with DeepSpeed mixed_precision: {compute}: DeepSpeed casts "
                f"every floating-point parameter to {compute} at start, which would convert the packed 4-bit bytes "
                f"as if they were numbers and destroy the weights; fix: quantization.quant_storage: {compute} "
                "(or leave it unset)")
    return None


def _storage_is_4bit_only(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    if _qlora(train) and train.quantization.bits == 8 and train.quantization.quant_storage is not None:
        return ("quantization.quant_storage applies to 4-bit weights only (8-bit weights are int8); fix: remove "
                "quant_storage or set quantization.bits: 4")
    return None


def _offload_optimizer_needs_zero(train: "TrainStage", model_dtype: Optional[str]) -> Optional[str]:
    dist = train.distributed
    if dist.backend == "deepspeed" and dist.offload_optimizer == "cpu" and dist.zero_stage == 0:
        return ("distributed.offload_optimizer: cpu with zero_stage: 0: ZeRO-Offload moves the ZeRO-partitioned "
                "optimizer state, which stage 0 does not have; fix: zero_stage: 2 (or offload_optimizer: none)")
    return None


#: Every rule, in the order its message is reported.
RULES: tuple[Rule, ...] = (
    Rule("qlora-8bit-zero3", _8bit_zero3),
    Rule("qlora-zero3-quant-storage", _zero3_storage),
    Rule("qlora-zero3-16bit-save", _zero3_save),
    Rule("qlora-deepspeed-cast", _deepspeed_cast),
    Rule("qlora-quant-storage-4bit-only", _storage_is_4bit_only),
    Rule("offload-optimizer-needs-zero", _offload_optimizer_needs_zero),
)


def violations(train: "TrainStage", model_dtype: Optional[str] = None) -> list[str]:
    """One line per broken rule: `rule <name>: <fields>: <why>; fix: <change>`. Without
    `model_dtype`, rules that need it pass when mixed_precision is "no"."""
    return [f"rule {rule.name}: {problem}" for rule in RULES if (problem := rule.check(train, model_dtype))]
