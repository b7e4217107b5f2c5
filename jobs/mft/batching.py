"""Batches: the three padding modes, and a deterministic per-rank plan of each epoch.

Modes (TrainStage.padding_mode):
- `padding`: every row is padded to seq_length (MFTCoder's padding mode: fixed shapes).
- `dynamic`: rows are padded to the longest sample of the batch (less wasted compute).
- `pack`:    samples are concatenated into rows of seq_length, kept apart: position ids restart
             at every sample and a block-diagonal causal 4D mask forbids attention across samples
             (MFTCoder's pack mode attends across samples; see training.md §1.5).

A batch holds, per position, the target token (`labels`, -100 where nothing is learned, already
shifted: the model must not shift again) and the sample it belongs to (`sample_index`), and per
sample its task (`sample_task`); the losses account per sample through these, packed or not.

The epoch plan is a pure function of (seed, epoch, rank, world size): no sampler state to save,
and resuming at batch k of an epoch is slicing. Every rank gets the same number of batches (the
unit list is padded cyclically to a multiple of the world size, as DistributedSampler does), so
collective calls never wait on a rank that ran out of data.
"""
from __future__ import annotations

from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch

from jobs.mft.data import TokenizedDataset

PaddingMode = Literal["padding", "dynamic", "pack"]
IGNORE = -100

#: A batch unit: the samples of one row (one sample, or several when packing).
Unit = list[int]


def pack_rows(order: Sequence[int], lengths: np.ndarray, seq_length: int) -> list[Unit]:
    """Next-fit packing in the given order: a row is closed when the next sample does not fit.

    Order-preserving and O(n), so the plan stays cheap to recompute on every rank.
    """
    rows: list[Unit] = []
    current: Unit = []
    used = 0
    for index in order:
        size = int(lengths[index])
        if size > seq_length:
            raise ValueError(f"sample {index} has {size} positions, more than seq_length {seq_length}")
        if current and used + size > seq_length:
            rows.append(current)
            current, used = [], 0
        current.append(int(index))
        used += size
    if current:
        rows.append(current)
    return rows


def epoch_units(lengths: np.ndarray, mode: PaddingMode, seq_length: int, seed: int, epoch: int, shuffle: bool) -> list[Unit]:
    """All rows of one epoch, for all ranks, in order."""
    count = len(lengths)
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    if mode == "pack":
        return pack_rows(order, lengths, seq_length)
    return [[int(i)] for i in order]


def rank_batches(units: Sequence[Unit], batch_size: int, rank: int, world_size: int) -> list[list[Unit]]:
    """This rank's batches: units dealt round-robin after cyclic padding to a multiple of world_size."""
    if not units:
        raise ValueError("no samples to batch")
    total = -(-len(units) // world_size) * world_size
    padded = [units[k % len(units)] for k in range(total)]
    mine = padded[rank::world_size]
    return [mine[k : k + batch_size] for k in range(0, len(mine), batch_size)]


def collate(dataset: TokenizedDataset, batch: Sequence[Unit], mode: PaddingMode, seq_length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Tensors of one batch.

    input_ids, labels, position_ids, sample_index: [B, T] (sample_index: -1 on padding).
    attention_mask: [B, T] (1 = real token) for padding/dynamic; [B, 1, T, T] bool
    (True = may attend) for pack. sample_task: [S], the task id of each sample of the batch.
    """
    samples = [i for unit in batch for i in unit]
    lengths = dataset.lengths
    row_lengths = [sum(int(lengths[i]) for i in unit) for unit in batch]
    width = max(row_lengths) if mode == "dynamic" else seq_length
    if max(row_lengths) > seq_length:
        raise ValueError(f"a batch row is longer than seq_length {seq_length}; was the data tokenized for another seq_length?")
    rows = len(batch)
    input_ids = np.full((rows, width), pad_id, dtype=np.int64)
    labels = np.full((rows, width), IGNORE, dtype=np.int64)
    positions = np.zeros((rows, width), dtype=np.int64)
    sample_index = np.full((rows, width), -1, dtype=np.int64)
    segment = np.zeros((rows, width), dtype=np.int64)
    number = 0
    for row, unit in enumerate(batch):
        start = 0
        for local, index in enumerate(unit):
            ids, targets = dataset.sample(index)
            end = start + len(ids) - 1
            input_ids[row, start:end] = ids[:-1]
            labels[row, start:end] = np.where(targets[1:] == 1, ids[1:], IGNORE)
            positions[row, start:end] = np.arange(end - start)
            sample_index[row, start:end] = number
            segment[row, start:end] = local
            number += 1
            start = end
        positions[row, start:] = np.arange(width - start)  # the padding tail is a segment of its own
        segment[row, start:] = len(unit)
    out = {
        "input_ids": torch.from_numpy(input_ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(positions),
        "sample_index": torch.from_numpy(sample_index),
        "sample_task": torch.as_tensor(dataset.task_ids[samples], dtype=torch.long),
    }
    if mode == "pack":
        seg = torch.from_numpy(segment)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        out["attention_mask"] = ((seg[:, :, None] == seg[:, None, :]) & causal)[:, None]
    else:
        out["attention_mask"] = (torch.from_numpy(sample_index) >= 0).long()
    return out


def model_inputs(batch: dict[str, torch.Tensor], attn_implementation: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Keyword arguments for a HF causal LM's forward (labels are not passed: the losses here
    compute from the logits, and HF would shift them a second time).

    Packed batches: eager and sdpa get the block-diagonal mask as an additive float mask in the
    model's dtype (a 4D mask is used as given by transformers); flash_attention_2 gets the rows
    flattened into one sequence with restarting position ids, which transformers turns into
    variable-length attention. Logits then come back as [1, B*T, V]; `losses.token_losses`
    reshapes them to the labels' shape.
    """
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    mask = batch["attention_mask"]
    if mask.dim() == 2:
        inputs["attention_mask"] = mask
    elif attn_implementation.startswith("flash_attention"):
        inputs = {name: value.reshape(1, -1) for name, value in inputs.items()}
    else:
        bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        inputs["attention_mask"] = bias.masked_fill_(~mask, torch.finfo(dtype).min)
    return inputs


class EpochLoader:
    """Deterministic batches of one rank for any epoch, resumable at any batch position.

    The plan depends only on the constructor arguments and the epoch; with `pack` the number of
    batches can differ between epochs (rows are packed from each epoch's order), so ask
    `num_batches(epoch)`.
    """

    def __init__(
        self,
        dataset: TokenizedDataset,
        *,
        mode: PaddingMode,
        seq_length: int,
        batch_size: int,
        pad_id: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.dataset = dataset
        self.mode = mode
        self.seq_length = seq_length
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle

    def plan(self, epoch: int) -> list[list[Unit]]:
        """This rank's batches of `epoch` as sample indices."""
        units = epoch_units(self.dataset.lengths, self.mode, self.seq_length, self.seed, epoch, self.shuffle)
        return rank_batches(units, self.batch_size, self.rank, self.world_size)

    def num_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def iterate(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        """Collated batches of `epoch` from batch position `start` on (0-based)."""
        for batch in self.plan(epoch)[start:]:
            yield collate(self.dataset, batch, self.mode, self.seq_length, self.pad_id)
