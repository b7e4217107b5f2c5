"""Per-GPU memory estimate of the generate stage, from the model's config.json read as plain JSON.

Why: a model whose weights and KV cache do not fit one GPU fails only after the element waited in
the queue and loaded for minutes; the planner refuses it first and names the fix (split the model
across the node's GPUs, fewer rows per batch, a shorter max_length). The terms:

- weights: every parameter in the load dtype (the recipe's model.dtype; generation loads the
  merged or base model unquantised);
- KV cache: keys and values of every layer for `batch_size` rows of up to L tokens, where L is
  max_length (prompt + generation) plus max_new_tokens when that is set (it then bounds the
  generation alone), capped by the model's max_position_embeddings;
- logits: one step's fp32 scores and their softmax over the vocabulary for the batch;
- the training estimate's fixed overhead (CUDA context, allocator) and fragmentation share.

With `placement: split` the weights and the cache divide over the node's GPUs (layers are
placed whole); the logits stay on the last one. No torch import here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from launcher.memory_estimate import DTYPE_BYTES, FIXED_OVERHEAD_GIB, FRAGMENTATION, GIB, shapes_from_config
from launcher.recipe import GenerateStage


@dataclass(frozen=True)
class GenerationEstimate:
    """GiB per GPU by component for one rank of the generate stage."""

    weights_gib: float
    kv_cache_gib: float
    logits_gib: float
    devices: int  # GPUs the model is split across (1: data-parallel, a whole model per GPU)
    tokens_per_row: int

    @property
    def per_gpu_gib(self) -> float:
        subtotal = self.weights_gib + self.kv_cache_gib + self.logits_gib
        return subtotal * (1 + FRAGMENTATION) + FIXED_OVERHEAD_GIB

    def summary(self) -> str:
        where = f"split over {self.devices} GPUs" if self.devices > 1 else "a whole model per GPU"
        return (f"~{self.per_gpu_gib:.1f} GiB per GPU, {where} (weights {self.weights_gib:.1f}, "
                f"KV cache {self.kv_cache_gib:.1f} for {self.tokens_per_row} tokens per row, "
                f"logits {self.logits_gib:.1f})")


def tokens_per_row(config: Mapping[str, Any], stage: GenerateStage) -> int:
    """The longest sequence one row can reach (see the module docstring)."""
    length = stage.max_length + (stage.max_new_tokens or 0)
    limit = config.get("max_position_embeddings") or config.get("n_positions")
    return min(length, int(limit)) if limit else length


def estimate(config: Mapping[str, Any], stage: GenerateStage, dtype: str, devices: int = 1) -> GenerationEstimate:
    """Per-GPU memory of one generate rank holding the model on `devices` GPUs."""
    shapes = shapes_from_config(config)
    width = DTYPE_BYTES[dtype]
    length = tokens_per_row(config, stage)
    weights = shapes.total_params() * width
    kv = 2 * shapes.layers * shapes.kv_heads * shapes.head_dim * width * stage.batch_size * length
    logits = stage.batch_size * shapes.vocab * 4 * 2
    return GenerationEstimate(weights_gib=weights / devices / GIB, kv_cache_gib=kv / devices / GIB,
                              logits_gib=logits / GIB, devices=devices, tokens_per_row=length)


def problems(config: Mapping[str, Any], stage: GenerateStage, dtype: str, gpu_mem_gib: float,
             node_gpus: int) -> list[str]:
    """Why the generate stage cannot fit GPUs of `gpu_mem_gib` (empty: it fits), naming the fix:
    a split across the node's GPUs, then fewer rows per batch or shorter rows."""
    devices = stage.resources.gpus_per_node if stage.placement == "split" else 1
    est = estimate(config, stage, dtype, devices)
    if est.per_gpu_gib <= gpu_mem_gib:
        return []
    hints = []
    for count in range(devices + 1, node_gpus + 1):
        if estimate(config, stage, dtype, count).per_gpu_gib <= gpu_mem_gib:
            hints.append(f"placement: split with resources.gpus_per_node: {count} "
                         f"(~{estimate(config, stage, dtype, count).per_gpu_gib:.0f} GiB per GPU)")
            break
    smaller = _largest_fitting_batch(config, stage, dtype, devices, gpu_mem_gib)
    if smaller:
        hints.append(f"batch_size: {smaller}")
    if not hints:
        hints.append(f"a shorter max_length, or a profile with more or larger GPUs (nodes here have {node_gpus})")
    return [f"estimated {est.per_gpu_gib:.0f} GiB per GPU > {gpu_mem_gib:.0f} GiB available ({est.summary()}); "
            f"try: {' or '.join(hints)}"]


def _largest_fitting_batch(config: Mapping[str, Any], stage: GenerateStage, dtype: str, devices: int,
                           gpu_mem_gib: float) -> Optional[int]:
    for size in range(stage.batch_size - 1, 0, -1):
        if estimate(config, stage.model_copy(update={"batch_size": size}), dtype, devices).per_gpu_gib <= gpu_mem_gib:
            return size
    return None
