"""Per-GPU memory estimate of a training recipe, from the model's config.json read as plain JSON.

Why: the launcher's planner runs on a login node without torch and must refuse a recipe that
cannot fit before it queues for days (e.g. full fine-tuning of a 34B model with ZeRO-2 on 8 GPUs:
67 GB of replicated bf16 weights alone). The numbers follow DeepSpeed's own model-state accounting
(training.md §2.4) plus a coarse activation term; they are an estimate for go/no-go decisions
and for the printed plan, not a promise. No torch import here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from launcher.contract import builtin_model_dir, is_builtin_model
from launcher.recipe import TrainStage

GIB = 1024**3
#: CUDA context, NCCL buffers, allocator fragmentation: a fixed floor plus a share of the rest.
FIXED_OVERHEAD_GIB = 2.0
FRAGMENTATION = 0.10
#: On CPU (the peak RSS of a training process): the interpreter with torch, transformers, peft and
#: bitsandbytes imported holds ~0.4 GiB (measured, benchmarks/memory.py); no allocator cache to add.
CPU_FIXED_OVERHEAD_GIB = 0.4
CPU_FRAGMENTATION = 0.0
#: peft keeps LoRA adapters in fp32 whatever the base dtype (autocast_adapter_dtype).
ADAPTER_BYTES = 4
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class Shapes:
    """What the estimate needs from config.json, normalised across model families."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int = 1
    tied_embeddings: bool = False
    extra_embedding_params: int = 0  # learned position embeddings (gpt_bigcode)
    mlp_matrices: int = 3  # gated MLPs have gate/up/down; GELU MLPs two
    linear_bias: bool = False

    @property
    def attention_linear(self) -> list[tuple[int, int]]:
        """(in, out) of the attention projections of one layer."""
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        return [(self.hidden, q_out), (self.hidden, kv_out), (self.hidden, kv_out), (q_out, self.hidden)]

    @property
    def mlp_linear(self) -> list[tuple[int, int]]:
        """(in, out) of the MLP projections of one layer (all experts)."""
        one = [(self.hidden, self.intermediate)] * (self.mlp_matrices - 1) + [(self.intermediate, self.hidden)]
        return one * self.experts

    def layer_params(self) -> int:
        linear = sum(i * o for i, o in self.attention_linear + self.mlp_linear)
        bias = sum(o for _, o in self.attention_linear + self.mlp_linear) if self.linear_bias else 0
        router = self.hidden * self.experts if self.experts > 1 else 0
        return linear + bias + router + 4 * self.hidden  # norms (with bias for LayerNorm families)

    def embedding_params(self) -> int:
        embed = self.vocab * self.hidden
        return embed * (1 if self.tied_embeddings else 2) + self.extra_embedding_params

    def total_params(self) -> int:
        return self.layers * self.layer_params() + self.embedding_params() + 2 * self.hidden

    def largest_tensor(self) -> int:
        """Largest single parameter: what ZeRO-3 must gather at once (DeepSpeed's `largest_layer`)."""
        return max([self.vocab * self.hidden] + [i * o for i, o in self.attention_linear + self.mlp_linear])


