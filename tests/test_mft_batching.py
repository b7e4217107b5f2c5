"""Collators of the three padding modes, and the deterministic per-rank epoch plan."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.mft.batching import IGNORE, EpochLoader, collate, epoch_units, model_inputs, pack_rows, rank_batches
from jobs.mft.data import TokenizedDataset

PAD = 0


def dataset(samples: list[tuple[list[int], list[int], int]]) -> TokenizedDataset:
    """From (ids, targets, task id) triples."""
    lengths = [len(ids) for ids, _, _ in samples]
    return TokenizedDataset(
        tokens=np.concatenate([np.asarray(ids, np.int32) for ids, _, _ in samples]),
        targets=np.concatenate([np.asarray(t, np.uint8) for _, t, _ in samples]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        task_ids=np.asarray([task for _, _, task in samples], np.int64),
        task_names=["a", "b"],
    )


TWO = dataset([([10, 11, 12, 13], [0, 0, 1, 1], 1), ([20, 21, 22], [0, 1, 1], 0)])


def test_padding_mode_pads_to_seq_length():
    batch = collate(TWO, [[0], [1]], "padding", seq_length=8, pad_id=PAD)
    assert batch["input_ids"].tolist() == [[10, 11, 12, 0, 0, 0, 0, 0], [20, 21, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 12, 13] + [IGNORE] * 5, [21, 22] + [IGNORE] * 6]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]
    assert batch["sample_index"].tolist() == [[0, 0, 0] + [-1] * 5, [1, 1] + [-1] * 6]
    assert batch["sample_task"].tolist() == [1, 0]
    assert batch["position_ids"][0, :3].tolist() == [0, 1, 2]


def test_dynamic_mode_pads_to_the_longest_sample():
    batch = collate(TWO, [[1], [0]], "dynamic", seq_length=8, pad_id=PAD)
    assert batch["input_ids"].tolist() == [[20, 21, 0], [10, 11, 12]]
    assert batch["labels"].tolist() == [[21, 22, IGNORE], [IGNORE, 12, 13]]
    assert batch["sample_task"].tolist() == [0, 1]


def test_pack_mode_keeps_samples_apart():
    batch = collate(TWO, [[0, 1]], "pack", seq_length=8, pad_id=PAD)
    assert batch["input_ids"].tolist() == [[10, 11, 12, 20, 21, 0, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 12, 13, 21, 22, IGNORE, IGNORE, IGNORE]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert batch["sample_index"].tolist() == [[0, 0, 0, 1, 1, -1, -1, -1]]
    assert batch["sample_task"].tolist() == [1, 0]
    mask = batch["attention_mask"]
    assert mask.shape == (1, 1, 8, 8) and mask.dtype == torch.bool
    expected = torch.zeros(8, 8, dtype=torch.bool)
    for lo, hi in ((0, 3), (3, 5), (5, 8)):  # causal blocks: sample 0, sample 1, padding
        expected[lo:hi, lo:hi] = torch.ones(hi - lo, hi - lo, dtype=torch.bool).tril()
    assert torch.equal(mask[0, 0], expected)


def test_rows_longer_than_seq_length_are_refused():
    with pytest.raises(ValueError, match="seq_length 4"):
        collate(TWO, [[0, 1]], "pack", seq_length=4, pad_id=PAD)
    with pytest.raises(ValueError, match="more than seq_length"):
        pack_rows([0, 1], TWO.lengths, seq_length=2)


def test_model_inputs_per_attention_implementation():
    packed = collate(TWO, [[0, 1], [1]], "pack", seq_length=8, pad_id=PAD)
    eager = model_inputs(packed, "eager", torch.bfloat16)
    bias = eager["attention_mask"]
    assert bias.dtype == torch.bfloat16 and bias.shape == (2, 1, 8, 8)
    assert bias[0, 0, 4, 3] == 0 and bias[0, 0, 3, 2] == torch.finfo(torch.bfloat16).min
    flash = model_inputs(packed, "flash_attention_2", torch.bfloat16)
    assert set(flash) == {"input_ids", "position_ids"} and flash["position_ids"].shape == (1, 16)
    assert flash["position_ids"][0, 8:].tolist() == [0, 1, 0, 1, 2, 3, 4, 5]
    padded = model_inputs(collate(TWO, [[0]], "dynamic", 8, PAD), "sdpa", torch.float32)
    assert padded["attention_mask"].tolist() == [[1, 1, 1]]


def test_next_fit_packing():
    lengths = np.array([3, 3, 3, 5, 1])
    assert pack_rows([0, 1, 2, 3, 4], lengths, seq_length=6) == [[0, 1], [2], [3, 4]]
    assert pack_rows([4, 3, 2, 1, 0], lengths, seq_length=6) == [[4, 3], [2, 1], [0]]


def many(count: int = 23) -> TokenizedDataset:
    rng = np.random.default_rng(0)
    samples = []
    for k in range(count):
        n = int(rng.integers(3, 9))
        samples.append((list(range(100 * k, 100 * k + n)), [0] + [1] * (n - 1), k % 2))
    return dataset(samples)


@pytest.mark.parametrize("mode", ["padding", "dynamic", "pack"])
def test_epoch_plan_covers_every_sample_evenly_across_ranks(mode):
    data = many()
    world = 3
    loaders = [
        EpochLoader(data, mode=mode, seq_length=16, batch_size=2, pad_id=PAD, seed=5, rank=r, world_size=world)
        for r in range(world)
    ]
    plans = [loader.plan(epoch=0) for loader in loaders]
    assert len({len(p) for p in plans}) == 1  # same number of batches on every rank
    seen = [i for plan in plans for batch in plan for unit in batch for i in unit]
    assert set(seen) == set(range(len(data)))
    units = epoch_units(data.lengths, mode, 16, seed=5, epoch=0, shuffle=True)
    assert len(seen) - len(data) == sum(len(u) for u in units[: (-len(units)) % world])  # only the cyclic padding repeats
    if mode == "pack":
        assert all(sum(int(data.lengths[i]) for i in unit) <= 16 for plan in plans for batch in plan for unit in batch)
        assert max(len(unit) for plan in plans for batch in plan for unit in batch) > 1


def test_epoch_plan_is_deterministic_and_changes_with_epoch_and_seed():
    data = many()
    make = lambda seed, rank: EpochLoader(data, mode="dynamic", seq_length=16, batch_size=4, pad_id=PAD, seed=seed, rank=rank, world_size=2)
    assert make(1, 0).plan(3) == make(1, 0).plan(3)
    assert make(1, 0).plan(3) != make(1, 0).plan(4)
    assert make(1, 0).plan(3) != make(2, 0).plan(3)
    assert make(1, 0).plan(3) != make(1, 1).plan(3)
    unshuffled = EpochLoader(data, mode="dynamic", seq_length=16, batch_size=4, pad_id=PAD, seed=1, shuffle=False)
    assert unshuffled.plan(0)[0] == [[0], [1], [2], [3]] and unshuffled.plan(0) == unshuffled.plan(7)


def test_resume_at_a_batch_position():
    loader = EpochLoader(many(), mode="pack", seq_length=16, batch_size=2, pad_id=PAD, seed=1, rank=1, world_size=2)
    full = list(loader.iterate(epoch=2))
    resumed = list(loader.iterate(epoch=2, start=3))
    assert len(full) == loader.num_batches(2) and len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_rank_batches_edge_cases():
    # 3 units on 2 ranks: padded to [0, 1, 2, 0]; rank 1 deals 1 and the repeat of 0
    assert rank_batches([[0], [1], [2]], batch_size=2, rank=1, world_size=2) == [[[1], [0]]]
    assert rank_batches([[0], [1], [2]], batch_size=1, rank=0, world_size=2) == [[[0]], [[2]]]
    assert rank_batches([[0]], batch_size=2, rank=3, world_size=4) == [[[0]]]  # fewer units than ranks: repeats
    with pytest.raises(ValueError, match="no samples"):
        rank_batches([], batch_size=2, rank=0, world_size=1)
    with pytest.raises(ValueError, match="rank 2"):
        EpochLoader(TWO, mode="pack", seq_length=8, batch_size=1, pad_id=PAD, seed=0, rank=2, world_size=2)
