"""The router load-balancing auxiliary loss of mixture-of-experts models, added to the MFT loss
as MFTCoder adds it (loss += router_aux_loss_coef × load_balancing_loss).

Without it the routers of a fine-tuned Mixtral drift towards a few experts. The loss itself is
transformers' `load_balancing_loss_func` (the Switch-Transformer term the model's own forward
computes); here it sees the real tokens only (`sample_index >= 0`), so padding and the packed
rows' filler do not count as routed tokens — MFTCoder passes the batch's attention mask, which
is the same set for padded batches.

The router logits are captured with forward hooks on the modules transformers itself records them
from (the model's `_can_record_outputs["router_logits"]`), not by asking the forward for
`output_router_logits`: the model would then compute its own copy of the loss from the attention
mask, which fails on packed batches' block-diagonal 4D masks.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn


def experts_of(config: Any) -> int:
    """Experts per MoE layer of a model config; 0 for a dense model."""
    return int(getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 0)


def aux_coefficient(recipe_coef: Optional[float], config: Any) -> float:
    """The coefficient in effect: the recipe's `moe_aux_loss_coef`, else (None) the model config's
    `router_aux_loss_coef` for MoE models (Mixtral-8x7B: 0.02) and 0 for dense ones."""
    if recipe_coef is not None:
        if recipe_coef > 0 and experts_of(config) < 2:
            raise ValueError(f"moe_aux_loss_coef is {recipe_coef}, but the model ({getattr(config, 'model_type', '?')}) "
                             "has no experts to balance; remove it")
        return float(recipe_coef)
    if experts_of(config) < 2:
        return 0.0
    return float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0)


def load_balancing(router_logits: Any, config: Any, token_mask: torch.Tensor) -> torch.Tensor:
    """The unweighted load-balancing loss of one forward's router logits over the real tokens."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    top_k = int(getattr(config, "num_experts_per_tok", 2))
    return load_balancing_loss_func(tuple(router_logits), experts_of(config), top_k, token_mask.long())


class RouterLogits:
    """Collects the router logits of every MoE layer during the forwards inside `with`."""

    def __init__(self, model: nn.Module) -> None:
        recorder = next((m._can_record_outputs["router_logits"] for m in model.modules()
                         if "router_logits" in (getattr(m, "_can_record_outputs", None) or {})), None)
        if recorder is None:
            raise ValueError(f"{type(model).__name__} declares no router logits: it is not a mixture-of-experts model")
        self.index = recorder.index
        self.routers = [m for m in model.modules() if isinstance(m, recorder.target_class)]
        self.logits: list[torch.Tensor] = []
        self._handles: list[Any] = []

    def _hook(self, _module: nn.Module, _args: Any, output: Any) -> None:
        self.logits.append(output[self.index] if isinstance(output, (tuple, list)) else output)

    def __enter__(self) -> "RouterLogits":
        self.logits = []
        self._handles = [m.register_forward_hook(self._hook) for m in self.routers]
        return self

    def __exit__(self, *_exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
