"""Chat templates: how a conversation becomes tokens, and which tokens carry the loss.

This module is the one place where each template is spelled out. A template is a set of literal
role markers; the loss falls on the bot content, the template's bot suffix (MFTCoder v0.5 trains
the newline after the answer) and the end marker that follows it (the tokenizer's eos, or
`<|im_end|>` for ChatML), so the model learns to stop. Everything else (system, human turns, role
markers, the text between rounds) is context only.

Every stretch of text is tokenized on its own, as MFTCoder's `UniformEncoder` (v0.5) does: the
system turn is one piece, each human turn with the bot marker after it one piece, the bot content
a fresh encode (just as generated text starts right after the prompt's bot marker at inference,
and the mask boundary never falls inside a token), and text after the end marker its own piece.
No-break spaces (U+00A0, U+202F) in contents become plain spaces, as MFTCoder normalises them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

from launcher.recipe import CustomTemplate

Role = Literal["system", "human", "bot"]


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatTemplate:
    """Literal role markers. A conversation renders as

    [system_prefix SYS system_suffix] (human_prefix Q human_suffix bot_prefix | A bot_suffix END | after_end)+
    with `between_rounds` (context) in front of every human turn but the first; `| ... |` is trained.
    `bot_end=None` means the tokenizer's eos token id.
    """

    name: str
    system_prefix: str
    system_suffix: str
    human_prefix: str
    human_suffix: str
    bot_prefix: str
    bot_suffix: str = ""
    bot_end: Optional[str] = None
    between_rounds: str = ""
    after_end: str = ""

    def segments(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        """(text, trained) stretches; a trained stretch is followed by the end marker.

        `turns` is a checked conversation: optional system first, then human/bot pairs. The
        system turn is a piece of its own; `after_end` (context) is a piece of its own after every
        end marker, `between_rounds` is put in front of the next human turn.
        """
        out: list[tuple[str, bool]] = []
        for turn in turns:
            content = normalise_spaces(turn.content)
            if turn.role == "system":
                out.append((self.system_prefix + content + self.system_suffix, False))
            elif turn.role == "human":
                lead = self.between_rounds if any(trained for _, trained in out) else ""
                out.append((lead + self.human_prefix + content + self.human_suffix + self.bot_prefix, False))
            else:
                out.append((content + self.bot_suffix, True))
                if self.after_end:
                    out.append((self.after_end, False))
        return out

    def end_ids(self, tokenizer: Any) -> list[int]:
        """Token ids of the trained end marker after each bot turn."""
        if self.bot_end is not None:
            return list(tokenizer.encode(self.bot_end, add_special_tokens=False))
        if tokenizer.eos_token_id is None:
            raise ValueError(f"template '{self.name}' ends bot turns with the eos token, but the tokenizer has none")
        return [int(tokenizer.eos_token_id)]


#: No-break spaces MFTCoder's encoder turns into plain spaces before tokenizing.
NO_BREAK_SPACES = {"\u00a0": " ", "\u202f": " "}


def normalise_spaces(text: str) -> str:
    """`text` with no-break spaces (U+00A0, U+202F) as plain spaces, as MFTCoder's encoder has it."""
    for odd, plain in NO_BREAK_SPACES.items():
        text = text.replace(odd, plain)
    return text


CHATML = ChatTemplate(
    name="chatml",
    system_prefix="<|im_start|>system\n",
    system_suffix="<|im_end|>\n",
    human_prefix="<|im_start|>user\n",
    human_suffix="<|im_end|>\n",
    bot_prefix="<|im_start|>assistant\n",
    bot_end="<|im_end|>",
    between_rounds="\n",
)

CODEFUSE = ChatTemplate(
    name="codefuse",
    system_prefix="<|role_start|>system<|role_end|>",
    system_suffix="",
    human_prefix="<|role_start|>human<|role_end|>",
    human_suffix="",
    bot_prefix="<|role_start|>bot<|role_end|>",
)

# MFTCoder's UniformEncoder with its default role markers: every content ends with "\n", the bot
# content + "\n" + eos is trained, and "\n" follows every eos as a piece of its own.
MFTCODER = ChatTemplate(
    name="mftcoder",
    system_prefix="<s>system\n",
    system_suffix="\n",
    human_prefix="<s>human\n",
    human_suffix="\n",
    bot_prefix="<s>bot\n",
    bot_suffix="\n",
    after_end="\n",
)

BUILTIN: dict[str, ChatTemplate] = {t.name: t for t in (CHATML, CODEFUSE, MFTCODER)}


def resolve_template(name: str, custom: Optional[CustomTemplate] = None) -> ChatTemplate:
    """The template a recipe names (`TrainStage.template`, `TrainStage.custom_template`)."""
    if name == "custom":
        if custom is None:
            raise ValueError("template 'custom' needs a custom_template block")
        return ChatTemplate(
            name="custom",
            system_prefix=custom.system_prefix,
            system_suffix=custom.turn_end,
            human_prefix=custom.human_prefix,
            human_suffix=custom.turn_end,
            bot_prefix=custom.bot_prefix,
            bot_suffix=custom.bot_suffix,
            bot_end=custom.bot_end,
            after_end=custom.after_bot_end,
        )
    if name not in BUILTIN:
        raise ValueError(f"unknown template '{name}'; known: {', '.join(BUILTIN)}, custom")
    return BUILTIN[name]


def encode_conversations(
    template: ChatTemplate, tokenizer: Any, conversations: Sequence[Sequence[Turn]]
) -> list[tuple[list[int], list[int]]]:
    """(token ids, target mask) per conversation; mask 1 = the token is a training target.

    All stretches of all conversations go through the tokenizer in one batched call (fast
    tokenizers parallelise it); special-token strings in the text (e.g. `<s>`) are parsed as the
    tokenizer parses them, and no bos/eos is added beyond the template's own.
    """
    end = template.end_ids(tokenizer)
    per_conv = [template.segments(turns) for turns in conversations]
    texts = [text for segs in per_conv for text, _ in segs]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out: list[tuple[list[int], list[int]]] = []
    position = 0
    for segs in per_conv:
        ids: list[int] = []
        mask: list[int] = []
        for _, trained in segs:
            piece = list(encoded[position]) + (end if trained else [])
            position += 1
            ids.extend(piece)
            mask.extend([1 if trained else 0] * len(piece))
        out.append((ids, mask))
    return out
