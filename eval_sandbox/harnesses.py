"""Source text of the harness pieces the runners add to a program, one per language (kept as
strings so the package needs no data files). All written for this project.

Result channel (see docs/EVALUATION.md, "Verdicts"): the runner sends a per-run random
marker on the program's stdin. A harness piece that runs *before* the program's own code
reads it and points stdin at /dev/null; it prints the marker on stdout only after the
test harness finished with every test passing. The runner scores ``passed`` only if the
marker was seen (and the exit status is 0). Early ``exit(0)`` therefore scores ``failed``.
"""

# ----------------------------------------------------------------------------- python
# Run with `python3 -I -B -c PY_DRIVER`. exec() with an empty globals dict, as the reference
# harness does (so `if __name__ == "__main__":` blocks do not run). stdin: the marker, then
# "<tick name> <expected ticks>" (eval_sandbox.completeness). Before running anything the driver
# checks that the appended tests (tests.py, when present) are the last statements of prog.py
# exactly as they parse alone, so a generation cannot swallow or decorate them. Exit codes tell
# the runner what happened without parsing stderr: 2 syntax error, 3 assertion failed,
# 4 SystemExit (exit() before the tests finished), 5 the tests parse differently inside the
# program, 6 the tick after the tests did not run as expected, 1 any other exception.
PY_DRIVER = r'''
def _mft_main():
    import os, sys
    def line():
        b = b""
        while not b.endswith(b"\n") and len(b) < 256:
            c = os.read(0, 1)
            if not c:
                break
            b += c
        return b.strip()
    marker = line()
    tick = line().decode("ascii", "replace").split()
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    write, exit_, err = os.write, os._exit, sys.stderr
    import traceback, ast, builtins
    fmt = traceback.format_exc
    def flush():
        for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                s.flush()
            except BaseException:
                pass
    def report(code):
        flush()
        try:
            write(2, fmt().encode("utf-8", "replace"))
        except BaseException:
            pass
        exit_(code)
    try:
        with open("prog.py", "rb") as f:
            src = f.read()
        code = compile(src, "prog.py", "exec")
    except BaseException:
        report(2)
    if os.path.exists("tests.py"):
        try:
            with open("tests.py", "rb") as f:
                want = [ast.dump(n) for n in ast.parse(f.read()).body]
            got = [ast.dump(n) for n in ast.parse(src).body]
        except BaseException:
            want = got = None
        if want is not None and got[-len(want) - 1:-1] != want:
            write(2, b"mft-sandbox: the appended tests parse differently inside the program\n")
            exit_(5)
    ticks = [0]
    if len(tick) == 2:
        def _tick():
            ticks[0] += 1
        setattr(builtins, tick[0], _tick)
    try:
        exec(code, {})
    except AssertionError:
        report(3)
    except SystemExit:
        report(4)
    except BaseException:
        report(1)
    flush()
    if len(tick) == 2 and ticks[0] != int(tick[1]):
        write(2, ("mft-sandbox: %d of %s appended tests ran\n" % (ticks[0], tick[1])).encode())
        exit_(6)
    if marker:
        write(1, b"\n" + marker + b"\n")
    exit_(0)
_mft_main()
'''

# ----------------------------------------------------------------------------- javascript
# Loaded with `node --require ./mft_prelude.js test.js`. Reads "<marker>\n<assert name>\n" from
# stdin. The runner rewrites every `console.assert` of the program to the random global name,
# so reassigning or shadowing console.assert cannot silence the tests; the random
# `<name>_done()` call appended to the program marks that the last line of the tests ran.
JS_PRELUDE = r'''
"use strict";
(() => {
  const fs = require("fs");
  const buf = Buffer.alloc(512);
  let got = 0;
  for (;;) {
    let n = 0;
    try { n = fs.readSync(0, buf, got, buf.length - got, null); } catch (e) { if (e.code === "EAGAIN") continue; break; }
    if (n <= 0) break;
    got += n;
    if (buf.slice(0, got).toString().split("\n").length > 2 || got >= buf.length) break;
  }
  const lines = buf.slice(0, got).toString().split("\n");
  const marker = lines[0] || "", name = lines[1] || "";
  try { fs.closeSync(0); fs.openSync("/dev/null", "r"); } catch (e) {}
  const realAssert = console.assert.bind(console);
  const writeSync = fs.writeSync;
  let failed = 0, done = false;
  const check = function (cond, ...rest) {
    if (!cond) { failed++; realAssert(cond, ...rest); }
  };
  const freeze = (k, v) => Object.defineProperty(globalThis, k, { value: v, writable: false, configurable: false, enumerable: false });
  if (name) {
    freeze(name, check);
    freeze(name + "_done", () => { done = true; });
  }
  process.on("exit", (code) => {
    if (marker && done && failed === 0 && code === 0) writeSync(1, "\n" + marker + "\n");
  });
})();
'''

