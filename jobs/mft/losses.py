"""Multi-task losses (MFTCoder `loss_func_mft`, training.md §1.7) and the CoBa task balancer.

Per micro-batch, with l_ij the token loss of sample i at position j, m_ij its target flag, B_t the
samples of task t and P the tasks that have target tokens in the micro-batch:

    case1  sum_ij m l / sum_ij m                                   token mean
    case2  mean_i (sum_j m l / sum_j m)                            sample mean
    case3  L_t = sum_{i in B_t} sum_j m l / sum_{i in B_t} sum_j m;  L = sum_P w_t L_t / sum_P w_t
    case4  L_t = mean_{i in B_t} (sum_j m l / sum_j m);              L = sum_P w_t L_t / sum_P w_t
    coba   case3 with w = CoBa's weights

w_t are the task weights (DatasetSpec.weight; case1/case2 ignore them). Differences from
MFTCoder, all about empty denominators, where MFTCoder computes 0/0 = NaN and trains on it: a
sample without target tokens is left out of the sample means, a task without target tokens is not
in P, and a micro-batch without any target token gives loss 0 (with a gradient of zeros).

Samples are found through the batch's `sample_index` map (position → sample of the batch) and
`sample_task`, so packed rows holding several samples of several tasks are accounted exactly as
the same samples in separate rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from jobs.mft.batching import IGNORE
from jobs.mft.coba_schedule import weights_due
from launcher.recipe import CobaSpec

MODES = ("case1", "case2", "case3", "case4", "coba")


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per position, in fp32, shaped like `labels`; 0 where labels == IGNORE.

    `logits` may come flattened ([1, B*T, V], flash-attention packing); labels are already the
    next tokens (batching shifts them), so nothing is shifted here.
    """
    flat = logits.reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE, reduction="none").view(labels.shape)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, with 0 where den == 0 (num is then 0 too); gradients stay finite."""
    return num / (den + (den == 0).to(den.dtype))


@dataclass
class MftLoss:
    loss: torch.Tensor  # scalar to backpropagate
    task_loss: torch.Tensor  # [K] token mean per task (case3 form, all modes), 0 where absent; detached
    task_present: torch.Tensor  # [K] bool: the task has target tokens in this micro-batch
    task_tokens: torch.Tensor  # [K] target tokens per task
    task_samples: torch.Tensor  # [K] samples with target tokens per task
    sample_loss: torch.Tensor  # [S] token mean per sample of the batch, 0 without targets; detached
    sample_tokens: torch.Tensor  # [S] target tokens per sample
    aux_loss: Optional[torch.Tensor] = None  # coefficient × MoE load-balancing loss, included in `loss`


def combine(
    token_loss: torch.Tensor,
    labels: torch.Tensor,
    sample_index: torch.Tensor,
    sample_task: torch.Tensor,
    task_weights: torch.Tensor,
    mode: str,
) -> MftLoss:
    """The loss of `mode` from per-position losses (see the module docstring for the formulas)."""
    if mode not in MODES:
        raise ValueError(f"unknown weighted_loss_mode '{mode}'; known: {', '.join(MODES)}")
    num_tasks = task_weights.shape[0]
    device = token_loss.device
    mask = ((labels != IGNORE) & (sample_index >= 0)).to(token_loss.dtype)
    where = sample_index.clamp(min=0).reshape(-1)
    num_samples = sample_task.shape[0]
    sample_sum = token_loss.new_zeros(num_samples).index_add(0, where, (token_loss * mask).reshape(-1))
    sample_tokens = token_loss.new_zeros(num_samples).index_add(0, where, mask.reshape(-1))
    sample_mean = _safe_div(sample_sum, sample_tokens)
    has_targets = (sample_tokens > 0).to(token_loss.dtype)
    task_sum = token_loss.new_zeros(num_tasks).index_add(0, sample_task, sample_sum)
    task_tokens = token_loss.new_zeros(num_tasks).index_add(0, sample_task, sample_tokens)
    task_samples = token_loss.new_zeros(num_tasks).index_add(0, sample_task, has_targets)
    task_token_mean = _safe_div(task_sum, task_tokens)
    present = task_tokens > 0
    weights = task_weights.to(device=device, dtype=token_loss.dtype) * present
    if mode == "case1":
        loss = _safe_div(sample_sum.sum(), sample_tokens.sum())
    elif mode == "case2":
        loss = _safe_div((sample_mean * has_targets).sum(), has_targets.sum())
    elif mode == "case4":
        task_sample_mean = _safe_div(
            token_loss.new_zeros(num_tasks).index_add(0, sample_task, sample_mean * has_targets), task_samples
        )
        loss = _safe_div((weights * task_sample_mean).sum(), weights.sum())
    else:  # case3, coba
        loss = _safe_div((weights * task_token_mean).sum(), weights.sum())
    return MftLoss(
        loss=loss,
        task_loss=task_token_mean.detach(),
        task_present=present,
        task_tokens=task_tokens.detach(),
        task_samples=task_samples.detach(),
        sample_loss=sample_mean.detach(),
        sample_tokens=sample_tokens.detach(),
    )


def mft_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], task_weights: torch.Tensor, mode: str) -> MftLoss:
    """The training loss of a collated batch (jobs.mft.batching.collate) from the model's logits."""
    labels = batch["labels"].to(logits.device)
    return combine(
        token_losses(logits, labels),
        labels,
        batch["sample_index"].to(logits.device),
        batch["sample_task"].to(logits.device),
        task_weights.to(logits.device),
        mode,
    )


