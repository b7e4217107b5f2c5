"""Token streams of chat_rounds samples against MFTCoder's UniformEncoder rules (v0.5), table-driven
over samples (multi-round, system turns, unicode, overlong, role aliases) and templates.

The reference below is written from the encoder's rules, not copied: every content gets "\\n";
no-break spaces become spaces; the system turn is encoded alone (marker + content); each user turn
as user marker + content + assistant marker; the bot content alone, then eos (both trained); then
"\\n" alone (not trained); a row of more than seq_length + 1 tokens is dropped. With the
`mftcoder` template and with a custom template holding MFTCoder's free-form role markers our ids
and masks must equal it exactly; for chatml and codefuse the rules that apply to any template are
checked. The tokenizer is a real byte-level BPE with merges (the built-in tiny model's), so
encoding pieces apart or together gives different ids."""
from __future__ import annotations

import pytest

from jobs.mft.data import parse_conversation, tokenize_task
from jobs.mft.templates import resolve_template
from launcher.recipe import CustomTemplate

SEQ = 128
MFTCODER_MARKERS = {"system": "<s>system\n", "user": "<s>human\n", "assistant": "<s>bot\n"}
FREE_MARKERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}


def rounds(*pairs: tuple[str, str]) -> dict:
    return {"chat_rounds": [{"role": role, "content": content} for role, content in pairs]}


SAMPLES = {
    "one_round": rounds(("human", "add two numbers"), ("bot", "def add(a, b):\n    return a + b")),
    "multi_round": rounds(("human", "hi"), ("bot", "hello"), ("human", "sort"), ("bot", "sorted(x)")),
    "system_ending_in_newline": rounds(("system", "Be brief.\n"), ("human", "hi"), ("bot", "ok")),
    "unicode_and_no_break_spaces": rounds(("system", "réponse\u00a0courte"), ("human", "x\u202f=\u00a01 日本"),
                                          ("bot", "print('π\u00a0≈ 3.14') 🙂")),
    "aliases_user_assistant": rounds(("user", "hi"), ("assistant", "ok"), ("user", "again"), ("assistant", "ok")),
    "alias_gpt": rounds(("human", "hi"), ("gpt", "ok")),
    "overlong": rounds(("human", "write"), ("bot", "x = 1\n" * 60)),
}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFTLAUNCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        from jobs.tiny_model import resolve_model_path

        return AutoTokenizer.from_pretrained(str(resolve_model_path("builtin:tiny-llama")))


def reference(tok, row: dict, markers: dict[str, str]) -> tuple[list[int], list[int]] | None:
    """The ids and loss mask MFTCoder's UniformEncoder gives `row`; None when it drops the row."""
    def enc(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False)

    ids: list[int] = []
    mask: list[int] = []
    for turn in row["chat_rounds"]:
        content = turn["content"].replace("\u202f", " ").replace("\u00a0", " ") + "\n"
        if turn["role"] == "system":
            piece, trained = enc(markers["system"] + content), 0
        elif turn["role"] in ("human", "user"):
            piece, trained = enc(markers["user"] + content + markers["assistant"]), 0
        else:
            piece = enc(content) + [tok.eos_token_id]
            ids += piece
            mask += [1] * len(piece)
            piece, trained = enc("\n"), 0
        ids += piece
        mask += [trained] * len(piece)
    return None if len(ids) > SEQ + 1 else (ids, mask)


def ours(tok, row: dict, template, overlong: str = "drop") -> tuple[list[int], list[int]] | None:
    arrays, stats = tokenize_task("t", [parse_conversation(row)], template, tok, SEQ, overlong)
    if stats.samples == 0:
        return None
    return arrays.tokens.tolist(), arrays.targets.tolist()


TEMPLATES = {
    "mftcoder": (lambda: resolve_template("mftcoder"), MFTCODER_MARKERS),
    "custom_role_markers": (lambda: resolve_template("custom", CustomTemplate(
        system_prefix=FREE_MARKERS["system"], human_prefix=FREE_MARKERS["user"], bot_prefix=FREE_MARKERS["assistant"],
        turn_end="\n", bot_suffix="\n", after_bot_end="\n")), FREE_MARKERS),
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_stream_is_mftcoders(tok, name, sample):
    build, markers = TEMPLATES[name]
    expected = reference(tok, SAMPLES[sample], markers)
    assert ours(tok, SAMPLES[sample], build()) == expected
    assert (expected is None) == (sample == "overlong")


def test_the_reference_can_tell_pieces_apart(tok):
    """Encoding the system turn together with the next one gives other ids with this tokenizer, so
    the equality above checks the piece boundaries."""
    text = FREE_MARKERS["system"] + "Be brief.\n\n"
    apart = tok.encode(text, add_special_tokens=False) + tok.encode(FREE_MARKERS["user"] + "hi\n", add_special_tokens=False)
    together = tok.encode(text + FREE_MARKERS["user"] + "hi\n", add_special_tokens=False)
    assert apart != together


@pytest.mark.parametrize("name", ["chatml", "codefuse", "mftcoder"])
def test_rules_every_template_follows(tok, name):
    template = resolve_template(name)
    plain = rounds(("system", "x = 1 2"), ("human", "a b"), ("bot", "c d"))
    spaced = rounds(("system", "x\u00a0= 1\u202f2"), ("human", "a\u00a0b"), ("bot", "c\u202fd"))
    assert ours(tok, spaced, template) == ours(tok, plain, template)
    bot, gpt, assistant = (ours(tok, rounds(("user", "hi"), (role, "ok")), template) for role in ("bot", "gpt", "assistant"))
    assert bot == gpt == assistant
    ids, _ = ours(tok, SAMPLES["system_ending_in_newline"], template)
    system_piece = tok.encode(template.system_prefix + "Be brief.\n" + template.system_suffix, add_special_tokens=False)
    assert ids[: len(system_piece)] == system_piece
    assert ours(tok, SAMPLES["overlong"], template, "drop") is None
    kept, targets = ours(tok, SAMPLES["overlong"], template, "truncate")
    assert len(kept) == SEQ + 1 and any(targets)
