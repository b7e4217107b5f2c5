"""Which devices one generation rank uses: the recipe's `placement` meets what the node shows.

- `data_parallel` (default): one rank per device; each loads the whole model on its own device
  (`cuda:LOCAL_RANK`, or the one GPU Slurm bound to the task) and generates a share of the rows
  (`jobs.generation.ranks`).
- `split`: the planner starts one rank per node; it places the model across all the node's GPUs
  (transformers' `device_map="auto"` with a memory cap per GPU and no CPU offload, so a model that
  does not fit fails at load instead of crawling; vLLM: `tensor_parallel_size`). Across nodes the
  ranks are still data-parallel.

A CPU rank is one device: torch has no separately addressable CPU devices, so `split` on CPU
loads the model whole (the planner refuses `split` without GPUs; the device map is tested on CPU
with accelerate's planner, docs/EVALUATION.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

#: Share of each GPU the split model's weights may take; the rest holds the KV cache and activations.
SPLIT_WEIGHT_SHARE = 0.8


@dataclass(frozen=True)
class DevicePlan:
    """Where this rank's engine puts the model."""

    device: Optional[str]  # the whole model on this device; None with a split
    split_over: int = 1  # GPUs the model is placed across

    @property
    def is_split(self) -> bool:
        return self.split_over > 1


def device_plan(placement: str, local_rank: int, visible_gpus: int) -> DevicePlan:
    """The plan of a rank with `local_rank` on a node where it sees `visible_gpus` GPUs."""
    if visible_gpus == 0:
        return DevicePlan("cpu")
    if placement == "split" and visible_gpus > 1:
        return DevicePlan(None, visible_gpus)
    return DevicePlan(f"cuda:{local_rank % visible_gpus}")


def split_memory(gpu_bytes: list[int], share: float = SPLIT_WEIGHT_SHARE) -> dict[Any, int]:
    """accelerate's `max_memory` for a split: a cap per GPU index, no CPU entry (no offload)."""
    return {index: int(total * share) for index, total in enumerate(gpu_bytes)}


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_totals(count: int) -> list[int]:
    import torch

    return [torch.cuda.get_device_properties(i).total_memory for i in range(count)]