# ----------------------------------------------------------------------------- java
# Compiled next to the program; run as `java MftSandboxHarness`. Calls `main` of the class the
# runner found (`{main_class}`, the test's class), prints the marker only if it returned and the
# tests' last statement ticked with the per-run token. System.exit(0) inside the program skips
# the marker. Formatted per run with str.format ({{ }} are literal braces).
JAVA_HARNESS = r'''
public final class MftSandboxHarness {{
    private static final String TOKEN = "{token}";
    private static int ticks = 0;
    public static synchronized void tick(String token) {{
        if (TOKEN.equals(token)) ticks++;
    }}
    private static synchronized int ticks() {{ return ticks; }}
    public static void main(String[] args) throws Exception {{
        java.io.FileInputStream in = new java.io.FileInputStream(java.io.FileDescriptor.in);
        StringBuilder sb = new StringBuilder();
        int c;
        while (sb.length() < 256 && (c = in.read()) != -1 && c != '\n') sb.append((char) c);
        System.setIn(new java.io.ByteArrayInputStream(new byte[0]));
        final byte[] marker = ("\n" + sb.toString().trim() + "\n").getBytes("US-ASCII");
        final java.io.FileOutputStream out = new java.io.FileOutputStream(java.io.FileDescriptor.out);
        final java.io.PrintStream err = System.err;
        try {{
            {main_class}.main(args);
        }} catch (Throwable t) {{
            t.printStackTrace(err);
            err.flush();
            Runtime.getRuntime().halt(1);
        }}
        System.out.flush();
        System.err.flush();
        int expected = {expected};
        if (expected >= 0 && ticks() != expected) {{
            err.println("mft-sandbox: " + ticks() + " of " + expected + " appended tests ran");
            err.flush();
            Runtime.getRuntime().halt(1);
        }}
        if (sb.length() > 0) {{ out.write(marker); out.flush(); }}
        Runtime.getRuntime().halt(0);
    }}
}}
'''

# ----------------------------------------------------------------------------- go
# A second test file of the same package. If the program defines TestMain itself, the build
# fails (and the program is scored compile_error). init() functions of the program run
# before TestMain; see the documented limits. Formatted per run with str.format: {tick} is the
# per-run name the instrumented tests call, {expected} how many calls a complete run makes
# (-1: not instrumented).
GO_HARNESS = r'''package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

var {tick}_count int64

func {tick}() {{ atomic.AddInt64(&{tick}_count, 1) }}

func TestMain(m *testing.M) {{
	var b []byte
	one := make([]byte, 1)
	for len(b) < 256 {{
		n, err := os.Stdin.Read(one)
		if n == 0 || err != nil || one[0] == '\n' {{
			break
		}}
		b = append(b, one[0])
	}}
	if f, err := os.Open(os.DevNull); err == nil {{
		os.Stdin = f
	}}
	out := os.NewFile(1, "mft-stdout")
	code := m.Run()
	expected := int64({expected})
	if got := atomic.LoadInt64(&{tick}_count); code == 0 && expected >= 0 && got != expected {{
		fmt.Fprintf(os.NewFile(2, "mft-stderr"), "mft-sandbox: %d of %d appended tests ran\n", got, expected)
		os.Exit(1)
	}}
	if code == 0 && len(b) > 0 {{
		out.Write([]byte("\n" + string(b) + "\n"))
	}}
	os.Exit(code)
}}
'''