def reduce_task_losses(task_loss: torch.Tensor, task_present: torch.Tensor) -> torch.Tensor:
    """Per-task loss averaged over the ranks where the task was present (MFTCoder's logging and
    CoBa rule), 0 where it was present nowhere. Without an initialised process group: as given."""
    total = task_loss.detach().float() * task_present
    count = task_present.float()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        torch.distributed.all_reduce(count)
    return _safe_div(total, count)


# ------------------------------------------------------------------------------------------
# CoBa


def window_slope(values: Sequence[float]) -> float:
    """Least-squares slope of values over 0, 1, 2, ...; zeros (task absent) are left out first,
    as MFTCoder does; 0 with fewer than two points."""
    y = [v for v in values if v != 0]
    n = len(y)
    if n < 2:
        return 0.0
    x_mean = (n - 1) / 2
    y_mean = sum(y) / n
    return sum((k - x_mean) * (v - y_mean) for k, v in enumerate(y)) / sum((k - x_mean) ** 2 for k in range(n))


def _normalised(values: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * values / sum|values| (0 when all are 0; MFTCoder gives NaN there)."""
    return scale * _safe_div(values, values.abs().sum(dim=-1, keepdim=True))


class CobaBalancer:
    """CoBa task weights (MFTCoder v0.5 `CoBaStatus`; arXiv 2410.06741), driven by the trainer.

    Protocol (the schedule is `jobs.mft.coba_schedule`, MFTCoder's), with `step` = optimizer
    steps completed before the current one:
    1. Before training: a full validation pass → `set_reference(per-task valid loss)`.
    2. On the micro-batch that synchronises gradients: `weights = step_weights(step)`, used with
       mode 'coba'. Until `warmup_steps` these are the base weights (uniform: the trainer ignores
       dataset weights under CoBa, as MFTCoder does); from then on new weights every
       `update_interval` steps.
    3. After the optimizer steps that `coba_schedule.record_due` names: evaluate
       `sample_valid_num` validation batches, average their per-task losses, and `record(...)` it.

    Guards MFTCoder lacks: a zero denominator gives 0 instead of NaN, and the convergence window
    keeps at least the current column when warmup_steps > history_length (MFTCoder crashes there).

    A task absent from the validation records (fewer than two records with it in the window, so no
    convergence slope can be fitted) gets the uniform share 1/K, and CoBa's formulas balance the
    remaining tasks among themselves. MFTCoder fits it a slope of 0, which the relative
    convergence score reads as "not converging at all" and so hands it the largest weight. 1/K is
    the mean weight, so an absent task is never the one weighted highest.
    """

    def __init__(self, num_tasks: int, spec: CobaSpec, base_weights: Optional[Sequence[float]] = None) -> None:
        self.num_tasks = num_tasks
        self.spec = spec
        base = torch.tensor(base_weights if base_weights is not None else [1.0] * num_tasks, dtype=torch.float64)
        self.weights = base / base.sum()
        self.reference: Optional[torch.Tensor] = None
        self.history: list[list[float]] = []  # normalised validation loss per record, one value per task
        self.task_slopes: list[list[float]] = []  # per weight update, one slope per task
        self.total_slopes: list[float] = []  # per weight update, slope of the max-over-tasks loss

    def set_reference(self, task_loss: Sequence[float]) -> None:
        """Per-task validation loss before training: later losses are divided by it."""
        self.reference = torch.as_tensor(task_loss, dtype=torch.float64).detach().cpu()

    def record(self, task_loss: Sequence[float]) -> None:
        """Append one (averaged) per-task validation loss, normalised by the reference."""
        if self.reference is None:
            raise RuntimeError("CobaBalancer.record before set_reference (the initial validation pass)")
        loss = torch.as_tensor(task_loss, dtype=torch.float64).detach().cpu()
        self.history.append(_safe_div(loss, self.reference).tolist())

    def step_weights(self, step: int) -> torch.Tensor:
        """Task weights for optimizer step `step`; recomputed when due, else the last ones."""
        if weights_due(step, self.spec):
            self.weights = self._compute(step)
        return self.weights.clone()

    def _compute(self, step: int) -> torch.Tensor:
        count = self.num_tasks
        start = max(0, step // self.spec.update_interval - self.spec.history_length)
        window = self.history[-(step - start) :] if step > start else []
        task_slope = torch.tensor([window_slope([row[t] for row in window]) for t in range(count)], dtype=torch.float64)
        total_slope = window_slope([max(row) for row in window])
        self.task_slopes.append(task_slope.tolist())
        self.total_slopes.append(total_slope)
        fitted = [t for t in range(count) if sum(1 for row in window if row[t] != 0) >= 2]
        weights = torch.full((count,), 1.0 / count, dtype=torch.float64)
        if len(fitted) >= 2:
            chosen = torch.tensor(fitted)
            weights[chosen] = self._balance(task_slope[chosen], chosen, start) * len(fitted) / count
        return weights

    def _balance(self, task_slope: torch.Tensor, tasks: torch.Tensor, start: int) -> torch.Tensor:
        """CoBa's weights (summing to 1) over the tasks whose convergence slope could be fitted."""
        count = len(tasks)
        rcs = torch.softmax(_normalised(task_slope, count), dim=-1)

        columns = torch.tensor(self.task_slopes, dtype=torch.float64).T[tasks]  # [tasks, updates]
        recent = columns[:, min(start, columns.shape[1] - 1) :]
        acs = torch.softmax(_normalised(recent, -recent.shape[1])[:, -1], dim=-1)

        totals = torch.tensor(self.total_slopes, dtype=torch.float64)
        divergence = torch.softmax(_normalised(totals, -len(totals)) * self.spec.tau, dim=-1)[-1] * len(totals)

        weights = torch.softmax((divergence * rcs + (1 - divergence) * acs) * count, dim=-1)
        floor = 1 / (10 * count)
        if bool((weights < floor).any()):
            weights = weights * (1 - floor * count) + floor
        return weights

    def state_dict(self) -> dict[str, Any]:
        """Plain lists (copies), JSON-serialisable, for the trainer's checkpoint."""
        return {
            "weights": self.weights.tolist(),
            "reference": None if self.reference is None else self.reference.tolist(),
            "history": [list(row) for row in self.history],
            "task_slopes": [list(row) for row in self.task_slopes],
            "total_slopes": list(self.total_slopes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.reference = None if state["reference"] is None else torch.tensor(state["reference"], dtype=torch.float64)
        self.history = [list(row) for row in state["history"]]
        self.task_slopes = [list(row) for row in state["task_slopes"]]
        self.total_slopes = list(state["total_slopes"])
