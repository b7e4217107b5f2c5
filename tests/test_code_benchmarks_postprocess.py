"""Post-processing per task, as the reference harness does it: table tests with hand-written
expectations (markdown fences, trailing special tokens, text after the last brace, empty
generations, prompt base + completion)."""
from __future__ import annotations

import pytest

from jobs.code_benchmarks.data import load_benchmark
from jobs.code_benchmarks.postprocess import (
    cut_at_first,
    is_finished,
    pick_code_block,
    postprocess,
    reference_eos,
    remove_last_block,
)
from jobs.code_benchmarks.prompts import PromptFormat

PY = {
    "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
    "declaration": "def add(a, b):\n",
    "buggy_solution": "    return a - b\n",
    "test": "def check(add):\n    assert add(1, 2) == 3\ncheck(add)\n",
    "entry_point": "add",
    "instruction": "Write a Python function `add(a, b)`.",
}
PY_HEAD = 'def add(a, b):\n    """Add two numbers."""'

CPP = {
    "prompt": "/* add */\nint add(int a, int b){\n",
    "declaration": "int add(int a, int b){\n",
    "buggy_solution": "    return a - b;\n}\n",
    "test": "int main(){}\n",
    "entry_point": "add",
    "instruction": "Write a C++ function `int add(int a, int b)`.",
}
CPP_HEAD = "/* add */\nint add(int a, int b){"

JAVA = {
    "prompt": "class Solution {\n    public int add(int a, int b) {\n",
    "declaration": "class Solution {\n    public int add(int a, int b) {\n",
    "buggy_solution": "        return a - b;\n    }\n}\n",
    "test": "public class Main {}\n",
    "entry_point": "add",
    "instruction": "Write a Java function `public int add(int a, int b)`.",
}
JAVA_HEAD = "class Solution {\n    public int add(int a, int b) {"

GO = dict(CPP, prompt="// add\nfunc Add(a int, b int) int {\n", declaration="\nfunc Add(a int, b int) int {\n", entry_point="Add")
GO_HEAD = "// add\nfunc Add(a int, b int) int {"

JS = dict(CPP, prompt="/* add */\nconst add = (a, b) => {\n", declaration="\nconst add = (a, b) => {\n")
JS_HEAD = "/* add */\nconst add = (a, b) => {"

RUST = dict(CPP, prompt="fn main(){}\n\nfn add(a: i32, b: i32) -> i32{\n", declaration="\nfn add(a: i32, b: i32) -> i32{\n")

MBPP = {"task_id": 11, "text": "Add two numbers.", "test_list": ["assert add(1, 2) == 3"]}
MBPP_HEAD = '"""\nAdd two numbers.\nassert add(1, 2) == 3\n"""\n'

FENCED = "```python\ndef add(a, b):\n    return a + b\n```"

