"""eval_sandbox and jobs.code_benchmarks.assembly: argv, rewriting and assembly rules (no sandbox needed)."""
from __future__ import annotations

import json
import os
import warnings

import pytest

from eval_sandbox import Limits, default_limits
from eval_sandbox import backends as B
from eval_sandbox.limits import GiB, MiB
from eval_sandbox.process import _Tail, scratch_usage
from eval_sandbox.runners import get_runner
from eval_sandbox.runners.base import Context
from eval_sandbox.runners.cpp import harden_asserts as cpp_harden
from eval_sandbox.runners.rust import harden_asserts as rust_harden
from jobs.code_benchmarks import assembly as A


# ----------------------------------------------------------------------------- limits / argv

def test_prlimit_args_soft_equals_hard_and_cpu_grace():
    lim = Limits(cpu_seconds=7, address_space_bytes=GiB, processes=9, file_size_bytes=MiB, open_files=33)
    assert lim.prlimit_args() == [
        "--core=0", "--cpu=7:8", f"--as={GiB}:{GiB}", "--nproc=9:9", f"--fsize={MiB}:{MiB}", "--nofile=33:33",
    ]
    assert Limits(address_space_bytes=None, processes=None).prlimit_args().count("--as") == 0


def test_compilers_get_more_than_programs():
    for lang in ("java", "go", "rust", "cpp"):
        c, r = default_limits(lang, "compile"), default_limits(lang, "run")
        assert c.wall_timeout_s > r.wall_timeout_s and c.processes >= r.processes
        assert c.address_space_bytes >= r.address_space_bytes
    assert default_limits("python", "compile") is None
    with pytest.raises(ValueError):
        default_limits("cobol")


APPTAINER_GOLDEN = [
    "/usr/bin/apptainer", "exec", "--containall", "--no-home", "--net", "--network", "none",
    "--bind", "/scratch/x/work:/tmp:rw",
    "--bind", "/scratch/x/shm:/dev/shm:rw",
    "--bind", "/opt/tc/rust:/opt/tc/rust:ro",
    "--bind", "/var/cache/go:/var/cache/go:rw",
    "--pwd", "/tmp",
    "--env", "HOME=/tmp", "--env", "PATH=/usr/bin:/bin",
    "/images/mftlaunch-sandbox.sif",
    "/usr/bin/prlimit", "--core=0", "--cpu=5:6", "--as=1073741824:1073741824", "--nproc=16:16",
    "--fsize=1048576:1048576", "--nofile=64:64",
    "--", "/usr/bin/python3", "-c", "print(1)",
]


def test_apptainer_argv_golden():
    be = B.ApptainerBackend(image="/images/mftlaunch-sandbox.sif", apptainer="/usr/bin/apptainer")
    argv = be.wrap(["/usr/bin/python3", "-c", "print(1)"], scratch="/scratch/x/work", shm="/scratch/x/shm",
                   env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
                   limits=Limits(cpu_seconds=5, address_space_bytes=GiB, processes=16, file_size_bytes=MiB,
                                 open_files=64),
                   mounts=B.Mounts(ro=["/opt/tc/rust"], rw=["/var/cache/go"]))
    assert argv == APPTAINER_GOLDEN


def test_apptainer_image_from_environment(monkeypatch):
    monkeypatch.setenv("MFTLAUNCH_SANDBOX_IMAGE", "/x/y.sif")
    assert B.ApptainerBackend().image == "/x/y.sif"
    assert B.get_backend("apptainer", image="/z.sif").image == "/z.sif"


