"""Self-test of the sandbox: hostile programs are contained and scored as failures, and the
result channel cannot be faked by the usual tricks, in every language.

    python -m eval_sandbox selftest [--backend bubblewrap] [--only NAME ...] [--json]

Exit status 0 when every check holds. The pytest suite (tests/test_sandbox_*.py) runs the
same checks, once as the calling user and once as an unprivileged user (setpriv).
Each check returns a list of problems (empty = ok).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import toolchain
from .api import execute
from .limits import default_limits

NOT_PASSED = {"failed", "timeout", "compile_error", "runtime_error", "killed"}


@dataclass
class Check:
    name: str
    fn: Callable[[str], list[str]]
    languages: tuple[str, ...] = ("python",)


CHECKS: dict[str, Check] = {}


def check(name, languages=("python",)):
    def deco(fn):
        CHECKS[name] = Check(name, fn, tuple(languages))
        return fn
    return deco


def _expect(r, statuses, what) -> list[str]:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)
    if r.status in statuses:
        return []
    return [f"{what}: status {r.status!r} ({r.detail}), expected {sorted(statuses)}; "
            f"stdout={r.stdout_tail[-300:]!r} stderr={r.stderr_tail[-300:]!r}"]


def _procs_with(token: str) -> list[str]:
    """Host processes whose command line contains ``token``."""
    hits = []
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if token in cmd:
            hits.append(f"{pid}: {cmd[:120]}")
    return hits


def _no_procs(token: str, wait_s: float = 2.0) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        left = _procs_with(token)
        if not left or time.monotonic() > deadline:
            return [f"still running after evaluation: {p}" for p in left]
        time.sleep(0.1)


# ----------------------------------------------------------------------------- basics per language

BASIC = {
    "python": {
        "pass": "def f(x):\n    return x + 1\n\nassert f(1) == 2\n",
        "fail": "def f(x):\n    return x\n\nassert f(1) == 2\n",
        "exit0": "import sys\ndef f(x):\n    sys.exit(0)\n\nassert f(1) == 2\n",
        "hardexit0": "import os\ndef f(x):\n    os._exit(0)\n\nassert f(1) == 2\n",
        "compile": "def f(x) return x\n",
    },
    "js": {
        "pass": "const f = (x) => x + 1;\nconsole.assert(f(1) === 2);\n",
        "fail": "const f = (x) => x;\nconsole.assert(f(1) === 2);\n",
        "exit0": "const f = (x) => { process.exit(0); };\nconsole.assert(f(1) === 2);\n",
        "swap": "console.assert = () => {};\nconst f = (x) => x;\nconsole.assert(f(1) === 2);\n",
        "shadow": "var console = { assert: () => {}, log: () => {} };\nconst f = (x) => x;\nconsole.assert(f(1) === 2);\n",
        "compile": "const f = (x) => {;\n",
    },
    "java": {
        "pass": ("class Solution { int f(int x) { return x + 1; } }\n"
                 "public class Main { public static void main(String[] a) {\n"
                 "  if (new Solution().f(1) != 2) throw new AssertionError(); } }\n"),
        "fail": ("class Solution { int f(int x) { return x; } }\n"
                 "public class Main { public static void main(String[] a) {\n"
                 "  if (new Solution().f(1) != 2) throw new AssertionError(); } }\n"),
        "exit0": ("class Solution { int f(int x) { System.exit(0); return x; } }\n"
                  "public class Main { public static void main(String[] a) {\n"
                  "  if (new Solution().f(1) != 2) throw new AssertionError(); } }\n"),
        "halt0": ("class Solution { int f(int x) { Runtime.getRuntime().halt(0); return x; } }\n"
                  "public class Main { public static void main(String[] a) {\n"
                  "  if (new Solution().f(1) != 2) throw new AssertionError(); } }\n"),
        "compile": "class Solution { int f(int x) { return x } }\n",
    },
    "cpp": {
        "pass": "#include <assert.h>\nint f(int x) { return x + 1; }\nint main() { assert(f(1) == 2); }\n",
        "fail": "#include <assert.h>\nint f(int x) { return x; }\nint main() { assert(f(1) == 2); }\n",
        "exit0": ("#include <assert.h>\n#include <stdlib.h>\nint f(int x) { exit(0); }\n"
                  "int main() { assert(f(1) == 2); }\n"),
        "quick_exit0": ("#include <assert.h>\n#include <unistd.h>\nint f(int x) { _exit(0); }\n"
                        "int main() { assert(f(1) == 2); }\n"),
        "swap": ("#include <assert.h>\n#define NDEBUG\n#undef assert\n#define assert(x) ((void)0)\n"
                 "int f(int x) { return x; }\nint main() { assert(f(1) == 2); }\n"),
        "assert_fail_override": (
            "#include <assert.h>\n"
            "extern \"C\" void __assert_fail(const char*, const char*, unsigned int, const char*) noexcept {}\n"
            "int f(int x) { return x; }\nint main() { assert(f(1) == 2); return 0; }\n"),
        "compile": "int f(int x) { return x }\n",
    },
    "go": {
        "pass": ("package main\nimport (\n\t\"testing\"\n\t\"github.com/stretchr/testify/assert\"\n)\n"
                 "func F(x int) int { return x + 1 }\n"
                 "func TestF(t *testing.T) { assert.Equal(t, 2, F(1)) }\n"),
        "fail": ("package main\nimport (\n\t\"testing\"\n\t\"github.com/stretchr/testify/assert\"\n)\n"
                 "func F(x int) int { return x }\n"
                 "func TestF(t *testing.T) { assert.Equal(t, 2, F(1)) }\n"),
        "exit0": ("package main\nimport (\n\t\"os\"\n\t\"testing\"\n\t\"github.com/stretchr/testify/assert\"\n)\n"
                  "func F(x int) int { os.Exit(0); return x }\n"
                  "func TestF(t *testing.T) { assert.Equal(t, 2, F(1)) }\n"),
        "syscall_exit0": (
            "package main\nimport (\n\t\"syscall\"\n\t\"testing\"\n\t\"github.com/stretchr/testify/assert\"\n)\n"
            "func F(x int) int { syscall.Exit(0); return x }\n"
            "func TestF(t *testing.T) { assert.Equal(t, 2, F(1)) }\n"),
        "compile": "package main\nfunc F(x int) int { return x \n",
    },
    "rust": {
        "pass": "fn main(){}\nfn f(x: i32) -> i32 { x + 1 }\n#[cfg(test)]\nmod tests {\n use super::*;\n #[test]\n fn t() { assert_eq!(f(1), 2); }\n}\n",
        "fail": "fn main(){}\nfn f(x: i32) -> i32 { x }\n#[cfg(test)]\nmod tests {\n use super::*;\n #[test]\n fn t() { assert_eq!(f(1), 2); }\n}\n",
        "exit0": ("fn main(){}\nfn f(x: i32) -> i32 { std::process::exit(0) }\n#[cfg(test)]\nmod tests {\n"
                  " use super::*;\n #[test]\n fn t() { assert_eq!(f(1), 2); }\n}\n"),
        "swap": ("fn main(){}\nmacro_rules! assert_eq { ($($t:tt)*) => {} }\nfn f(x: i32) -> i32 { x }\n"
                 "#[cfg(test)]\nmod tests {\n use super::*;\n #[test]\n fn t() { assert_eq!(f(1), 2); }\n}\n"),
        "panic_hook_exit0": (
            "fn main(){}\nfn f(x: i32) -> i32 { std::panic::set_hook(Box::new(|_| std::process::exit(0))); x }\n"
            "#[cfg(test)]\nmod tests {\n use super::*;\n #[test]\n fn t() { assert_eq!(f(1), 2); }\n}\n"),
        "compile": "fn main(){}\nfn f(x: i32) -> i32 { x + }\n",
    },
}


def _basic_check(lang: str):
    def run(backend: str) -> list[str]:
        progs = BASIC[lang]
        errs = []
        for kind, prog in progs.items():
            r = execute(lang, prog, backend=backend)
            if kind == "pass":
                errs += _expect(r, "passed", f"{lang}/{kind}")
            elif kind == "compile":
                errs += _expect(r, "compile_error", f"{lang}/{kind}")
            else:   # wrong answers, some dressed up as a pass: never "passed"
                errs += _expect(r, {"failed", "runtime_error"}, f"{lang}/{kind}")
        return errs
    return run


for _lang in BASIC:
    check(f"basic-{_lang}", (_lang,))(_basic_check(_lang))


@check("execute-many-order", ("python",))
def _order(backend):
    jobs = [("python", f"import time\ntime.sleep({0.3 if i % 2 == 0 else 0})\nassert {i} % 3 != 0\n")
            for i in range(6)]
    from .api import execute_many
    rs = execute_many(jobs, workers=3, backend=backend)
    want = [i % 3 != 0 for i in range(6)]
    got = [r.passed for r in rs]
    return [] if got == want else [f"order/passed mismatch: {got} != {want}"]


# ----------------------------------------------------------------------------- hostile programs

@check("network")
def _network(backend):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                accepted.append(c)
            except OSError:
                continue
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    prog = (
        "import socket\nok = []\n"
        f"for host, port in [('127.0.0.1', {port}), ('8.8.8.8', 53), ('1.1.1.1', 80)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2).close()\n"
        "        ok.append(host)\n"
        "    except OSError as e:\n"
        "        print(host, e)\n"
        "assert ok, 'no network'\n"
    )
    try:
        r = execute("python", prog, backend=backend)
    finally:
        stop.set()
        t.join(2)
        srv.close()
    errs = _expect(r, "failed", "network")
    if accepted:
        errs.append(f"the sandbox reached a host socket ({len(accepted)} connections)")
    return errs


@check("fork-bomb")
def _fork_bomb(backend):
    tok = "1000.%09d" % secrets.randbelow(10**9)   # a unique `sleep` argument
    prog = (f"import os, time\nos.environ['X'] = '{tok}'\n"
            "while True:\n    try:\n        if os.fork() == 0:\n"
            f"            os.execv('/bin/sleep', ['sleep', '{tok}'])\n"
            "    except OSError:\n        time.sleep(0.01)\n")
    r = execute("python", prog, backend=backend, timeout=3)
    return _expect(r, {"timeout", "runtime_error", "killed"}, "fork-bomb") + _no_procs(tok)


@check("memory-bomb")
def _memory_bomb(backend):
    prog = "x = []\nwhile True:\n    x.append(bytearray(64 * 1024 * 1024))\n"
    lim = default_limits("python").replace(address_space_bytes=768 * 1024 * 1024)
    r = execute("python", prog, backend=backend, limits=lim)
    errs = _expect(r, {"runtime_error", "killed"}, "memory-bomb")
    if r.duration_s > 30:
        errs.append(f"memory bomb took {r.duration_s:.1f}s")
    return errs


@check("infinite-loop")
def _loop(backend):
    r = execute("python", "while True:\n    pass\n", backend=backend, timeout=2)
    errs = _expect(r, "timeout", "infinite-loop")
    if r.duration_s > 10:
        errs.append(f"timeout took {r.duration_s:.1f}s to fire")
    return errs


@check("cpu-limit")
def _cpu(backend):
    lim = default_limits("python").replace(cpu_seconds=1, wall_timeout_s=20)
    r = execute("python", "while True:\n    pass\n", backend=backend, limits=lim)
    return _expect(r, "timeout", "cpu-limit")


@check("output-1GB")
def _output(backend):
    prog = "import os\nb = b'x' * (1 << 20)\nfor _ in range(1024):\n    os.write(1, b)\n"
    t0 = time.monotonic()
    r = execute("python", prog, backend=backend)
    errs = _expect(r, "killed", "output-1GB")
    if len(r.stdout_tail) > 10000:
        errs.append(f"stdout_tail not capped: {len(r.stdout_tail)} chars")
    if time.monotonic() - t0 > 15:
        errs.append("output cap fired late")
    return errs


@check("disk-fill")
def _disk_fill(backend):
    errs = []
    for where in (".", "/tmp", "/dev/shm"):
        prog = ("b = b'x' * (1 << 20)\n"
                f"for i in range(100000):\n    open('{where}/f%d' % i, 'wb').write(b * 8)\n")
        r = execute("python", prog, backend=backend)
        errs += _expect(r, {"killed", "runtime_error"}, f"disk-fill {where}")
    # many small files: caught by the file-count watchdog
    r = execute("python", "import os\nfor i in range(10**6):\n    open('s%d' % i, 'w').close()\n",
                backend=backend)
    errs += _expect(r, {"killed", "runtime_error"}, "disk-fill many files")
    # one huge file: RLIMIT_FSIZE
    r = execute("python", "open('big', 'wb').write(b'x' * (200 << 20))\n", backend=backend)
    errs += _expect(r, {"runtime_error", "killed"}, "disk-fill one big file")
    return errs


def _outside_targets(tok: str) -> list[str]:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    home = os.path.expanduser("~")
    paths = [f"/tmp/{tok}", f"/var/tmp/{tok}", f"{here}/{tok}", f"{home}/{tok}", f"/etc/{tok}",
             f"{toolchain.cache_dir()}/{tok}", f"{toolchain.scratch_parent()}/{tok}", f"/dev/{tok}",
             f"/dev/shm/{tok}"]
    out = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


@check("write-outside-scratch")
def _write_outside(backend):
    tok = "mftpwned-" + secrets.token_hex(4)
    targets = _outside_targets(tok)
    prog = ("import os\nwrote = []\n"
            f"for p in {targets!r}:\n"
            "    try:\n        with open(p, 'w') as f:\n            f.write('x')\n        wrote.append(p)\n"
            "    except OSError:\n        pass\n"
            "print(wrote)\nassert False, 'not a solution'\n")
    r = execute("python", prog, backend=backend)
    errs = _expect(r, "failed", "write-outside")
    for p in targets:
        if os.path.exists(p):
            errs.append(f"file written outside the scratch dir: {p}")
            try:
                os.unlink(p)
            except OSError:
                pass
    return errs


@check("daemon")
def _daemon(backend):
    tok = "600.%09d" % secrets.randbelow(10**9)
    prog = ("import os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        for fd in (0, 1, 2):\n            os.close(fd)\n"
            f"        os.execv('/bin/sleep', ['sleep', '{tok}'])\n"
            "    os._exit(0)\n"
            "time.sleep(0.3)\nassert False\n")
    r = execute("python", prog, backend=backend)
    return _expect(r, "failed", "daemon") + _no_procs(tok)


@check("kill-others")
def _kill_others(backend):
    """kill -9 -1 and a kill of the parent from inside: a sentinel process of the sandbox's
    own uid outside the sandbox, and this supervisor, must survive."""
    tok = "60.%09d" % secrets.randbelow(10**9)
    ids = toolchain.sandbox_ids()
    kw = dict(user=ids[0], group=ids[1], extra_groups=[]) if ids else {}
    sentinel = subprocess.Popen(["/bin/sleep", tok], **kw, start_new_session=True)
    try:
        prog = ("import os, signal, subprocess\n"
                "for sig in (signal.SIGKILL, signal.SIGTERM):\n"
                "    try:\n        os.kill(-1, sig)\n    except OSError:\n        pass\n"
                "for pid in (os.getppid(), 1):\n"
                "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
                "subprocess.run(['kill', '-9', '-1'])\n"
                "for p in os.listdir('/proc'):\n"
                "    if p.isdigit() and int(p) != os.getpid():\n"
                "        try:\n            os.kill(int(p), signal.SIGKILL)\n        except OSError:\n            pass\n"
                "assert False\n")
        r = execute("python", prog, backend=backend)
        errs = _expect(r, {"failed", "runtime_error"}, "kill-others")
        if sentinel.poll() is not None:
            errs.append(f"sentinel process outside the sandbox was killed (rc={sentinel.returncode})")
        return errs
    finally:
        sentinel.kill()
        sentinel.wait()


@check("env-and-proc")
def _env(backend):
    os.environ["MFT_SECRET_FOR_SELFTEST"] = "s3cr3t"
    try:
        prog = ("import os\nleak = [k for k in os.environ if 'SECRET' in k]\n"
                "for p in os.listdir('/proc'):\n"
                "    if p.isdigit():\n"
                "        try:\n            leak += ['environ'] if b's3cr3t' in open(f'/proc/{p}/environ','rb').read() else []\n"
                "        except OSError:\n            pass\n"
                "print(leak)\nassert not leak\n")
        r = execute("python", prog, backend=backend)
        return _expect(r, "passed", "env-and-proc")
    finally:
        os.environ.pop("MFT_SECRET_FOR_SELFTEST", None)


@check("read-stdin-marker")
def _stdin(backend):
    # The program's stdin is /dev/null by the time its code runs: it cannot read the marker.
    prog = ("import sys, os\ndata = sys.stdin.read()\nos.write(1, data.encode())\n"
            "import re\nassert not re.search('MFT-SANDBOX', data)\n")
    r = execute("python", prog, backend=backend)
    return _expect(r, "passed", "stdin")


def run_checks(names: list[str] | None = None, backend: str = "auto",
               languages: set[str] | None = None) -> dict[str, list[str]]:
    out = {}
    for name, c in CHECKS.items():
        if names and name not in names:
            continue
        if languages is not None and not set(c.languages) <= languages:
            continue
        try:
            out[name] = c.fn(backend)
        except Exception as e:  # noqa: BLE001
            out[name] = [f"check crashed: {e!r}"]
    return out


def available_languages() -> set[str]:
    """Languages whose toolchain is installed here."""
    have = {"python"} if os.path.exists(toolchain.python_exe()) else set()
    w = lambda n: __import__("shutil").which(n, path=toolchain.SANDBOX_PATH)  # noqa: E731
    if w("node"):
        have.add("js")
    if w("javac") and w("java"):
        have.add("java")
    if w("g++") and os.path.exists("/usr/include/boost/any.hpp"):
        have.add("cpp")
    if w("go") and os.path.isdir(os.path.join(toolchain.go_path(), "src/github.com/stretchr/testify")):
        have.add("go")
    if os.path.exists(toolchain.rustc_exe()) and os.path.exists(toolchain.cargo_exe()):
        have.add("rust")
    return have


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval_sandbox selftest")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    res = run_checks(args.only, args.backend, available_languages())
    bad = {k: v for k, v in res.items() if v}
    if args.json:
        print(json.dumps({"uid": os.geteuid(), "results": res, "seconds": round(time.monotonic() - t0, 1)}))
    else:
        for k, v in res.items():
            print(f"{'ok  ' if not v else 'FAIL'} {k}")
            for e in v:
                print(f"      {e}")
        print(f"{len(res) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
