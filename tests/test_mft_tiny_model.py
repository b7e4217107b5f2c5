"""jobs.mft with the built-in tiny model's tokenizer and weights: the pieces fit together."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from jobs import tiny_model
from jobs.mft.batching import EpochLoader, model_inputs
from jobs.mft.data import load_mft_data
from jobs.mft.losses import mft_loss
from launcher.recipe import TrainStage

TINY_DATA = Path(__file__).resolve().parent.parent / "recipes" / "data" / "tiny_mft"
TASKS = ["codegen", "explain", "unittest"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tok(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


def turns(*roles: str) -> int:
    return sum(
        sum(1 for turn in json.loads(line)["chat_rounds"] if turn["role"] in roles)
        for file in TINY_DATA.rglob("*.jsonl") for line in file.read_text().splitlines() if line.strip()
    )


def tiny_stage(**fields) -> TrainStage:
    return TrainStage(datasets=[{"path": str(TINY_DATA / t)} for t in TASKS], **fields)


@pytest.mark.parametrize(
    "template, end, untrained_ends",
    [("chatml", "<|im_end|>", ("system", "human", "user")), ("codefuse", "<|endoftext|>", ()), ("mftcoder", "<|endoftext|>", ())],
)
def test_every_bot_turn_ends_in_one_trained_end_token(tmp_path, tok, template, end, untrained_ends):
    loaded = load_mft_data(tiny_stage(template=template, seq_length=2048, validation_split=0), tok, tmp_path)
    assert loaded.summary()["overlong"] == 0
    is_end = loaded.train.tokens == tok.convert_tokens_to_ids(end)
    assert int((is_end & (loaded.train.targets == 1)).sum()) == turns("bot", "assistant")
    assert int((is_end & (loaded.train.targets == 0)).sum()) == turns(*untrained_ends)


def test_a_packed_training_step_on_the_tiny_model(tmp_path, tok, model_dir):
    st = tiny_stage(template="mftcoder", seq_length=512, padding_mode="pack", validation_split=0.1)
    loaded = load_mft_data(st, tok, tmp_path)
    loader = EpochLoader(loaded.train, mode="pack", seq_length=512, batch_size=2, pad_id=loaded.pad_id, seed=st.seed)
    batch = next(loader.iterate(epoch=0))
    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    out = mft_loss(model(**model_inputs(batch, "sdpa", torch.float32)).logits, batch, torch.tensor(loaded.task_weights), "case3")
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert abs(out.loss.item() - torch.log(torch.tensor(1024.0)).item()) < 1.0  # near-uniform predictions at init
    assert int(out.sample_tokens.sum()) == int((batch["labels"] != -100).sum())
