"""The optimisation engine: DeepSpeed's own engine, or plain torch (DDP or one process).

Why DeepSpeed's engine directly (not accelerate): it forms a real process group on CPU too
(gloo with DS_ACCELERATOR=cpu), so ZeRO-3 sharding is exercised by CPU tests exactly as on GPUs
(DESIGN.md, "DeepSpeed on CPU"), and there is one config, built here from the recipe, instead of
an accelerate YAML that must agree with a DeepSpeed JSON.

Both engines offer the same calls and count the same way: the training loop marks each
micro-batch as an accumulation boundary or not, the loss is divided by
gradient_accumulation_steps on every backend, and the learning-rate schedule advances once per
optimizer update.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import torch

from jobs.distributed import DistEnv
from jobs.training import schedule
from jobs.training.model import compute_dtype, trainable_named_parameters
from launcher.recipe import ModelSpec, TrainStage

ENGINE_TAG = "engine"
TRAINABLE_FILE = "trainable.safetensors"
TORCH_STATE_FILE = "optimizer_scheduler.pt"
ADAM_BETAS = (0.9, 0.999)


def device_for(dist: DistEnv) -> torch.device:
    return torch.device("cuda", dist.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_process_group(dist: DistEnv, train: TrainStage) -> torch.device:
    """Join the job's process group (NCCL on GPUs, gloo on CPU); one process without DeepSpeed
    needs none. Idempotent: a second call in the same process reuses the group."""
    for key, value in dist.as_env().items():  # jobs.run exports these; direct callers may not have
        os.environ.setdefault(key, value)
    device = device_for(dist)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = train.distributed.backend
    if backend == "none" and dist.world_size > 1:
        raise RuntimeError(f"distributed.backend: none runs one process, but this job has {dist.world_size} ranks")
    timeout = timedelta(seconds=train.distributed.init_timeout_s)
    pg_backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "deepspeed":
        import deepspeed

        deepspeed.init_distributed(dist_backend=pg_backend, timeout=timeout)
    elif dist.world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(pg_backend, timeout=timeout, rank=dist.rank, world_size=dist.world_size)
    return device


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def shutdown() -> None:
    """Leave the process group after the last collective (all ranks got there together)."""
    if is_distributed():
        torch.distributed.destroy_process_group()


def deepspeed_config(train: TrainStage) -> dict[str, Any]:
    """DeepSpeed's JSON config, every value from the recipe (no "auto" left for a trainer to fill)."""
    dist = train.distributed
    zero: dict[str, Any] = {"stage": dist.zero_stage}
    if dist.zero_stage >= 1:
        zero.update(overlap_comm=True, contiguous_gradients=True, reduce_bucket_size=5e7)
    if dist.offload_optimizer == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if dist.offload_param == "cpu":
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if dist.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = dist.zero3_save_16bit_model
    return {
        "train_micro_batch_size_per_gpu": train.per_device_train_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "gradient_clipping": dist.gradient_clipping or 0.0,
        "bf16": {"enabled": dist.mixed_precision == "bf16"},
        "fp16": {"enabled": dist.mixed_precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def zero3_init(train: TrainStage) -> Optional[Any]:
    """Under ZeRO-3, an object that makes transformers partition the weights while loading them
    (zero.Init); the caller keeps it alive until the model is built. Quantised models are loaded
    whole per rank (transformers skips zero.Init for them) and sharded at initialize."""
    dist = train.distributed
    if dist.backend != "deepspeed" or dist.zero_stage != 3 or train.peft_type == "qlora":
        return None
    from transformers.integrations import HfDeepSpeedConfig

    return HfDeepSpeedConfig(deepspeed_config(train))


def optimizer_groups(net: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: biases and norm weights get no weight decay."""
    decay, no_decay = [], []
    for name, param in trainable_named_parameters(net):
        (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class Engine:
    """What the training loop needs from an engine (both implementations below)."""

    module: torch.nn.Module  # call this for forward passes
    net: torch.nn.Module  # the unwrapped model (PeftModel or HF model)

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def set_boundary(self, is_boundary: bool) -> None:
        raise NotImplementedError

    def backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self) -> None:
        """Called after every micro-batch; updates the weights at an accumulation boundary."""
        raise NotImplementedError

    def lr(self) -> float:
        raise NotImplementedError

    def grad_norm(self) -> Optional[float]:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Collective: weights (trainable part), optimizer and scheduler state into `directory`."""
        raise NotImplementedError

    def load(self, directory: Path) -> None:
        raise NotImplementedError

    def gathered_trainable(self) -> Optional[dict[str, torch.Tensor]]:
        """Collective: the full trainable parameters (on CPU) on rank 0, None elsewhere."""
        raise NotImplementedError

    def partition_counts(self) -> tuple[int, int]:
        """(parameters held by this rank, parameters of the model)."""
        total = sum(p.numel() for p in self.net.parameters())
        return total, total


class DeepSpeedEngine(Engine):
    def __init__(self, net: torch.nn.Module, train: TrainStage, total_steps: int, warmup: int) -> None:
        import deepspeed

        self.train_stage = train
        groups = optimizer_groups(net, train.weight_decay)
        if train.distributed.offload_optimizer == "cpu":
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(groups, lr=train.learning_rate, betas=ADAM_BETAS, adamw_mode=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=train.learning_rate, betas=ADAM_BETAS)

        def make_scheduler(opt):
            return schedule.build_scheduler(opt, kind=train.lr_scheduler_type, base_lr=train.learning_rate,
                                            min_lr=train.min_lr, total_steps=total_steps, warmup=warmup)

        self.module, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=net, optimizer=optimizer, lr_scheduler=make_scheduler, config=deepspeed_config(train)
        )
        self.net = net
        self.zero3 = train.distributed.zero_stage == 3

    def set_boundary(self, is_boundary: bool) -> None:
        self.module.set_gradient_accumulation_boundary(is_boundary)

    def backward(self, loss: torch.Tensor) -> None:
        self.module.backward(loss)  # divides by gradient_accumulation_steps

    def step(self) -> None:
        self.module.step()  # DeepSpeed steps the scheduler after an applied update

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def grad_norm(self) -> Optional[float]:
        norm = self.module.get_global_grad_norm()
        return None if norm is None else float(norm)

    def save(self, directory: Path) -> None:
        self.module.save_checkpoint(str(directory), tag=ENGINE_TAG, save_latest=False,
                                    exclude_frozen_parameters=self.train_stage.is_peft)

    def load(self, directory: Path) -> None:
        path, _ = self.module.load_checkpoint(str(directory), tag=ENGINE_TAG, load_module_strict=not self.train_stage.is_peft,
                                              load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint '{ENGINE_TAG}' in {directory}")

    def gathered_trainable(self) -> Optional[dict[str, torch.Tensor]]:
        named = trainable_named_parameters(self.net)
        rank0 = not is_distributed() or torch.distributed.get_rank() == 0
        if not self.zero3:
            return {n: p.detach().cpu().clone() for n, p in named} if rank0 else None
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().cpu().clone() for n, p in named} if rank0 else None

    def partition_counts(self) -> tuple[int, int]:
        if not self.zero3:
            return super().partition_counts()
        params = list(self.net.parameters())
        return sum(p.ds_tensor.numel() for p in params), sum(p.ds_numel for p in params)


class TorchEngine(Engine):
    """DDP across ranks, or a single process; mixed precision via autocast (+ GradScaler for fp16)."""

    def __init__(self, net: torch.nn.Module, model: ModelSpec, train: TrainStage, device: torch.device,
                 total_steps: int, warmup: int) -> None:
        self.train_stage = train
        self.device = device
        if getattr(net, "hf_quantizer", None) is None:  # quantised weights were placed at load time
            net = net.to(device)
        self.net = net
        self.module = net
        if is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            self.module = DistributedDataParallel(self.net, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(optimizer_groups(self.net, train.weight_decay), lr=train.learning_rate,
                                           betas=ADAM_BETAS)
        self.scheduler = schedule.build_scheduler(self.optimizer, kind=train.lr_scheduler_type, base_lr=train.learning_rate,
                                                  min_lr=train.min_lr, total_steps=total_steps, warmup=warmup)
        mixed = train.distributed.mixed_precision
        self.amp_dtype = compute_dtype(model, train) if mixed != "no" else None
        self.scaler = torch.amp.GradScaler(device.type) if mixed == "fp16" else None
        self.boundary = True
        self._grad_norm: Optional[float] = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def set_boundary(self, is_boundary: bool) -> None:
        self.boundary = is_boundary
        if self.module is not self.net:  # DDP all-reduces gradients only at the boundary
            self.module.require_backward_grad_sync = is_boundary

    def backward(self, loss: torch.Tensor) -> None:
        scaled = loss / self.train_stage.gradient_accumulation_steps
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()

    def step(self) -> None:
        if not self.boundary:
            return
        params = [p for p in self.net.parameters() if p.requires_grad]
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip = self.train_stage.distributed.gradient_clipping
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf"))
        self._grad_norm = float(norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def grad_norm(self) -> Optional[float]:
        return self._grad_norm

    def save(self, directory: Path) -> None:
        if is_distributed() and torch.distributed.get_rank() != 0:
            return  # replicated state: rank 0's copy is everyone's
        from safetensors.torch import save_file

        trainable = {n: p.detach().cpu().contiguous() for n, p in trainable_named_parameters(self.net)}
        save_file(trainable, str(Path(directory) / TRAINABLE_FILE))
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.scaler:
            state["scaler"] = self.scaler.state_dict()
        torch.save(state, Path(directory) / TORCH_STATE_FILE)

    def load(self, directory: Path) -> None:
        from safetensors.torch import load_file

        weights = load_file(str(Path(directory) / TRAINABLE_FILE), device=str(self.device))
        missing = set(dict(trainable_named_parameters(self.net))) - set(weights)
        if missing:
            raise RuntimeError(f"{directory} lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[0]}")
        self.net.load_state_dict(weights, strict=False)
        state = torch.load(Path(directory) / TORCH_STATE_FILE, map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def gathered_trainable(self) -> Optional[dict[str, torch.Tensor]]:
        if is_distributed() and torch.distributed.get_rank() != 0:
            return None
        return {n: p.detach().cpu().clone() for n, p in trainable_named_parameters(self.net)}


def build_engine(net: torch.nn.Module, model: ModelSpec, train: TrainStage, device: torch.device,
                 total_steps: int, warmup: int) -> Engine:
    if train.distributed.backend == "deepspeed":
        return DeepSpeedEngine(net, train, total_steps, warmup)
    return TorchEngine(net, model, train, device, total_steps, warmup)
