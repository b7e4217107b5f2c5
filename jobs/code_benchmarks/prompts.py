"""Prompts, stop words and end-of-sequence strings of every benchmark, in every prompt format.

`task_prompt` is the ONE place that defines a task's prompt text. It is the prompt of the bigcode
evaluation harness: HumanEvalPack in its `instruct` mode (context first, then the instruction,
then the prompt base; the whole `.strip()`ped), MBPP's InCoder-style docstring with the first
test, HumanEval's stripped function prompt. The formats only wrap that text:

- `instruct`: the reference harness unchanged: the task prompt as is, nothing appended.
- `competition`: the MFTCoder fork used by the Qwen code competition: a "\\n" appended to every
  prompt that lacks one; MBPP (only MBPP) wrapped in ChatML with an empty system turn.
- `chatml`: like `competition`, but every benchmark wrapped in ChatML.
- `codefuse`: like `competition`, but every benchmark wrapped in CodeFuse role tags.
- `custom`: like `competition`, wrapped as `system + prefix + prompt + suffix` (recipe strings).

Every format but `instruct` follows the fork's conventions in post-processing too (see
postprocess.py): the fork is the harness the competition scored with and the one that knows
about prefix/suffix wrappers. The generation job asks this module for the prompt string
(`build_prompt`), what stops generation (`generation_stop_strings`), and nothing else.
No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

from jobs.code_benchmarks.data import split_benchmark
from launcher.contract import PROMPT_FORMATS
from jobs.mft.templates import CHATML, CODEFUSE


# Role markers come from the chat templates training uses (jobs/mft/templates.py), so a model is
# prompted with exactly the markers it was fine-tuned on.
CHATML_SYSTEM = CHATML.system_prefix + "{system}" + CHATML.system_suffix
CHATML_USER = CHATML.human_prefix
#: The competition fork's MBPP suffix: no newline after `assistant` (the model writes it).
COMPETITION_MBPP_SUFFIX = CHATML.human_suffix + CHATML.bot_prefix.rstrip("\n")
#: The usual ChatML generation prompt (what a chat template adds), used by `chatml`.
CHATML_SUFFIX = CHATML.human_suffix + CHATML.bot_prefix
CODEFUSE_HUMAN = CODEFUSE.human_prefix
CODEFUSE_BOT = CODEFUSE.bot_prefix

# Stop words: fresh lists are built on every call (the reference mutates a module-level list and
# lets it grow across task instances; we do not).
_PY_STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert")
_GO_STOP = ("\n//", "\nfunc main(", "struct", "\nfunc")
_PACK_EOS = ("<|endoftext|>",)  # the harness appends it to every HumanEvalPack task
_MBPP_STOP_UPSTREAM = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
_MBPP_STOP_FORK = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/")
_HUMANEVAL_STOP_UPSTREAM = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")
_HUMANEVAL_STOP_FORK = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")

#: End-of-sequence strings a format stops on besides the tokenizer's own eos token.
#: competition/chatml: `<|im_end|>` ends a turn of a ChatML fine-tune, `<|endoftext|>` a base Qwen.
_DEFAULT_EOS = {
    "instruct": ("<|endoftext|>",),
    "competition": ("<|im_end|>", "<|endoftext|>"),
    "chatml": ("<|im_end|>", "<|endoftext|>"),
    "codefuse": ("</s>", "<|role_start|>", "<|endoftext|>"),
    "custom": (),
}


@dataclass(frozen=True)
class PromptFormat:
    """A prompt format plus the recipe strings it uses (prefix/suffix/system: `custom` only)."""

    name: str = "competition"
    prefix: str = ""
    suffix: str = ""
    system: str = ""
    eos: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt format {self.name!r}; known: {', '.join(PROMPT_FORMATS)}")
        if self.name != "custom" and (self.prefix or self.suffix or self.system):
            raise ValueError("prefix/suffix/system are used with the custom prompt format only")
        object.__setattr__(self, "eos", tuple(self.eos))

    @property
    def fork_conventions(self) -> bool:
        """True: MFTCoder fork behaviour (newline appended, wrapper, MBPP code-block picking)."""
        return self.name != "instruct"

    @classmethod
    def of(cls, fmt: Union[str, "PromptFormat"]) -> "PromptFormat":
        return fmt if isinstance(fmt, PromptFormat) else cls(name=fmt)

    @classmethod
    def from_stage(cls, stage: Any) -> "PromptFormat":
        """From a `launcher.recipe.GenerateStage` (duck-typed: no recipe import needed)."""
        return cls(
            name=stage.prompt_format,
            prefix=stage.prefix,
            suffix=stage.suffix,
            system=stage.system,
            eos=tuple(stage.eos),
        )


FormatLike = Union[str, PromptFormat]


# ---------------------------------------------------------------------------------------------
# the task prompt


def prompt_base(benchmark: str, problem: dict[str, Any]) -> str:
    """The code the model continues: synthesize → the docstring prompt; fixtests → the bare
    declaration (Rust: with `fn main(){}` in front, as the harness does); mbpp/humaneval → the
    task prompt itself. Post-processing puts it in front of the completion."""
    family, lang = split_benchmark(benchmark)
    if family == "humanevalsynthesize":
        return problem["prompt"]
    if family == "humanevalfixtests":
        if lang == "rust":
            return "fn main(){}\n" + problem["declaration"]
        return problem["declaration"]
    return task_prompt(benchmark, problem)


def _instruct_prompt(base: str, instruction: str, context: Optional[str]) -> str:
    """The harness's `instruct` mode: context, newline, instruction, blank line, prompt base."""
    text = instruction if context is None else context + "\n" + instruction
    return (text + "\n\n" + base).strip()