CASES = [
    # --- humanevalsynthesize-python
    ("humanevalsynthesize-python", PY, "competition", "    return a + b\n", PY_HEAD + "\n    return a + b"),
    ("humanevalsynthesize-python", PY, "instruct", "\n    return a + b\n", PY_HEAD + "\n    return a + b"),
    ("humanevalsynthesize-python", PY, "competition", "    return a + b\n<|im_end|>", PY_HEAD + "\n    return a + b"),
    ("humanevalsynthesize-python", PY, "competition", "    return a + b<|endoftext|>junk", PY_HEAD + "\n    return a + b"),
    ("humanevalsynthesize-python", PY, "competition", "    return a + b\n\nprint(add(1, 2))", PY_HEAD + "\n    return a + b\n"),
    ("humanevalsynthesize-python", PY, "competition", "    return a + b\n\n\ndef helper():\n    pass\n", PY_HEAD + "\n    return a + b\n\n"),
    ("humanevalsynthesize-python", PY, "competition", "    return a + b\n```\nThat is it.", PY_HEAD + "\n    return a + b"),
    # a fence at column 0 before the code ends the body at once: nothing of the answer survives
    ("humanevalsynthesize-python", PY, "competition", FENCED, PY_HEAD),
    # the appended newline leads the tail, so "\ndef" matches at the very start
    ("humanevalsynthesize-python", PY, "competition", "def add(a, b):\n    return a + b", PY_HEAD),
    ("humanevalsynthesize-python", PY, "competition", "", PY_HEAD),
    ("humanevalsynthesize-python", PY, "instruct", "", PY_HEAD),
    ("humanevalsynthesize-python", PY, "chatml", "    return a + b\n<|im_end|>\n", PY_HEAD + "\n\n    return a + b"),
    # --- humanevalfixtests-python: the base is the bare declaration
    ("humanevalfixtests-python", PY, "competition", "    return a + b\n", "def add(a, b):\n    return a + b"),
    ("humanevalfixtests-python", PY, "competition", "", "def add(a, b):"),
    # --- brace languages: cut after the closing brace of the function
    ("humanevalsynthesize-cpp", CPP, "competition", "    return a + b;\n}\nint main(){\n    return 0;\n}\n",
     CPP_HEAD + "\n    return a + b;\n}"),
    ("humanevalsynthesize-cpp", CPP, "competition", "    if (a) { return b; }\n    return a + b;\n}\n```",
     CPP_HEAD + "\n    if (a) { return b; }\n    return a + b;\n}"),
    # never closed: keep up to the last brace, drop the text after it
    ("humanevalsynthesize-cpp", CPP, "competition", "    if (a) { return b; }\n    return a + b;\nThe end.",
     CPP_HEAD + "\n    if (a) { return b; }"),
    # an opening fence before the code survives (and fails compilation, as in the reference)
    ("humanevalsynthesize-cpp", CPP, "competition", "```cpp\nint add(int a, int b){\n    return a + b;\n}\n```",
     CPP_HEAD + "\n```cpp\nint add(int a, int b){\n    return a + b;\n}"),
    ("humanevalsynthesize-cpp", CPP, "competition", "    return a + b;\n}<|endoftext|>", CPP_HEAD + "\n    return a + b;\n}"),
    ("humanevalsynthesize-cpp", CPP, "competition", "", CPP_HEAD),
    ("humanevalfixtests-cpp", CPP, "instruct", "\n    return a + b;\n}\n\nint main(){}",
     "int add(int a, int b){\n    return a + b;\n}"),
    ("humanevalsynthesize-js", JS, "competition", "    return a + b;\n};\n\nconsole.log(add(1, 2));<|endoftext|>",
     JS_HEAD + "\n    return a + b;\n}"),
    ("humanevalsynthesize-java", JAVA, "competition", "        return a + b;\n    }\n}\n\npublic class Main {\n}\n",
     JAVA_HEAD + "\n        return a + b;\n    }\n}"),
    # java, no closing of the class: the main is dropped and a brace closes what is open
    ("humanevalsynthesize-java", JAVA, "competition",
     "        return a + b;\n    }\n    public static void main(String[] args) {\n        System.out.println(1);\n",
     JAVA_HEAD + "\n        return a + b;\n    }\n    }"),
    ("humanevalsynthesize-java", JAVA, "competition", "", JAVA_HEAD),
    ("humanevalsynthesize-go", GO, "competition", "    return a + b\n}\n\nfunc main() {\n}\n", GO_HEAD + "\n    return a + b\n}"),
    # "struct" is a Go stop word, even inside the body
    ("humanevalsynthesize-go", GO, "competition", "    type p struct{ x int }\n    return a + b\n}\n", GO_HEAD + "\n    type p "),
    ("humanevalsynthesize-rust", RUST, "competition", "    a + b\n}\n\nfn other() {}\n",
     "fn main(){}\n\nfn add(a: i32, b: i32) -> i32{\n    a + b\n}"),
    ("humanevalfixtests-rust", RUST, "competition", "    a + b\n}\n",
     "fn main(){}\n\nfn add(a: i32, b: i32) -> i32{\n    a + b\n}"),
    # --- mbpp, competition fork: code block picking, then stop words; the docstring prompt leads
    ("mbpp", MBPP, "competition", "Here you go:\n```python\nimport math\ndef add(a, b):\n    return a + b\n```\nDone.",
     MBPP_HEAD + "import math\ndef add(a, b):\n    return a + b\n\n"),  # the closing fence line leaves a "\n"
    ("mbpp", MBPP, "competition", "import math\ndef add(a, b):\n    return a + b\nprint(add(1, 2))",
     MBPP_HEAD + "def add(a, b):\n    return a + b\n"),
    ("mbpp", MBPP, "competition", "def h(x):\n    return x\n\ndef add(a, b):\n    return h(a) + b\n\nassert add(1, 2) == 3",
     MBPP_HEAD + "def h(x):\n    return x\n\ndef add(a, b):\n    return h(a) + b\n\n"),
    ("mbpp", MBPP, "competition", "def add(a, b):\n    return a + b<|im_end|>\n<|im_start|>user", MBPP_HEAD + "def add(a, b):\n    return a + b\n"),
    ("mbpp", MBPP, "competition", "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    pass",
     MBPP_HEAD + "def add(a, b):\n    return a + b\n\n"),
    ("mbpp", MBPP, "competition", "", MBPP_HEAD),
    ("mbpp", MBPP, "competition", "I cannot do that.", MBPP_HEAD),
    ("mbpp", MBPP, "chatml", FENCED + "<|im_end|>", MBPP_HEAD + "def add(a, b):\n    return a + b\n\n"),
    ("mbpp", MBPP, "codefuse", FENCED + "</s>", MBPP_HEAD + "def add(a, b):\n    return a + b\n\n"),
    # --- mbpp, upstream (instruct): no block picking; "\n```" is a stop word
    ("mbpp", MBPP, "instruct", "def add(a, b):\n    return a + b\n```\n", MBPP_HEAD + "def add(a, b):\n    return a + b"),
    ("mbpp", MBPP, "instruct", FENCED, MBPP_HEAD + "```python\ndef add(a, b):\n    return a + b"),
    ("mbpp", MBPP, "instruct", "", MBPP_HEAD),
    # --- humaneval: stripped prompt + completion cut at stop words
    ("humaneval", PY, "instruct", "\n    return a + b\n\n\ndef other():\n    pass", PY_HEAD + "\n    return a + b\n\n"),
    ("humaneval", PY, "competition", "    return a + b\n```", PY_HEAD + "\n    return a + b"),
    ("humaneval", PY, "instruct", "\n    return a + b<file_sep>x", PY_HEAD + "\n    return a + b"),
    ("humaneval", PY, "competition", "", PY_HEAD + "\n"),
]