def test_bubblewrap_argv_isolation_flags():
    be = B.BubblewrapBackend("/usr/bin/bwrap")
    argv = be.wrap(["/bin/true"], scratch="/s/work", shm="/s/shm", env={"PATH": "/usr/bin", "HOME": "/tmp"},
                   limits=Limits(), mounts=B.Mounts(ro=["/home/u/tc"], rw=["/home/u/cache"]))
    assert argv[:4] == ["/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    s = " ".join(argv)
    assert "--ro-bind / /" in s and "--proc /proc" in s and "--dev /dev" in s
    assert "--bind /s/work /tmp" in s and "--bind /s/shm /dev/shm" in s
    assert "--clearenv" in argv and "--chdir /tmp" in s
    assert "--ro-bind /home/u/tc /home/u/tc" in s and "--bind /home/u/cache /home/u/cache" in s
    # masks first, binds after, read-only remounts last (mount points must be creatable)
    i_mask, i_bind, i_ro = argv.index("--tmpfs"), argv.index("/home/u/cache"), argv.index("--remount-ro")
    assert i_mask < i_bind < i_ro
    assert ["--remount-ro", "/dev"] == argv[argv.index("/dev", i_ro) - 1: argv.index("/dev", i_ro) + 1]
    # the untrusted command comes last, behind prlimit
    sep = argv.index("--", argv.index("--clearenv"))
    assert argv[sep + 1].endswith("prlimit") and argv[-1] == "/bin/true"
    assert "--nproc=64:64" in argv[sep:]


def test_backend_names():
    with pytest.raises(ValueError):
        B.get_backend("docker")
    B.NoneBackend._warned = False
    with pytest.warns(RuntimeWarning, match="WITHOUT ISOLATION"):
        be = B.get_backend("none")
    assert be.name == "none"
    argv = be.wrap(["/bin/true"], scratch="/s", shm=None, env={"A": "1"}, limits=Limits(), mounts=B.Mounts())
    assert argv[:3] == ["/usr/bin/env", "-i", "A=1"] and argv[-1] == "/bin/true"


# ----------------------------------------------------------------------------- supervisor pieces

def test_marker_found_across_chunk_boundaries():
    t = _Tail(16, b"MARKER-123")
    for ch in [b"xxMAR", b"KER-", b"12", b"3yy"]:
        t.add(ch)
    assert t.found
    t2 = _Tail(16, b"MARKER-123")
    t2.add(b"MARKER-12")
    t2.add(b"4")
    assert not t2.found
    big = _Tail(8, None)
    big.add(b"a" * 100 + b"tail1234")
    assert big.value() == b"tail1234"


def test_scratch_usage_counts_bytes_and_entries(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(os.urandom(100_000))
    (tmp_path / "g").write_bytes(b"x")
    used, entries = scratch_usage(str(tmp_path), 100)
    assert entries == 3 and used >= 100_000
    assert scratch_usage(str(tmp_path), 1)[1] == 2  # stops early


# ----------------------------------------------------------------------------- rewriting

def test_cpp_asserts_renamed_outside_directives():
    src = ("#include <assert.h>\n#define assert(x) ((void)0)\n#define CHK(x) \\\n  assert(x)\n"
           "static_assert(1, \"ok\");\nint main(){ assert (1 == 1); x.assert(2); }\n")
    out = cpp_harden(src, "abc123")
    body = out.split('#line 1 "test.cpp"\n', 1)[1]
    assert "#define assert(x) ((void)0)" in body          # directive untouched
    assert "  assert(x)" in body                          # continuation of a directive untouched
    assert "static_assert(1" in body and "x.assert(2)" in body
    assert "MFT_ASSERT_abc123 (1 == 1)" in body
    assert out.index("#define MFT_ASSERT_abc123(e)") < out.index("#line 1")


def test_rust_assert_macros_qualified():
    src = "debug_assert!(a); assert!(b); assert_eq!(c, d); assert_ne!(e, f); std::assert!(g); my_assert!(h);"
    assert rust_harden(src) == ("debug_assert!(a); ::std::assert!(b); ::std::assert_eq!(c, d); "
                                "::std::assert_ne!(e, f); std::assert!(g); my_assert!(h);")


def test_js_console_assert_rewritten(tmp_path):
    ctx = Context(scratch=str(tmp_path), cwd="/tmp", marker="M", token="tok", compile_limits=None,
                  run_limits=Limits())
    _, step = get_runner("javascript").build("console.assert(1);\nconsole . assert(2)\n", ctx)
    text = (tmp_path / "test.js").read_text()
    assert "console" not in text
    assert "__mft_assert_tok(1)" in text and text.rstrip().endswith("__mft_assert_tok_done();")
    assert step.stdin == b"M\n__mft_assert_tok\n" and "--require" in step.argv


# ----------------------------------------------------------------------------- assembly

def _rows(data_dir, lang):
    with open(data_dir / "humanevalpack" / f"{lang}.jsonl") as f:
        return [json.loads(l) for l in f]


def test_python_assembly(data_dir):
    row = _rows(data_dir, "python")[0]
    lang, prog = A.assemble("humanevalsynthesize-python", row, "def f():\n    pass\n\n")
    assert lang == "python"
    assert prog.startswith("import math\nimport re\n") and "import numpy as np\n" in prog
    assert prog == ("\n".join(A.PYTHON_IMPORTS) + "\ndef f():\n    pass") + "\n\n" + row["test"]


def test_humaneval_and_mbpp_assembly():
    he = {"task_id": "HumanEval/0", "entry_point": "f", "test": "def check(c):\n    assert c() == 1\n"}
    assert A.assemble("humaneval", he, "def f(): return 1") == (
        "python", "def f(): return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)")
    mb = {"task_id": 367, "code": "x", "test_list": ["assert a", "assert b"], "test_setup_code": "class Node: pass"}
    assert A.assemble("mbpp", mb, "def a(): pass") == ("python", "def a(): pass\nassert a\nassert b")


def test_cpp_assembly_drops_model_main(data_dir):
    row = _rows(data_dir, "cpp")[0]
    lang, prog = A.assemble("humanevalsynthesize-cpp", row, "int f(){return 1;}\nint main(){ return 3; }\n")
    assert lang == "cpp"
    assert prog.startswith("using namespace std;\n#include<stdlib.h>") and "#include<boost/any.hpp>" in prog
    assert "return 3" not in prog and prog.endswith(row["test"])


def test_java_assembly_removes_empty_main(data_dir):
    row = _rows(data_dir, "java")[0]
    _, prog = A.assemble("humanevalsynthesize-java", row, "class Solution {}\npublic class Main {\n    }\n")
    assert prog == "class Solution {}" + "\n\n" + row["test"]


def test_go_assembly_imports(data_dir):
    rows = _rows(data_dir, "go")
    row = rows[0]   # uses math.Abs; the fixtests declaration has no import
    prog = A.canonical_program("humanevalfixtests-go", row)
    _, full = A.assemble("humanevalfixtests-go", row, prog)
    assert full.startswith("package main\n")
    assert 'import (\n    "math"\n)\n' in full
    # an import already in the generation is dropped from test_setup; "package main" not doubled
    gen = 'package main\nimport (\n    "testing"\n    "math"\n)\n' + row["declaration"] + row["canonical_solution"]
    _, full = A.assemble("humanevalsynthesize-go", row, gen)
    assert full.count("package main") == 1 and full.count('"testing"') == 1
    assert full.count('"math"') == 1
    # a package mentioned only in a // comment is not imported
    gen = "// strings.Split is not used here\nfunc F() int { return 1 }\n"
    _, full = A.assemble("humanevalsynthesize-go", {**row, "import": ""}, gen)
    assert '"strings"' not in full
    # the reference names a used-but-unimported helper by its last path element
    _, full = A.assemble("humanevalsynthesize-go", {**row, "import": ""}, "func F() int { return rand.Int() }\n")
    assert '"rand"' in full
    with pytest.raises(ValueError):
        A.assemble("humanevalsynthesize-go", {**row, "import": 'import "os"\n'}, "")


def test_rust_assembly_merges_declaration(data_dir):
    row = _rows(data_dir, "rust")[0]
    gen = "fn has_close_elements(numbers:Vec<f32>, threshold: f32) -> bool{ true }\nfn main() { one }\nfn main() { two }\n"
    _, full = A.assemble("humanevalsynthesize-rust", row, gen)
    assert full.startswith("use std::{slice::Iter")  # fn main() present in gen: not prepended
    assert "use rand::Rng;\nuse regex::Regex;\nuse md5;\n" in full
    assert full.count("fn has_close_elements") == 1
    assert "two" not in full and "one" in full
    assert full.endswith(row["test"])
    _, full = A.assemble("humanevalsynthesize-rust", row, "fn f() {}\n")
    assert full.startswith("fn main(){}\n")


def test_prompt_bases_and_reference_programs(data_dir):
    rust = _rows(data_dir, "rust")[3]
    assert A.prompt_base("humanevalfixtests-rust", rust) == "fn main(){}\n" + rust["declaration"]
    assert A.canonical_program("humanevalsynthesize-rust", rust) == rust["prompt"] + rust["canonical_solution"]
    assert A.buggy_program("humanevalfixtests-rust", rust).endswith(rust["buggy_solution"])
    with pytest.raises(ValueError):
        A.buggy_program("humanevalsynthesize-rust", rust)
    with pytest.raises(ValueError):
        A.assemble("humanevalsynthesize-cobol", rust, "")
    assert A.canonical_program("mbpp", {"code": "c"}) == "c"
