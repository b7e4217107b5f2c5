"""Shared helpers of the tests/test_mft_*.py files: a tokenizer and chat data built offline.

The tokenizer is byte-level with no merges, so one token is one byte (or one special token):
decoded token spans are exactly the text they came from, which lets tests state masks as text.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Special tokens: <s> (bos), </s> (eos), <pad>, <|im_start|>, <|im_end|>; every byte is a token."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for char in sorted(alphabet):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )


def spans(tokenizer: Any, ids: list[int], mask: list[int]) -> list[tuple[int, str]]:
    """Maximal runs of equal mask values, decoded: [(mask value, text), ...]."""
    out: list[tuple[int, str]] = []
    start = 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or mask[k] != mask[start]:
            out.append((mask[start], tokenizer.decode(ids[start:k])))
            start = k
    return out


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def chat(*pairs: str, system: str | None = None) -> dict:
    """A chat_rounds row from alternating human, bot contents."""
    rounds = [{"role": "system", "content": system}] if system is not None else []
    for k, content in enumerate(pairs):
        rounds.append({"role": "human" if k % 2 == 0 else "bot", "content": content})
    return {"chat_rounds": rounds}
