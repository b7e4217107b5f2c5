"""Source text of the small helpers the runners add to a program (kept as strings so the
package needs no data files). All written for this project.

Result channel (see docs/EVALUATION.md, "Verdicts"): the runner sends a per-run random
marker on the program's stdin. A harness piece that runs *before* the program's own code
reads it and points stdin at /dev/null; it prints the marker on stdout only after the
test harness finished with every test passing. The runner scores ``passed`` only if the
marker was seen (and the exit status is 0). Early ``exit(0)`` therefore scores ``failed``.
"""

# ----------------------------------------------------------------------------- python
# Run with `python3 -I -B -c PY_DRIVER`. exec() with an empty globals dict, as the reference
# harness does (so `if __name__ == "__main__":` blocks do not run). Exit codes tell the runner
# what happened without parsing stderr: 2 syntax error, 3 assertion failed, 4 SystemExit
# (exit() before the tests finished), 1 any other exception.
PY_DRIVER = r'''
def _mft_main():
    import os, sys
    b = b""
    while not b.endswith(b"\n") and len(b) < 256:
        c = os.read(0, 1)
        if not c:
            break
        b += c
    marker = b.strip()
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    write, exit_, err = os.write, os._exit, sys.stderr
    import traceback
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
    try:
        exec(code, {})
    except AssertionError:
        report(3)
    except SystemExit:
        report(4)
    except BaseException:
        report(1)
    flush()
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
# Compiled next to Main.java; run as `java MftSandboxHarness`. Calls Main.main, prints the
# marker only if it returned. System.exit(0) inside the program skips the marker.
JAVA_HARNESS = r'''
public final class MftSandboxHarness {
    public static void main(String[] args) throws Exception {
        java.io.FileInputStream in = new java.io.FileInputStream(java.io.FileDescriptor.in);
        StringBuilder sb = new StringBuilder();
        int c;
        while (sb.length() < 256 && (c = in.read()) != -1 && c != '\n') sb.append((char) c);
        System.setIn(new java.io.ByteArrayInputStream(new byte[0]));
        final byte[] marker = ("\n" + sb.toString().trim() + "\n").getBytes("US-ASCII");
        final java.io.FileOutputStream out = new java.io.FileOutputStream(java.io.FileDescriptor.out);
        final java.io.PrintStream err = System.err;
        try {
            Main.main(args);
        } catch (Throwable t) {
            t.printStackTrace(err);
            err.flush();
            Runtime.getRuntime().halt(1);
        }
        System.out.flush();
        System.err.flush();
        if (sb.length() > 0) { out.write(marker); out.flush(); }
        Runtime.getRuntime().halt(0);
    }
}
'''

# ----------------------------------------------------------------------------- go
# A second test file of the same package. If the program defines TestMain itself, the build
# fails (and the program is scored compile_error). init() functions of the program run
# before TestMain; see the documented limits.
GO_HARNESS = r'''package main

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 256 {
		n, err := os.Stdin.Read(one)
		if n == 0 || err != nil || one[0] == '\n' {
			break
		}
		b = append(b, one[0])
	}
	if f, err := os.Open(os.DevNull); err == nil {
		os.Stdin = f
	}
	out := os.NewFile(1, "mft-stdout")
	code := m.Run()
	if code == 0 && len(b) > 0 {
		out.Write([]byte("\n" + string(b) + "\n"))
	}
	os.Exit(code)
}
'''

# ----------------------------------------------------------------------------- C (for C++ and Rust)
# Linked with `-Wl,--wrap=main`: the C runtime calls __wrap_main, which calls the program's
# real main and prints the marker only if it returned 0. The marker is read in a constructor
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
    long fd = mft_sys(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDONLY);
    if (fd >= 0) {
        mft_sys(SYS_dup3, fd, 0, 0);
        if (fd != 0) mft_sys(SYS_close, fd, 0, 0);
    }
}

int __real_main(int argc, char **argv, char **envp);

int __wrap_main(int argc, char **argv, char **envp) {
    int rc = __real_main(argc, argv, envp);
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

# ----------------------------------------------------------------------------- rust crates
RUST_DEPS_CARGO_TOML = '''[package]
name = "mft-sandbox-deps"
version = "0.1.0"
edition = "2021"

[lib]
path = "src/lib.rs"

