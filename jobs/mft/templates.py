"""Chat templates: how a conversation becomes tokens, and which tokens carry the loss.

This module is the one place where each template is spelled out. A template is a set of literal
role markers; the loss falls on the bot content, the template's bot suffix (MFTCoder v0.5 trains
the newline after the answer) and the end marker that follows it (the tokenizer's eos, or
`<|im_end|>` for ChatML), so the model learns to stop. Everything else (system, human turns, role
markers, the text between rounds) is context only.

Every stretch of text is tokenized on its own, as MFTCoder does: the bot content starts a fresh
encode, just as generated text starts right after the prompt's bot marker at inference, and the
mask boundary never falls inside a token.
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

    [system_prefix SYS system_suffix] (human_prefix Q human_suffix bot_prefix | A bot_suffix END |)+
    with `between_rounds` (context) after END when another round follows; `| ... |` is trained.
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

    def segments(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        """(text, trained) stretches; a trained stretch is followed by the end marker.

        `turns` is a checked conversation: optional system first, then human/bot pairs.
        """
        out: list[tuple[str, bool]] = []
        context = ""
        for turn in turns:
            if turn.role == "system":
                context += self.system_prefix + turn.content + self.system_suffix
            elif turn.role == "human":
                if out:
                    context += self.between_rounds
                context += self.human_prefix + turn.content + self.human_suffix + self.bot_prefix
            else:
                out.append((context, False))
                out.append((turn.content + self.bot_suffix, True))
                context = ""
        return out

    def end_ids(self, tokenizer: Any) -> list[int]:
        """Token ids of the trained end marker after each bot turn."""
        if self.bot_end is not None:
            return list(tokenizer.encode(self.bot_end, add_special_tokens=False))
        if tokenizer.eos_token_id is None:
            raise ValueError(f"template '{self.name}' ends bot turns with the eos token, but the tokenizer has none")
        return [int(tokenizer.eos_token_id)]


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

MFTCODER = ChatTemplate(
    name="mftcoder",
    system_prefix="<s>system\n",
    system_suffix="\n",
    human_prefix="<s>human\n",
    human_suffix="\n",
    bot_prefix="<s>bot\n",
    bot_suffix="\n",
    between_rounds="\n",
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
            bot_end=custom.bot_end,
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