@pytest.mark.parametrize("benchmark,row,fmt,completion,expected", CASES)
def test_postprocess_table(benchmark, row, fmt, completion, expected):
    assert postprocess(benchmark, row, completion, fmt) == expected


def test_which_string_is_the_eos_token():
    # instruct (upstream): the tokenizer's eos is a stop word
    assert postprocess("humanevalsynthesize-python", PY, "\n    return a + b</s>x", "instruct", ["</s>"]) == PY_HEAD + "\n    return a + b"
    # competition (the fork): `--eos <|im_end|>` replaces the tokenizer's, so `</s>` is plain text ...
    assert postprocess("humanevalsynthesize-python", PY, "    return a + b</s>x", "competition", ["</s>"]) == PY_HEAD + "\n    return a + b</s>x"
    # ... unless the recipe names it (MFTCoder's --eos); then every occurrence is removed
    fmt = PromptFormat(name="competition", eos=("</s>",))
    assert postprocess("humanevalsynthesize-python", PY, "    return a + b</s>x", fmt) == PY_HEAD + "\n    return a + bx"
    assert reference_eos("competition", ["</s>"]) == "<|im_end|>" and reference_eos("instruct", ["</s>"]) == "</s>"
    assert reference_eos("instruct") == "<|endoftext|>" and reference_eos(fmt) == "</s>"


def test_custom_suffix_inside_completion_becomes_newline():
    fmt = PromptFormat(name="custom", prefix="<U>", suffix="<A>", eos=("<E>",))
    got = postprocess("mbpp", MBPP, "def add(a, b):<A>    return a + b<E>", fmt)
    assert got == MBPP_HEAD + "def add(a, b):\n    return a + b\n"


def test_helpers():
    assert cut_at_first("abc\nif x", ["\nif", "c"]) == "ab"
    assert cut_at_first("abc", []) == "abc"
    assert pick_code_block("text\n```\ncode\n```") == "code\n\n"
    assert pick_code_block("no code here") == ""
    assert remove_last_block("js", "  return 1;\n}\n}\n", []) == "  return 1;\n}"
    assert remove_last_block("java", "    return 1;\n  }\n}\nextra", []) == "    return 1;\n  }\n}"


@pytest.mark.parametrize(
    "benchmark,text,done",
    [
        ("humanevalsynthesize-python", "    return 1\n", False),
        ("humanevalsynthesize-python", "    return 1\nprint(1)", True),
        ("humanevalsynthesize-python", "    return 1\nx = 2", True),
        ("humanevalsynthesize-cpp", "    return 1;\n", False),
        ("humanevalsynthesize-cpp", "    return 1;\n}", True),
        ("humanevalsynthesize-java", "    return 1;\n  }", False),
        ("humanevalsynthesize-java", "    return 1;\n  }\n}", True),
        ("mbpp", "def f():\n    return 1\n", False),
        ("mbpp", "def f():\n    return 1\nassert f() == 1", True),
        ("mbpp", "def f():<|im_end|>", True),
    ],
)
def test_is_finished(benchmark, text, done):
    assert is_finished(benchmark, "competition", text) is done


# ----- real data: canonical completions come back as prompt base + solution


@pytest.mark.parametrize("benchmark", ["humanevalsynthesize-python", "humanevalsynthesize-js", "humanevalsynthesize-java"])
def test_canonical_completion_round_trip(data_dir, benchmark):
    for row in load_benchmark(benchmark, data_dir, limit=5).problems:
        got = postprocess(benchmark, row, row["canonical_solution"], "competition")
        assert got == row["prompt"].rstrip() + "\n" + row["canonical_solution"].rstrip()
        # instruct: the model continues the stripped prompt, so it writes the newline itself
        gap = row["prompt"][len(row["prompt"].rstrip()):]
        got = postprocess(benchmark, row, gap + row["canonical_solution"], "instruct")
        assert got == row["prompt"].rstrip() + (gap + row["canonical_solution"]).rstrip()


def test_buggy_completion_on_fixtests(data_dir):
    for row in load_benchmark("humanevalfixtests-python", data_dir, limit=5).problems:
        got = postprocess("humanevalfixtests-python", row, row["buggy_solution"], "competition")
        assert got == row["declaration"].rstrip() + "\n" + row["buggy_solution"].rstrip()


def test_mbpp_reference_code_round_trip(data_dir):
    for row in load_benchmark("mbpp", data_dir, limit=5).problems:
        code = row["code"].replace("\r\n", "\n")
        got = postprocess("mbpp", row, "```python\n" + code + "\n```", "competition")
        assert got.startswith('"""\n' + row["text"])
        assert got.endswith(code + "\n\n")
