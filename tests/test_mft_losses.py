"""MFT losses against hand arithmetic, NaN-freedom, packed == unpacked, and CoBa's weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from jobs.mft.batching import IGNORE, collate, model_inputs
from jobs.mft.data import TokenizedDataset
from jobs.mft.losses import CobaBalancer, combine, mft_loss, reduce_task_losses, token_losses, window_slope
from launcher.recipe import CobaSpec

# A packed micro-batch of 4 samples: row 0 = sample 0 (task 0) | sample 1 (task 1) | padding,
# row 1 = sample 2 (task 0) | sample 3 (task 2) | padding. Task 3 has no sample in it.
TOKEN_LOSS = [[9.0, 1.0, 2.0, 9.0, 4.0, 6.0, 9.0, 9.0], [9.0, 3.0, 5.0, 7.0, 9.0, 2.0, 9.0, 9.0]]
TARGET = [[0, 1, 1, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 1, 0, 0]]
SAMPLE_INDEX = [[0, 0, 0, 1, 1, 1, -1, -1], [2, 2, 2, 2, 3, 3, -1, -1]]
SAMPLE_TASK = [0, 1, 0, 2]
WEIGHTS = [1.0, 2.0, 0.5, 10.0]


def run(mode: str, weights=WEIGHTS, target=TARGET, token_loss=TOKEN_LOSS):
    labels = torch.where(torch.tensor(target) == 1, 7, IGNORE)
    return combine(
        torch.as_tensor(token_loss), labels, torch.tensor(SAMPLE_INDEX), torch.tensor(SAMPLE_TASK),
        torch.tensor(weights), mode,
    )


# hand arithmetic on the targets of TOKEN_LOSS: sample 0 → 1, 2; sample 1 → 4, 6; sample 2 → 3, 5, 7; sample 3 → 2
@pytest.mark.parametrize(
    "mode, weights, expected",
    [
        ("case1", WEIGHTS, (1 + 2 + 4 + 6 + 3 + 5 + 7 + 2) / 8),
        ("case2", WEIGHTS, ((1 + 2) / 2 + (4 + 6) / 2 + (3 + 5 + 7) / 3 + 2 / 1) / 4),
        ("case3", WEIGHTS, (1.0 * (1 + 2 + 3 + 5 + 7) / 5 + 2.0 * (4 + 6) / 2 + 0.5 * 2 / 1) / (1.0 + 2.0 + 0.5)),
        ("case4", WEIGHTS, (1.0 * ((1 + 2) / 2 + (3 + 5 + 7) / 3) / 2 + 2.0 * (4 + 6) / 2 + 0.5 * 2) / (1.0 + 2.0 + 0.5)),
        ("coba", [0.2, 0.3, 0.5, 0.0], 0.2 * (1 + 2 + 3 + 5 + 7) / 5 + 0.3 * (4 + 6) / 2 + 0.5 * 2),
        ("case3", [1.0] * 4, ((1 + 2 + 3 + 5 + 7) / 5 + (4 + 6) / 2 + 2 / 1) / 3),
    ],
)
def test_loss_modes_match_hand_arithmetic(mode, weights, expected):
    assert run(mode, weights).loss.item() == pytest.approx(expected, rel=1e-6)


def test_per_task_and_per_sample_values_for_logging():
    out = run("case1")
    assert out.task_loss.tolist() == pytest.approx([(1 + 2 + 3 + 5 + 7) / 5, (4 + 6) / 2, 2.0, 0.0])
    assert out.task_present.tolist() == [True, True, True, False]
    assert out.task_tokens.tolist() == [5, 2, 1, 0] and out.task_samples.tolist() == [2, 1, 1, 0]
    assert out.sample_loss.tolist() == pytest.approx([1.5, 5.0, 5.0, 2.0])
    assert out.sample_tokens.tolist() == [2, 2, 3, 1]


@pytest.mark.parametrize("mode", ["case1", "case2", "case3", "case4", "coba"])
def test_samples_and_batches_without_targets_never_give_nan(mode):
    no_sample_3 = [TARGET[0], [0, 1, 1, 1, 0, 0, 0, 0]]  # sample 3 (the only one of task 2) has no target
    leaf = torch.tensor(TOKEN_LOSS, requires_grad=True)
    out = run(mode, target=no_sample_3, token_loss=leaf)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(leaf.grad).all()
    assert torch.isfinite(out.task_loss).all() and torch.isfinite(out.sample_loss).all()
    assert out.task_present.tolist() == [True, True, False, False] and out.sample_loss[3] == 0
    # task 2 and sample 3 are simply absent from the means
    expected = {
        "case1": (1 + 2 + 4 + 6 + 3 + 5 + 7) / 7,
        "case2": (1.5 + 5 + 5) / 3,
        "case3": (1.0 * 18 / 5 + 2.0 * 5) / 3.0,
        "case4": (1.0 * (1.5 + 5) / 2 + 2.0 * 5) / 3.0,
        "coba": (1.0 * 18 / 5 + 2.0 * 5) / 3.0,
    }[mode]
    assert out.loss.item() == pytest.approx(expected)

    empty = torch.tensor(TOKEN_LOSS, requires_grad=True)
    out = run(mode, target=[[0] * 8, [0] * 8], token_loss=empty)
    out.loss.backward()
    assert out.loss.item() == 0.0 and torch.equal(empty.grad, torch.zeros_like(empty))


def test_unknown_mode():
    with pytest.raises(ValueError, match="selfpaced"):
        run("selfpaced")


def test_token_losses_are_cross_entropy_and_zero_where_ignored():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, IGNORE]])
    assert token_losses(logits, labels)[0].tolist() == pytest.approx([-math.log(math.exp(2) / (math.exp(2) + 2)), 0.0])
    assert token_losses(logits.reshape(1, 2, 3), labels).shape == (1, 2)


def test_reduce_task_losses_without_a_process_group():
    out = reduce_task_losses(torch.tensor([2.0, 0.0, 3.0]), torch.tensor([True, False, True]))
    assert out.tolist() == [2.0, 0.0, 3.0]


# --------------------------------------------------------------------------------------------
# packed batches give the same per-sample losses as unpacked ones, on a real (tiny) model


def random_dataset(count: int, vocab: int) -> TokenizedDataset:
    rng = np.random.default_rng(1)
    tokens, targets, lengths = [], [], []
    for _ in range(count):
        n = int(rng.integers(6, 20))
        prompt = int(rng.integers(2, n - 2))
        tokens.append(rng.integers(5, vocab, n))
        targets.append(np.array([0] * prompt + [1] * (n - prompt)))
        lengths.append(n)
    return TokenizedDataset(
        tokens=np.concatenate(tokens).astype(np.int32),
        targets=np.concatenate(targets).astype(np.uint8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        task_ids=np.arange(count, dtype=np.int64) % 3,
        task_names=["a", "b", "c"],
    )


@pytest.fixture(scope="module")
def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, attn_implementation="eager",
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_equals_unpacked_per_sample(tiny_llama, attn):
    tiny_llama.set_attn_implementation(attn)
    data = random_dataset(7, vocab=101)
    weights = torch.tensor([1.0, 2.0, 3.0])
    singles = collate(data, [[i] for i in range(7)], "dynamic", seq_length=64, pad_id=0)
    packed = collate(data, [[0, 1, 2], [3, 4, 5, 6]], "pack", seq_length=64, pad_id=0)
    assert torch.equal(singles["sample_task"], packed["sample_task"])
    with torch.no_grad():
        alone = mft_loss(tiny_llama(**model_inputs(singles, attn, torch.float32)).logits, singles, weights, "case4")
        together = mft_loss(tiny_llama(**model_inputs(packed, attn, torch.float32)).logits, packed, weights, "case4")
        leaky = mft_loss(tiny_llama(input_ids=packed["input_ids"]).logits, packed, weights, "case4")
    assert torch.equal(alone.sample_tokens, together.sample_tokens)
    assert torch.allclose(alone.sample_loss, together.sample_loss, atol=1e-5, rtol=0)
    assert together.loss.item() == pytest.approx(alone.loss.item(), abs=1e-5)
    # the control: packing without the mask and position ids lets samples see each other
    assert (leaky.sample_loss - alone.sample_loss).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------
# CoBa


def softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_window_slope():
    assert window_slope([3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert window_slope([1.0, 0.0, 3.0]) == pytest.approx(2.0)  # zeros (absent) are dropped first
    assert window_slope([5.0]) == 0.0


def test_coba_weights_match_hand_arithmetic():
    spec = CobaSpec(warmup_steps=3, history_length=10, tau=5.0, update_interval=1)
    coba = CobaBalancer(2, spec, base_weights=[1.0, 3.0])
    coba.set_reference([2.0, 4.0])
    valid = {1: [2.0, 4.0], 2: [1.8, 3.8], 3: [1.6, 3.7]}  # normalised: [1, 1], [.9, .95], [.8, .925]
    seen = {}
    for step in range(5):
        seen[step] = coba.step_weights(step).tolist()
        if step in valid:
            coba.record(valid[step])
    assert seen[0] == seen[1] == seen[2] == pytest.approx([0.25, 0.75])  # warmup: the base weights

    # step 3: two records. slopes -0.1, -0.05; max-loss slope -0.05; one slope column
    rcs = softmax([2 * -0.1 / 0.15, 2 * -0.05 / 0.15])
    acs = softmax([-1 * -0.1 / 0.1, -1 * -0.05 / 0.05])
    df = 1.0 * 1  # softmax of a single value, times the number of updates
    assert seen[3] == pytest.approx(softmax([2 * (df * r + (1 - df) * a) for r, a in zip(rcs, acs)]), rel=1e-9)

    # step 4: three records. slopes -0.1 and (0.925 - 1.0) / 2 = -0.0375; max-loss slope -0.0375
    s0, s1 = -0.1, -0.0375
    rcs = softmax([2 * s0 / (0.1 + 0.0375), 2 * s1 / (0.1 + 0.0375)])
    acs = softmax([-2 * s0 / (0.1 + 0.1), -2 * s1 / (0.05 + 0.0375)])  # each task's slope history [-0.1, s0], [-0.05, s1]
    totals = [-0.05, -0.0375]
    df = softmax([-2 * t / (0.05 + 0.0375) * 5.0 for t in totals])[-1] * 2
    assert seen[4] == pytest.approx(softmax([2 * (df * r + (1 - df) * a) for r, a in zip(rcs, acs)]), rel=1e-9)


def test_coba_weights_stay_finite_above_the_floor_and_resume_exactly():
    spec = CobaSpec(warmup_steps=2, history_length=4, tau=5.0, update_interval=2)
    rng = np.random.default_rng(3)
    records = {step: [float(rng.uniform(0.1, 1.0)), float(rng.uniform(0.5, 2.0)), 0.0] for step in range(2, 16, 2)}

    def drive(coba: CobaBalancer, steps: range) -> list[list[float]]:
        out = []
        for step in steps:
            out.append(coba.step_weights(step).tolist())
            if step in records:
                coba.record(records[step])
        return out

    coba = CobaBalancer(3, spec)
    coba.set_reference([1.0, 2.0, 0.0])  # task 2 is absent from the validation data
    first = drive(coba, range(0, 7))
    snapshot = coba.state_dict()
    rest = drive(coba, range(7, 16))
    for weights in first + rest:
        assert all(math.isfinite(w) for w in weights) and sum(weights) == pytest.approx(1.0)
        assert min(weights) >= 1 / 30 - 1e-12
    assert first[0] == pytest.approx([1 / 3] * 3) and rest[-1] != pytest.approx([1 / 3] * 3)

    resumed = CobaBalancer(3, spec)
    resumed.load_state_dict(snapshot)
    assert drive(resumed, range(7, 16)) == rest


def test_coba_floor_keeps_every_task_at_a_tenth_of_uniform():
    """Task 0 converges steadily, task 1 stays flat and then collapses: its raw weight goes to
    ~0, and the floor lifts it to 1/(10 K) = 0.05 (w ← 0.9 w + 0.05)."""
    coba = CobaBalancer(2, CobaSpec(warmup_steps=2, history_length=10, tau=5.0, update_interval=1))
    coba.set_reference([1.0, 1.0])
    records = {1: [1.0, 1.0], 2: [0.9, 1.0], 3: [0.8, 1.0], 4: [0.7, 1.0], 5: [0.6, 0.2]}
    for step in range(7):
        weights = coba.step_weights(step).tolist()
        if step in records:
            coba.record(records[step])
    assert 0.05 <= weights[1] < 0.0501 and weights[0] == pytest.approx(1 - weights[1])


def test_coba_needs_the_reference_first():
    with pytest.raises(RuntimeError, match="set_reference"):
        CobaBalancer(2, CobaSpec()).record([1.0, 1.0])