[dependencies]
rand = { path = "rand-shim" }
regex = { version = "1", default-features = false, features = ["std", "unicode", "perf-cache", "perf-dfa", "perf-inline"] }
md5 = "0.7"
'''

RAND_SHIM_CARGO_TOML = '''[package]
name = "rand"
version = "0.4.99"
edition = "2021"
description = "mftlaunch's stand-in for the rand 0.4 API used by HumanEvalPack (not the real rand crate)"

[lib]
path = "src/lib.rs"
'''

# The rand 0.4 surface HumanEvalPack uses (Rust/32, /38, /50, /53 tests): thread_rng(),
# Rng::gen_range(low, high) with two arguments, Rng::gen::<T>(), rand::random::<T>(); plus a
# few neighbours models tend to write (shuffle, choose, gen_bool, gen_weighted_bool).
# Not cryptographic; a splitmix64 generator seeded from the clock and a per-thread counter.
RAND_SHIM_LIB = r'''//! Stand-in for the part of the `rand` 0.4 API used by HumanEvalPack. Written for mftlaunch.
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Rand: Sized {
    fn rand<R: Rng + ?Sized>(rng: &mut R) -> Self;
}

pub trait SampleRange: PartialOrd + Copy {
    fn sample_between<R: Rng + ?Sized>(rng: &mut R, low: Self, high: Self) -> Self;
}

pub trait Rng {
    fn next_u64(&mut self) -> u64;
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
    fn gen<T: Rand>(&mut self) -> T {
        T::rand(self)
    }
    fn gen_range<T: SampleRange>(&mut self, low: T, high: T) -> T {
        assert!(low < high, "Rng.gen_range called with low >= high");
        T::sample_between(self, low, high)
    }
    fn gen_bool(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
    fn gen_weighted_bool(&mut self, n: u32) -> bool {
        n <= 1 || self.gen_range(0u32, n) == 0
    }
    fn shuffle<T>(&mut self, values: &mut [T]) {
        let mut i = values.len();
        while i >= 2 {
            i -= 1;
            let j = self.gen_range(0usize, i + 1);
            values.swap(i, j);
        }
    }
    fn choose<'a, T>(&mut self, values: &'a [T]) -> Option<&'a T> {
        if values.is_empty() {
            None
        } else {
            let i = self.gen_range(0usize, values.len());
            Some(&values[i])
        }
    }
}

macro_rules! int_impls {
    ($($t:ty),*) => {$(
        impl Rand for $t {
            fn rand<R: Rng + ?Sized>(rng: &mut R) -> Self { rng.next_u64() as $t }
        }
        impl SampleRange for $t {
            fn sample_between<R: Rng + ?Sized>(rng: &mut R, low: Self, high: Self) -> Self {
                let span = (high as i128 - low as i128) as u128;
                let v = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128) % span;
                (low as i128 + v as i128) as $t
            }
        }
    )*};
}
int_impls!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl Rand for f64 {
    fn rand<R: Rng + ?Sized>(rng: &mut R) -> Self { rng.next_f64() }
}
impl Rand for f32 {
    fn rand<R: Rng + ?Sized>(rng: &mut R) -> Self { rng.next_f32() }
}
impl SampleRange for f64 {
    fn sample_between<R: Rng + ?Sized>(rng: &mut R, low: Self, high: Self) -> Self {
        low + (high - low) * rng.next_f64()
    }
}
impl SampleRange for f32 {
    fn sample_between<R: Rng + ?Sized>(rng: &mut R, low: Self, high: Self) -> Self {
        low + (high - low) * rng.next_f32()
    }
}
impl Rand for bool {
    fn rand<R: Rng + ?Sized>(rng: &mut R) -> Self { rng.next_u32() & 1 == 1 }
}
impl Rand for char {
    fn rand<R: Rng + ?Sized>(rng: &mut R) -> Self {
        loop {
            if let Some(c) = char::from_u32(rng.next_u32() % 0x11_0000) {
                return c;
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct ThreadRng {
    state: u64,
}

pub type StdRng = ThreadRng;

thread_local! {
    static COUNTER: Cell<u64> = Cell::new(0);
}

impl ThreadRng {
    pub fn new() -> Result<ThreadRng, std::io::Error> {
        Ok(thread_rng())
    }
}

impl Rng for ThreadRng {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub fn thread_rng() -> ThreadRng {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = COUNTER.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    });
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    ThreadRng { state: now ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ addr.rotate_left(32) }
}

pub fn random<T: Rand>() -> T {
    thread_rng().gen()
}
'''