def task_prompt(benchmark: str, problem: dict[str, Any]) -> str:
    """The reference harness's prompt for one problem (before any format wrapping)."""
    family, _lang = split_benchmark(benchmark)
    if family == "humanevalsynthesize":
        return _instruct_prompt(prompt_base(benchmark, problem), problem["instruction"].strip(), None)
    if family == "humanevalfixtests":
        base = prompt_base(benchmark, problem)
        context = base + problem["buggy_solution"] + "\n" + problem["test"]  # the tests are shown
        return _instruct_prompt(base, f"Fix bugs in {problem['entry_point']}.", context)
    if family == "mbpp":
        return f'"""\n{problem["text"]}\n{problem["test_list"][0]}\n"""\n'
    if family == "humaneval":
        return problem["prompt"].strip()
    raise ValueError(f"no prompt for benchmark {benchmark!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# wrapping


def wrapper(benchmark: str, fmt: FormatLike) -> tuple[str, str]:
    """(prefix, suffix) put around the task prompt for this benchmark in this format."""
    fmt = PromptFormat.of(fmt)
    chatml_prefix = CHATML_SYSTEM.format(system="") + CHATML_USER
    if fmt.name == "instruct":
        return "", ""
    if fmt.name == "competition":
        return (chatml_prefix, COMPETITION_MBPP_SUFFIX) if benchmark == "mbpp" else ("", "")
    if fmt.name == "chatml":
        return chatml_prefix, CHATML_SUFFIX
    if fmt.name == "codefuse":
        return CODEFUSE_HUMAN, CODEFUSE_BOT
    return fmt.system + fmt.prefix, fmt.suffix


def prompt_contents(benchmark: str, problem: dict[str, Any], fmt: FormatLike) -> str:
    """The task prompt with the fork's trailing newline (every format but `instruct`)."""
    fmt = PromptFormat.of(fmt)
    text = task_prompt(benchmark, problem)
    if fmt.fork_conventions and not text.endswith("\n"):
        text += "\n"
    return text


def build_prompt(benchmark: str, problem: dict[str, Any], fmt: FormatLike) -> str:
    """The exact string the model is given for one problem."""
    prefix, suffix = wrapper(benchmark, fmt)
    return prefix + prompt_contents(benchmark, problem, fmt) + suffix


def build_prompts(benchmark: str, problems: Iterable[dict[str, Any]], fmt: FormatLike) -> list[str]:
    return [build_prompt(benchmark, problem, fmt) for problem in problems]


# ---------------------------------------------------------------------------------------------
# stopping


def stop_words(benchmark: str, fmt: FormatLike) -> list[str]:
    """The task's stop words (a fresh list), as the reference harness defines them."""
    fmt = PromptFormat.of(fmt)
    family, lang = split_benchmark(benchmark)
    if family in ("humanevalsynthesize", "humanevalfixtests"):
        lang_words = {"python": _PY_STOP, "go": _GO_STOP}.get(lang or "", ())
        return list(lang_words) + list(_PACK_EOS)
    if family == "mbpp":
        return list(_MBPP_STOP_FORK if fmt.fork_conventions else _MBPP_STOP_UPSTREAM)
    return list(_HUMANEVAL_STOP_FORK if fmt.fork_conventions else _HUMANEVAL_STOP_UPSTREAM)


def default_eos(fmt: FormatLike) -> list[str]:
    """End-of-sequence strings the format stops on by default (besides the tokenizer's eos)."""
    return list(_DEFAULT_EOS[PromptFormat.of(fmt).name])


def eos_strings(fmt: FormatLike, extra: Sequence[str] = ()) -> list[str]:
    """Default eos of the format + the recipe's `eos:` + `extra` (e.g. the tokenizer's eos token)."""
    fmt = PromptFormat.of(fmt)
    out: list[str] = []
    for item in [*default_eos(fmt), *fmt.eos, *extra]:
        if item and item not in out:
            out.append(item)
    return out


def generation_stop_strings(benchmark: str, fmt: FormatLike, extra_eos: Sequence[str] = ()) -> list[str]:
    """Everything that ends generation of one completion: the task's stop words and the eos
    strings. The generator may stop at the first of these; post-processing cuts there again."""
    out = stop_words(benchmark, fmt)
    for item in eos_strings(fmt, extra_eos):
        if item not in out:
            out.append(item)
    return out