# ----------------------------------------------------------------------------- C (for C++ and Rust)
# Linked with `-Wl,--wrap=main`: the C runtime calls __wrap_main, which calls the program's
# real main and prints the marker only if it returned 0 and the instrumented tests called
# mft_sandbox_tick with the run's token as often as stdin's second line ("<expected> <token>")
# says (eval_sandbox.completeness). The marker is read in a constructor
# of priority 101 (before C++ static initialisers of default priority) with raw system calls,
# so a program that interposes read()/write()/_exit() cannot intercept it.
# mft_sandbox_assert_fail is what the runner's rewritten C++ `assert` calls.
HARNESS_C = r'''
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

static long mft_sys(long n, long a, long b, long c) {
#if defined(__x86_64__)
    long ret;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
#else
    return syscall(n, a, b, c);
#endif
}

static char mft_marker[258];
static long mft_marker_len = 0;
static char mft_tick_token[80];
static long mft_ticks_expected = -1;
static long mft_ticks = 0;

static long mft_read_line(char *buf, long cap) {
    long n = 0;
    while (n < cap - 1) {
        char ch;
        long r = mft_sys(SYS_read, 0, (long)&ch, 1);
        if (r <= 0 || ch == '\n') break;
        buf[n++] = ch;
    }
    buf[n] = 0;
    return n;
}

static int mft_streq(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

void mft_sandbox_tick(const char *token) {
    if (token && mft_tick_token[0] && mft_streq(token, mft_tick_token))
        __atomic_add_fetch(&mft_ticks, 1, __ATOMIC_SEQ_CST);
}

__attribute__((constructor(101))) static void mft_read_marker(void) {
    long n = 1;
    mft_marker[0] = '\n';
    while (n < 256) {
        char ch;
        long r = mft_sys(SYS_read, 0, (long)&ch, 1);
        if (r <= 0 || ch == '\n') break;
        mft_marker[n++] = ch;
    }
    mft_marker[n++] = '\n';
    mft_marker_len = n > 2 ? n : 0;
    char line[100];
    long len = mft_read_line(line, sizeof line);
    if (len > 0) {
        long expected = 0, i = 0;
        while (i < len && line[i] >= '0' && line[i] <= '9') expected = expected * 10 + (line[i++] - '0');
        if (i > 0 && i < len && line[i] == ' ') {
            long t = 0;
            for (i++; i < len && t < (long)sizeof mft_tick_token - 1; i++) mft_tick_token[t++] = line[i];
            mft_tick_token[t] = 0;
            mft_ticks_expected = expected;
        }
    }
    long fd = mft_sys(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDONLY);
    if (fd >= 0) {
        mft_sys(SYS_dup3, fd, 0, 0);
        if (fd != 0) mft_sys(SYS_close, fd, 0, 0);
    }
}

int __real_main(int argc, char **argv, char **envp);

int __wrap_main(int argc, char **argv, char **envp) {
    int rc = __real_main(argc, argv, envp);
    long ticks = __atomic_load_n(&mft_ticks, __ATOMIC_SEQ_CST);
    if (rc == 0 && mft_ticks_expected >= 0 && ticks != mft_ticks_expected) {
        static const char a[] = "mft-sandbox: appended tests did not all run\n";
        fflush(NULL);
        mft_sys(SYS_write, 2, (long)a, sizeof(a) - 1);
        return 1;
    }
    if (rc == 0 && mft_marker_len > 0) {
        fflush(NULL);
        mft_sys(SYS_write, 1, (long)mft_marker, mft_marker_len);
    }
    return rc;
}

static long mft_strlen(const char *s) { long n = 0; while (s && s[n]) n++; return n; }

void mft_sandbox_assert_fail(const char *expr, const char *file, int line) {
    static const char a[] = "Assertion failed: ";
    char num[24];
    int i = 23;
    unsigned v = line > 0 ? (unsigned)line : 0;
    num[i] = '\n';
    do { num[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 1);
    num[--i] = ':';
    fflush(NULL);
    mft_sys(SYS_write, 2, (long)a, sizeof(a) - 1);
    mft_sys(SYS_write, 2, (long)expr, mft_strlen(expr));
    mft_sys(SYS_write, 2, (long)" at ", 4);
    mft_sys(SYS_write, 2, (long)file, mft_strlen(file));
    mft_sys(SYS_write, 2, (long)(num + i), 24 - i);
    mft_sys(SYS_exit_group, 134, 0, 0);
    for (;;) {}
}
'''
