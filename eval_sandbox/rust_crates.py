"""Source text of the Cargo project that :mod:`eval_sandbox.toolchain` builds once into the
rlibs Rust programs link against: the ``regex`` and ``md5`` crates HumanEvalPack's Rust tests
use, and our ``rand`` 0.4 shim (kept as strings so the package needs no data files; the
toolchain keys its cache on the shim and the top manifest, so editing those rebuilds the crates).
"""

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
