"""Training metrics: one all-reduce per optimizer step, TensorBoard and a progress line on rank 0.

Per step every rank contributes [loss sum, micro-batches, positions, non-pad tokens, stop flag,
per-task loss sums, per-task presence, MoE auxiliary loss sum]; one SUM all-reduce gives the global numbers and, in the
same call, the ranks' agreement to stop (any rank's USR2 or time budget stops all of them at the
same step boundary).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from jobs.training.engine import is_distributed


@dataclass
class StepTotals:
    """One optimizer step summed over its micro-batches (this rank), then over all ranks."""

    loss: float = 0.0
    micro_batches: float = 0.0
    positions: float = 0.0
    real_tokens: float = 0.0
    stop: float = 0.0
    task_loss: list[float] = field(default_factory=list)
    task_count: list[float] = field(default_factory=list)
    aux_loss: float = 0.0  # sum over micro-batches of coefficient × MoE load-balancing loss


class StepAccumulator:
    """Collects the micro-batches of one optimizer step on this rank."""

    def __init__(self, num_tasks: int, device: torch.device) -> None:
        self.num_tasks = num_tasks
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.values = torch.zeros(6 + 2 * self.num_tasks, dtype=torch.float64, device=self.device)

    def add(self, loss: torch.Tensor, batch: dict[str, torch.Tensor], task_loss: torch.Tensor, task_present: torch.Tensor,
            aux_loss: Optional[torch.Tensor] = None) -> None:
        k = self.num_tasks
        self.values[0] += loss.detach().double()
        self.values[1] += 1
        self.values[2] += batch["input_ids"].numel()
        self.values[3] += (batch["sample_index"] >= 0).sum().double()
        present = task_present.double()
        self.values[5 : 5 + k] += task_loss.double() * present
        self.values[5 + k : 5 + 2 * k] += present
        if aux_loss is not None:
            self.values[5 + 2 * k] += aux_loss.detach().double()

    def reduce(self, stop: bool) -> StepTotals:
        """Global totals of the step (collective); resets for the next step."""
        values = self.values.clone()
        values[4] = 1.0 if stop else 0.0
        if is_distributed():
            torch.distributed.all_reduce(values)
        self.reset()
        v = values.cpu().tolist()
        k = self.num_tasks
        return StepTotals(v[0], v[1], v[2], v[3], v[4], v[5 : 5 + k], v[5 + k : 5 + 2 * k], v[5 + 2 * k])


class Logger:
    """Windowed averages over `log_interval` steps → TensorBoard scalars and a progress line."""

    def __init__(self, task_names: Sequence[str], tensorboard_dir, is_main: bool, total_steps: int,
                 first_step: int) -> None:
        self.task_names = list(task_names)
        self.is_main = is_main
        self.total_steps = total_steps
        self.writer = None
        if is_main:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events an interrupted attempt logged after its last checkpoint
            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=first_step + 1 if first_step else None)
        self.start_step = first_step
        self.start_time = time.monotonic()
        self.train_seconds = 0.0
        self._window: list[StepTotals] = []
        self._window_start = time.monotonic()
        self.last_loss: Optional[float] = None
        self.last_aux_loss = 0.0

    def add_step(self, totals: StepTotals, seconds: float) -> None:
        self._window.append(totals)
        self.train_seconds += seconds

    def flush(self, step: int, epoch: int, lr: float, grad_norm: Optional[float]) -> None:
        """Write the window's averages (rank 0) and start a new window."""
        window, self._window = self._window, []
        elapsed = max(1e-9, time.monotonic() - self._window_start)
        self._window_start = time.monotonic()
        if not window:
            return
        micro = sum(w.micro_batches for w in window)
        loss = sum(w.loss for w in window) / max(1.0, micro)
        self.last_loss = loss
        aux = sum(w.aux_loss for w in window) / max(1.0, micro)
        self.last_aux_loss = aux
        if not self.is_main:
            return
        tokens_s = sum(w.positions for w in window) / elapsed
        real_s = sum(w.real_tokens for w in window) / elapsed
        scalars = {"train/loss": loss, "train/lr": lr, "train/tokens_per_s": tokens_s,
                   "train/effective_tokens_per_s": real_s}
        if grad_norm is not None:
            scalars["train/grad_norm"] = grad_norm
        if aux:
            scalars["train/moe_aux_loss"] = aux
        for t, name in enumerate(self.task_names):
            count = sum(w.task_count[t] for w in window)
            if count:
                scalars[f"train_task_loss/{name}"] = sum(w.task_loss[t] for w in window) / count
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()
        done = step - self.start_step
        eta = self.train_seconds / done * (self.total_steps - step) if done else 0.0
        norm = f" grad_norm {grad_norm:.3f}" if grad_norm is not None else ""
        norm += f" moe_aux {aux:.4f}" if aux else ""
        print(f"[train] step {step}/{self.total_steps} epoch {epoch} loss {loss:.4f} lr {lr:.3e}{norm} "
              f"tokens/s {tokens_s:,.0f} (non-pad {real_s:,.0f}) ETA {_hms(eta)}", flush=True)

    def log_eval(self, step: int, loss: float, task_losses: Sequence[float], task_counts: Sequence[float]) -> None:
        if not self.is_main:
            return
        self.writer.add_scalar("eval/loss", loss, step)
        for name, value, count in zip(self.task_names, task_losses, task_counts):
            if count:
                self.writer.add_scalar(f"eval_task_loss/{name}", value, step)
        self.writer.flush()
        print(f"[train] step {step} validation loss {loss:.4f}", flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