def shapes_from_config(config: Mapping[str, Any]) -> Shapes:
    """Read a HF config.json of the families the recipe knows (llama-like, gpt_bigcode, gpt_neox,
    qwen v1, mixtral); other llama-like configs work when they use the usual key names."""
    kind = str(config.get("model_type", "llama"))
    if kind == "gpt_bigcode":
        hidden = int(config["n_embd"])
        heads = int(config["n_head"])
        return Shapes(
            hidden=hidden, layers=int(config["n_layer"]), intermediate=int(config.get("n_inner") or 4 * hidden),
            vocab=int(config["vocab_size"]), heads=heads, kv_heads=1 if config.get("multi_query", True) else heads,
            head_dim=hidden // heads, tied_embeddings=True, mlp_matrices=2, linear_bias=True,
            extra_embedding_params=int(config.get("n_positions", 0)) * hidden,
        )
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    common = dict(
        hidden=hidden, layers=int(config["num_hidden_layers"]), vocab=int(config["vocab_size"]), heads=heads,
        head_dim=int(config.get("head_dim") or hidden // heads),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )
    if kind == "gpt_neox":
        return Shapes(**common, intermediate=int(config.get("intermediate_size") or 4 * hidden), kv_heads=heads,
                      mlp_matrices=2, linear_bias=True)
    if kind == "qwen":  # v1 counts both halves of its gated MLP in intermediate_size
        return Shapes(**common, intermediate=int(config["intermediate_size"]) // 2, kv_heads=heads, linear_bias=True)
    return Shapes(
        **common,
        intermediate=int(config["intermediate_size"]),
        kv_heads=int(config.get("num_key_value_heads") or heads),
        experts=int(config.get("num_local_experts") or 1),
        linear_bias=bool(config.get("attention_bias", False)) or kind == "qwen2",
    )


def lora_params(shapes: Shapes, rank: int) -> int:
    """Adapter parameters: rank × (in + out) for every linear projection of every layer (the
    families' default targets and `all-linear` both cover all of them)."""
    pairs = shapes.attention_linear + shapes.mlp_linear
    return shapes.layers * rank * sum(i + o for i, o in pairs)


@dataclass
class MemoryEstimate:
    """GiB per GPU, by component, and host RAM per node for offloaded state."""

    params_total: int
    params_trainable: int
    num_gpus: int
    gpu_gib: dict[str, float] = field(default_factory=dict)
    cpu_gib_per_node: float = 0.0
    fixed_overhead_gib: float = FIXED_OVERHEAD_GIB
    fragmentation: float = FRAGMENTATION

    @property
    def per_gpu_gib(self) -> float:
        subtotal = sum(self.gpu_gib.values())
        return subtotal * (1 + self.fragmentation) + self.fixed_overhead_gib

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.gpu_gib.items() if v >= 0.05)
        text = (f"~{self.per_gpu_gib:.1f} GiB per GPU on {self.num_gpus} GPU(s) "
                f"({self.params_total / 1e9:.2f}B params, {self.params_trainable / 1e6:.1f}M trainable; {parts})")
        if self.cpu_gib_per_node:
            text += f"; host RAM for offloaded state ~{self.cpu_gib_per_node:.0f} GiB per node"
        return text


def estimate(config: Mapping[str, Any], train: TrainStage, model_dtype: str = "bf16",
             num_gpus: Optional[int] = None, gpus_per_node: Optional[int] = None,
             device: str = "cuda") -> MemoryEstimate:
    """Estimate the per-GPU memory of `train` for the model described by `config`.

    `model_dtype` is the recipe's model.dtype; `num_gpus` and `gpus_per_node` default to the
    stage's resources (they decide the ZeRO shard count and the host RAM per node). `device`
    "cpu" estimates a CPU rank's peak RSS instead: the same terms, the process's own baseline in
    place of the CUDA context and allocator cache. Checked against measured peaks by
    benchmarks/memory.py (docs/PERFORMANCE.md)."""
    shapes = shapes_from_config(config)
    res = train.resources
    per_node = max(1, gpus_per_node or res.gpus_per_node)
    gpus = num_gpus or max(1, res.nodes * res.gpus_per_node)
    nodes = -(-gpus // per_node)
    dist = train.distributed
    total = shapes.total_params()
    compute_bytes = DTYPE_BYTES[model_dtype] if dist.mixed_precision == "no" else 2

    trainable = lora_params(shapes, train.lora.rank) if train.is_peft else total

    deepspeed = dist.backend == "deepspeed"
    zero3 = deepspeed and dist.zero_stage == 3
    # the dtype the torch engine stores trained weights in (jobs.training.model.storage_dtype):
    # fp32 under autocast mixed precision, else the compute dtype
    storage_bytes = compute_bytes if (train.is_peft or deepspeed or dist.mixed_precision == "no") else 4

    # frozen / trained weights as stored on the device
    if train.peft_type == "qlora":
        bits = train.quantization.bits if train.quantization else 4
        quantized = total - shapes.embedding_params()
        # prepare_model_for_kbit_training (not under ZeRO-3) upcasts the unquantised weights to fp32;
        # DeepSpeed's mixed precision casts them back to the compute dtype
        plain_bytes = 4 if not zero3 and not (deepspeed and dist.mixed_precision != "no") else compute_bytes
        weight_bytes = quantized * (bits / 8 + (0.127 / 8 if bits == 4 else 0.02)) + shapes.embedding_params() * plain_bytes
    elif train.is_peft:
        weight_bytes = total * DTYPE_BYTES[model_dtype]
    else:
        weight_bytes = total * storage_bytes
    if deepspeed:
        # gradients in the compute dtype; AdamW's two fp32 moments, plus under mixed precision an
        # fp32 master copy and fp32 gradient partition (DeepSpeed's 16 bytes/param)
        grad_bytes = trainable * compute_bytes
        optim_bytes = trainable * (16 if compute_bytes == 2 else 8)
        step_bytes = 0.0
    else:
        # torch AdamW: gradients and both moments in the trained weights' own dtype (no master
        # copy), and its foreach step makes one more temporary of that size
        trained_bytes = ADAPTER_BYTES if train.is_peft else storage_bytes
        grad_bytes = trainable * trained_bytes
        optim_bytes = trainable * 2 * trained_bytes
        step_bytes = trainable * trained_bytes

    # ZeRO-1 shards the optimizer state, ZeRO-2 also the gradients, ZeRO-3 also the weights
    stage = dist.zero_stage if dist.backend == "deepspeed" else 0
    gpu = {
        "weights": weight_bytes / (gpus if stage >= 3 else 1),
        "grads": grad_bytes / (gpus if stage >= 2 else 1),
        "optimizer": optim_bytes / (gpus if stage >= 1 else 1),
    }
    offloaded = 0.0  # ZeRO-Offload keeps master weights, moments and fp32 gradients on the host
    if dist.offload_optimizer == "cpu":
        offloaded += optim_bytes + (0 if compute_bytes == 2 else trainable * 4)
        gpu["optimizer"] = gpu["grads"] = 0.0
    if dist.offload_param == "cpu":
        offloaded += weight_bytes
        gpu["weights"] = 0.0
    if step_bytes:
        gpu["optimizer_step"] = step_bytes
    if stage >= 3:  # parameters gathered for the layer being computed and the one prefetched
        gpu["zero3_gather"] = 2 * shapes.largest_tensor() * compute_bytes
    if train.peft_type == "qlora":  # bitsandbytes dequantises a whole weight per matmul (forward and backward)
        gpu["dequantized"] = 2 * max(i * o for i, o in shapes.attention_linear + shapes.mlp_linear) * compute_bytes
    gpu["activations"] = _activation_bytes(shapes, train, compute_bytes)
    return MemoryEstimate(
        params_total=total, params_trainable=trainable, num_gpus=gpus,
        gpu_gib={k: v / GIB for k, v in gpu.items()}, cpu_gib_per_node=offloaded / nodes / GIB,
        **({"fixed_overhead_gib": CPU_FIXED_OVERHEAD_GIB, "fragmentation": CPU_FRAGMENTATION} if device == "cpu" else {}),
    )


def _activation_bytes(shapes: Shapes, train: TrainStage, compute_bytes: int) -> float:
    """Activations of one micro-batch: per token and layer ~ (8·h + 4·I) values without
    checkpointing (attention via sdpa/FA, no s² term), one h-sized boundary per layer plus one
    layer's working set with it; plus fp32 logits, their softmax and gradient (12 bytes × V)."""
    tokens = train.per_device_train_batch_size * train.seq_length
    per_layer = (8 * shapes.hidden + 4 * shapes.intermediate) * compute_bytes
    if train.gradient_checkpointing:
        layers = shapes.layers * shapes.hidden * compute_bytes + per_layer
    else:
        layers = shapes.layers * per_layer
    logits = shapes.vocab * (compute_bytes + 12)
    return tokens * (layers + logits)


def problems(est: MemoryEstimate, train: TrainStage, gpu_mem_gib: float) -> list[str]:
    """Why the recipe cannot run on GPUs with `gpu_mem_gib` of memory (empty list: it fits),
    each with the change that would help."""
    if est.per_gpu_gib <= gpu_mem_gib:
        return []
    dist = train.distributed
    hints = []
    if not train.is_peft and (dist.backend != "deepspeed" or dist.zero_stage < 3):
        hints.append("full fine-tuning of a model this size needs distributed.backend: deepspeed with zero_stage: 3")
    elif dist.backend == "deepspeed" and dist.zero_stage < 3:
        hints.append("zero_stage: 3 shards the weights across GPUs")
    hints.append("more GPUs (resources.nodes / gpus_per_node)")
    if dist.backend == "deepspeed" and dist.offload_optimizer == "none":
        hints.append("distributed.offload_optimizer: cpu")
    if train.peft_type == "full":
        hints.append("peft_type: lora or qlora")
    if train.per_device_train_batch_size > 1:
        hints.append("a smaller per_device_train_batch_size with more gradient_accumulation_steps")
    if not train.gradient_checkpointing:
        hints.append("gradient_checkpointing: true")
    return [f"estimated {est.per_gpu_gib:.0f} GiB per GPU > {gpu_mem_gib:.0f} GiB available ({est.summary()}); "
            f"try: {'; '.join(hints)}"]


def load_model_config(model_path: str) -> Optional[dict[str, Any]]:
    """config.json of a recipe's model path as plain JSON: a HF directory, a config file, or a
    `builtin:` model's config in the repository. None when it cannot be found from here (a path
    that only exists on the compute nodes): the caller then skips the estimate."""
    if is_builtin_model(model_path):
        folder = builtin_model_dir(model_path)
        candidate = folder / "config.json" if folder else None
    else:
        path = Path(model_path).expanduser()
        candidate = path / "config.json" if path.is_dir() else path
    if candidate is None or not candidate.is_file():
        return None
    return json.loads(candidate.read_text(encoding="utf-8"))
