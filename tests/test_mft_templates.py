"""Exact loss masks of every chat template, stated as decoded text spans (one token per byte)."""
from __future__ import annotations

import pytest
from mft_helpers import byte_tokenizer, spans

from jobs.mft.templates import ChatTemplate, Turn, encode_conversations, resolve_template
from launcher.recipe import CustomTemplate

TWO_ROUNDS = [
    Turn("human", "hi"),
    Turn("bot", "def f(): pass"),
    Turn("human", "more"),
    Turn("bot", "ok"),
]
WITH_SYSTEM = [Turn("system", "Be brief."), *TWO_ROUNDS]


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def encode(template: ChatTemplate, tok, turns):
    [(ids, mask)] = encode_conversations(template, tok, [turns])
    assert len(ids) == len(mask)
    return ids, mask


def test_chatml_multi_round_with_system(tok):
    ids, mask = encode(resolve_template("chatml"), tok, WITH_SYSTEM)
    assert spans(tok, ids, mask) == [
        (0, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        (1, "def f(): pass<|im_end|>"),
        (0, "\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n"),
        (1, "ok<|im_end|>"),
    ]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert ids[-1] == im_end and mask[-1] == 1


def test_chatml_without_system(tok):
    ids, mask = encode(resolve_template("chatml"), tok, TWO_ROUNDS[:2])
    assert spans(tok, ids, mask) == [
        (0, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        (1, "def f(): pass<|im_end|>"),
    ]


def test_codefuse_multi_round_with_system(tok):
    ids, mask = encode(resolve_template("codefuse"), tok, WITH_SYSTEM)
    assert spans(tok, ids, mask) == [
        (0, "<|role_start|>system<|role_end|>Be brief.<|role_start|>human<|role_end|>hi<|role_start|>bot<|role_end|>"),
        (1, "def f(): pass</s>"),
        (0, "<|role_start|>human<|role_end|>more<|role_start|>bot<|role_end|>"),
        (1, "ok</s>"),
    ]
    eos_positions = [k for k, t in enumerate(ids) if t == tok.eos_token_id]
    assert len(eos_positions) == 2 and all(mask[k] == 1 for k in eos_positions)


def test_codefuse_without_system(tok):
    ids, mask = encode(resolve_template("codefuse"), tok, TWO_ROUNDS)
    assert spans(tok, ids, mask)[0] == (0, "<|role_start|>human<|role_end|>hi<|role_start|>bot<|role_end|>")


def test_mftcoder_trains_content_newline_and_eos(tok):
    ids, mask = encode(resolve_template("mftcoder"), tok, WITH_SYSTEM)
    assert spans(tok, ids, mask) == [
        (0, "<s>system\nBe brief.\n<s>human\nhi\n<s>bot\n"),
        (1, "def f(): pass\n</s>"),
        (0, "\n<s>human\nmore\n<s>bot\n"),
        (1, "ok\n</s>"),
        (0, "\n"),  # MFTCoder puts "\n" after every eos, the last one too
    ]
    # `<s>` is the tokenizer's bos string, so it becomes the bos token, as with CodeLlama
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 5


def test_mftcoder_without_system(tok):
    ids, mask = encode(resolve_template("mftcoder"), tok, TWO_ROUNDS[:2])
    assert spans(tok, ids, mask) == [(0, "<s>human\nhi\n<s>bot\n"), (1, "def f(): pass\n</s>"), (0, "\n")]


def test_custom_template_with_eos_end(tok):
    custom = CustomTemplate(system_prefix="## S\n", human_prefix="## Q\n", bot_prefix="## A\n", turn_end="\n")
    ids, mask = encode(resolve_template("custom", custom), tok, WITH_SYSTEM)
    assert spans(tok, ids, mask) == [
        (0, "## S\nBe brief.\n## Q\nhi\n## A\n"),
        (1, "def f(): pass</s>"),
        (0, "## Q\nmore\n## A\n"),
        (1, "ok</s>"),
    ]


def test_custom_template_with_literal_end(tok):
    custom = CustomTemplate(human_prefix="Q: ", bot_prefix=" A: ", bot_end="<|im_end|>")
    ids, mask = encode(resolve_template("custom", custom), tok, TWO_ROUNDS)
    assert spans(tok, ids, mask) == [
        (0, "Q: hi A: "),
        (1, "def f(): pass<|im_end|>"),
        (0, "Q: more A: "),
        (1, "ok<|im_end|>"),
    ]
    assert tok.eos_token_id not in ids


def test_empty_bot_content_still_trains_the_end(tok):
    ids, mask = encode(resolve_template("codefuse"), tok, [Turn("human", "x"), Turn("bot", "")])
    assert spans(tok, ids, mask)[-1] == (1, "</s>")


def test_batched_encoding_matches_one_by_one(tok):
    template = resolve_template("chatml")
    convs = [WITH_SYSTEM, TWO_ROUNDS, TWO_ROUNDS[:2]]
    assert encode_conversations(template, tok, convs) == [encode(template, tok, c) for c in convs]


def test_template_errors(tok):
    with pytest.raises(ValueError, match="unknown template"):
        resolve_template("alpaca")
    with pytest.raises(ValueError, match="custom_template"):
        resolve_template("custom")
    tok_without_eos = byte_tokenizer()
    tok_without_eos.eos_token = None
    with pytest.raises(ValueError, match="eos"):
        encode(resolve_template("codefuse"), tok_without_eos, TWO_ROUNDS)
