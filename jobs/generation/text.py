"""Turning new token ids into text, as the reference harness does and cheaply enough to run every
decode step."""
from __future__ import annotations

from typing import Any, Sequence


def batch_decode(tokenizer: Any, sequences: Sequence[Sequence[int]]) -> list[str]:
    """Decode with special tokens kept and no clean-up; straight into the Rust tokenizer when there
    is one (the stop check runs every step, and transformers' wrapper costs as much as the decode)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch([list(s) for s in sequences], skip_special_tokens=False)
    return tokenizer.batch_decode(sequences, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def decode_new_text(tokenizer: Any, prompt_ids: Sequence[Sequence[int]],
                    new_ids: Sequence[Sequence[int]]) -> list[str]:
    """The text the new tokens add after the prompt: decode(prompt + new) minus decode(prompt), as
    the reference harness slices its decoded output; plain decode(new) where that prefix differs
    (a prompt ending inside a multi-byte character)."""
    full = batch_decode(tokenizer, [list(p) + list(n) for p, n in zip(prompt_ids, new_ids)])
    heads = batch_decode(tokenizer, [list(p) for p in prompt_ids])
    out = []
    for text, head, new in zip(full, heads, new_ids):
        out.append(text[len(head):] if text.startswith(head) else batch_decode(tokenizer, [list(new)])[0])
    return out


class IncrementalText:
    """Decoded new text of growing token lists, decoding a short window per step (the streaming
    detokenizer of TGI and HF's TextStreamer): the per-step stop check then costs O(1) per row,
    not O(tokens so far). A window that ends inside a multi-byte character waits for the next
    token. `contexts` are a few prompt tokens in front of the new ones, so a tokenizer that drops
    the first token's leading space (SentencePiece) still shows the indentation."""

    def __init__(self, tokenizer: Any, contexts: Sequence[Sequence[int]]):
        self.tokenizer = tokenizer
        self.seqs = [list(c) for c in contexts]
        self.prefix = [0] * len(self.seqs)
        self.read = [len(c) for c in self.seqs]
        self.text = [""] * len(self.seqs)

    def push(self, rows: Sequence[int], tokens: Sequence[int]) -> None:
        """Append token `tokens[i]` to row `rows[i]` and bring `text` up to date."""
        for row, token in zip(rows, tokens):
            self.seqs[row].append(token)
        before = [self.seqs[r][self.prefix[r]:self.read[r]] for r in rows]
        after = [self.seqs[r][self.prefix[r]:] for r in rows]
        decoded = batch_decode(self.tokenizer, before + after)
        for i, row in enumerate(rows):
            head, full = decoded[i], decoded[len(rows) + i]
            if len(full) > len(head) and not full.endswith("\ufffd"):
                self.text[row] += full[len(head):]
                self.prefix[row], self.read[row] = self.read[row], len(self.seqs[row])
