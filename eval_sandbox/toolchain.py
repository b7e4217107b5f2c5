"""Where the toolchains, their prebuilt pieces and the caches live.

Everything the runners execute is resolved here, with absolute paths, against the
*system* toolchain (Debian packages), never against the caller's PATH: the sandbox
starts with an empty environment, and e.g. a rustup ``rustc`` in ``/root/.cargo/bin``
cannot link Debian's ``librust-*`` crates (different compiler, and /root is not
readable by the sandbox user). Overrides (environment variables):

=============================  =====================================================
MFTLAUNCH_SANDBOX_TOOLCHAIN    prebuilt pieces (js-md5, Rust rlibs); default
                               /opt/mftlaunch/sandbox-toolchain, else the cache dir
MFTLAUNCH_SANDBOX_CACHE        caches (Go build cache, harness objects); default
                               /var/cache/mftlaunch-sandbox as root, else
                               ~/.cache/mftlaunch-sandbox
MFTLAUNCH_SANDBOX_SCRATCH      parent of the per-program scratch dirs (default $TMPDIR)
MFTLAUNCH_SANDBOX_UID / _GID   unprivileged ids used when the caller is root (65534)
MFTLAUNCH_SANDBOX_PYTHON       python for the sandbox (default /usr/bin/python3)
MFTLAUNCH_RUSTC / _CARGO       default /usr/bin/rustc, /usr/bin/cargo
MFTLAUNCH_CARGO_REGISTRY       Debian crate sources (default /usr/share/cargo/registry)
=============================  =====================================================

``python -m eval_sandbox prepare [--dir DIR]`` builds the Rust rlibs and the harness
object, warms the Go build cache and prints what it found.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import harnesses, rust_crates

#: PATH given to every sandboxed command.
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/lib/go/bin"
SYSTEM_OPT_TOOLCHAIN = Path("/opt/mftlaunch/sandbox-toolchain")


def is_root() -> bool:
    return os.geteuid() == 0


def sandbox_ids() -> tuple[int, int] | None:
    """(uid, gid) the sandbox runs as when the caller is root; None otherwise.

    Root must not run untrusted code as uid 0: RLIMIT_NPROC is never enforced for the
    global root user, so a fork bomb would not be bounded.
    """
    if not is_root():
        return None
    uid = int(os.environ.get("MFTLAUNCH_SANDBOX_UID", "65534"))
    gid = int(os.environ.get("MFTLAUNCH_SANDBOX_GID", str(uid)))
    return uid, gid


def cache_dir() -> Path:
    env = os.environ.get("MFTLAUNCH_SANDBOX_CACHE")
    if env:
        p = Path(env)
    elif is_root():
        p = Path("/var/cache/mftlaunch-sandbox")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        p = Path(base) / "mftlaunch-sandbox"
    p.mkdir(parents=True, exist_ok=True)
    return p


def toolchain_dir() -> Path:
    env = os.environ.get("MFTLAUNCH_SANDBOX_TOOLCHAIN")
    if env:
        return Path(env)
    if SYSTEM_OPT_TOOLCHAIN.is_dir():
        return SYSTEM_OPT_TOOLCHAIN
    return cache_dir() / "toolchain"


def scratch_parent() -> str:
    return os.environ.get("MFTLAUNCH_SANDBOX_SCRATCH") or tempfile.gettempdir()


def _which(name: str) -> str | None:
    return shutil.which(name, path=SANDBOX_PATH)


def python_exe() -> str:
    return os.environ.get("MFTLAUNCH_SANDBOX_PYTHON") or "/usr/bin/python3"


def node_exe() -> str | None:
    return _which("node")


def node_path() -> str | None:
    """NODE_PATH holding ``js-md5`` (needed by JS/162), if installed."""
    for base in (toolchain_dir(), cache_dir() / "toolchain"):
        p = base / "node" / "node_modules"
        if (p / "js-md5").is_dir():
            return str(p)
    return None


def rustc_exe() -> str:
    return os.environ.get("MFTLAUNCH_RUSTC") or "/usr/bin/rustc"


def cargo_exe() -> str:
    return os.environ.get("MFTLAUNCH_CARGO") or "/usr/bin/cargo"


def cargo_registry() -> str:
    return os.environ.get("MFTLAUNCH_CARGO_REGISTRY") or "/usr/share/cargo/registry"


def go_exe() -> str | None:
    return _which("go")


def go_path() -> str:
    return os.environ.get("MFTLAUNCH_GOPATH") or "/usr/share/gocode"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def go_cache_dir() -> Path:
    """Shared Go build cache, writable by the sandbox user (bound rw for compiles only)."""
    ids = sandbox_ids()
    suffix = f"-{ids[0]}" if ids else ""
    p = cache_dir() / f"go-build{suffix}"
    if not p.exists():
        p.mkdir(parents=True, exist_ok=True)
        if ids:
            os.chown(p, *ids)
    return p


# ----------------------------------------------------------------------------- harness object

def harness_object() -> Path:
    """The C harness (``__wrap_main`` + assert hook) compiled once, world-readable."""
    src = harnesses.HARNESS_C
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    out = cache_dir() / f"mft_harness-{digest}.o"
    if out.exists():
        return out
    with _locked(cache_dir() / ".harness.lock"):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(dir=cache_dir()) as td:
            c = Path(td) / "mft_harness.c"
            c.write_text(src)
            o = Path(td) / "mft_harness.o"
            subprocess.run(["cc", "-O2", "-fPIC", "-c", str(c), "-o", str(o)], check=True,
                           env={"PATH": SANDBOX_PATH}, capture_output=True)
            os.chmod(o, 0o644)
            os.replace(o, out)
    return out


# ----------------------------------------------------------------------------- rust crates

RUST_CRATES = ("rand", "regex", "md5")


def _rustc_version(rustc: str) -> str:
    r = subprocess.run([rustc, "-vV"], capture_output=True, text=True, env={"PATH": SANDBOX_PATH})
    if r.returncode != 0:
        raise RuntimeError(f"{rustc} -vV failed: {r.stderr.strip()}")
    return r.stdout


def _rust_deps_dirs() -> list[Path]:
    dirs = [toolchain_dir() / "rust", cache_dir() / "toolchain" / "rust"]
    out = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def rust_deps(build: bool = True, into: Path | None = None) -> dict:
    """Prebuilt rlibs for the crates every HumanEvalPack Rust program ``use``s.

    Returns ``{"deps_dir": str, "externs": {crate: rlib path}}``. Built (offline, with
    /usr/bin/cargo against Debian's ``librust-*-dev`` sources plus our ``rand`` 0.4 shim)
    the first time, keyed by the exact ``rustc -vV`` so a toolchain upgrade rebuilds.
    """
    rustc = rustc_exe()
    key = hashlib.sha256((_rustc_version(rustc) + rust_crates.RAND_SHIM_LIB
                          + rust_crates.RUST_DEPS_CARGO_TOML).encode()).hexdigest()[:12]
    candidates = [into] if into is not None else _rust_deps_dirs()
    for base in candidates:
        manifest = base / key / "deps.json"
        if manifest.exists():
            return json.loads(manifest.read_text())
    if not build:
        raise FileNotFoundError("Rust crates not prepared; run `python -m eval_sandbox prepare`")
    for base in candidates:
        try:
            base.mkdir(parents=True, exist_ok=True)
            if os.access(base, os.W_OK):
                break
        except OSError:
            continue
    else:  # pragma: no cover
        raise PermissionError("no writable directory for the Rust crates")
    with _locked(base / ".lock"):
        manifest = base / key / "deps.json"
        if manifest.exists():
            return json.loads(manifest.read_text())
        return _build_rust_deps(base / key, rustc)


def _build_rust_deps(dest: Path, rustc: str) -> dict:
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".build-"))
    try:
        proj = tmp / "proj"
        (proj / "src").mkdir(parents=True)
        (proj / "rand-shim" / "src").mkdir(parents=True)
        (proj / "Cargo.toml").write_text(rust_crates.RUST_DEPS_CARGO_TOML)
        (proj / "src" / "lib.rs").write_text("// deps only\n")
        (proj / "rand-shim" / "Cargo.toml").write_text(rust_crates.RAND_SHIM_CARGO_TOML)
        (proj / "rand-shim" / "src" / "lib.rs").write_text(rust_crates.RAND_SHIM_LIB)
        home = tmp / "cargo-home"
        home.mkdir()
        (home / "config.toml").write_text(
            "[source.crates-io]\nreplace-with = \"debian\"\n"
            f"[source.debian]\ndirectory = \"{cargo_registry()}\"\n"
            "[net]\noffline = true\n")
        env = {"PATH": SANDBOX_PATH, "HOME": str(tmp), "CARGO_HOME": str(home), "RUSTC": rustc,
               "CARGO_TARGET_DIR": str(tmp / "target")}
        r = subprocess.run([cargo_exe(), "build", "--release", "--offline", "--lib"], cwd=proj,
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"building the Rust crates failed:\n{r.stderr[-4000:]}")
        built = tmp / "target" / "release" / "deps"
        deps = dest / "deps"
        deps.mkdir(parents=True, exist_ok=True)
        for f in built.iterdir():
            if f.suffix in (".rlib", ".rmeta"):
                shutil.copy2(f, deps / f.name)
                os.chmod(deps / f.name, 0o644)
        externs = {}
        for crate in RUST_CRATES:
            hits = sorted(deps.glob(f"lib{crate}-*.rlib"))
            if len(hits) != 1:
                raise RuntimeError(f"expected one lib{crate}-*.rlib, found {hits}")
            externs[crate] = str(hits[0])
        info = {"deps_dir": str(deps), "externs": externs, "rustc": rustc}
        (dest / "deps.json").write_text(json.dumps(info, indent=1))
        for p in (dest, deps):
            os.chmod(p, 0o755)
        os.chmod(dest / "deps.json", 0o644)
        return info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- report / prepare

def describe() -> dict:
    """Versions and paths, for metrics.config and for `--prepare` output."""
    def ver(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                               env={"PATH": SANDBOX_PATH, "HOME": "/tmp"})
            return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else ""
        except (OSError, subprocess.TimeoutExpired):
            return None
    return {
        "python": ver([python_exe(), "--version"]),
        "node": ver(["node", "--version"]),
        "javac": ver(["javac", "-version"]),
        "g++": ver(["g++", "--version"]),
        "go": ver(["go", "version"]),
        "rustc": ver([rustc_exe(), "--version"]),
        "bwrap": ver(["bwrap", "--version"]),
        "node_path": node_path(),
        "toolchain_dir": str(toolchain_dir()),
        "cache_dir": str(cache_dir()),
    }


def prepare(verbose: bool = True) -> dict:
    info = describe()
    obj = harness_object()
    dest = toolchain_dir() / obj.name
    if os.access(toolchain_dir(), os.W_OK) and not dest.exists():
        shutil.copy2(obj, dest)
        os.chmod(dest, 0o644)
    info["harness_object"] = str(dest if dest.exists() else obj)
    try:
        info["rust_deps"] = rust_deps(build=True, into=toolchain_dir() / "rust")
    except Exception as e:  # noqa: BLE001 - reported, not fatal: other languages still work
        info["rust_deps_error"] = str(e)
    go_cache_dir()
    if os.access(toolchain_dir(), os.W_OK):
        info["manifest"] = str(write_manifest(info))
    if verbose:
        print(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval_sandbox.toolchain")
    ap.add_argument("--prepare", action="store_true", help="build the Rust crates and harness object")
    ap.add_argument("--dir", help="toolchain dir to build into (sets MFTLAUNCH_SANDBOX_TOOLCHAIN)")
    args = ap.parse_args(argv)
    if args.dir:
        os.environ["MFTLAUNCH_SANDBOX_TOOLCHAIN"] = args.dir
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.prepare:
        info = prepare()
        if "rust_deps_error" in info:
            print(f"prepare: the Rust crates could not be built: {info['rust_deps_error']}", file=sys.stderr)
            return 1
    else:
        print(json.dumps(describe(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ----------------------------------------------------------------------------- paths seen by the sandbox

MANIFEST_NAME = "toolchain.json"


class Paths:
    """Toolchain paths as the *sandboxed* command sees them. For bubblewrap and none that is
    the host; the apptainer backend uses :class:`ManifestPaths`, read from the image."""

    def python(self) -> str:
        return python_exe()

    def node(self) -> str:
        return node_exe() or "node"

    def node_path(self) -> str | None:
        return node_path()

    def gxx(self) -> str:
        return _which("g++") or "g++"

    def go(self) -> str:
        return go_exe() or "go"

    def gopath(self) -> str:
        return go_path()

    def go_cache(self) -> str:
        return str(go_cache_dir())

    def rustc(self) -> str:
        return rustc_exe()

    def rust_deps(self) -> dict:
        return rust_deps()

    def harness_object(self) -> str:
        return str(harness_object())


class ManifestPaths(Paths):
    """Paths from a ``toolchain.json`` written by ``prepare`` inside an image."""

    def __init__(self, manifest: dict):
        self.m = manifest

    def python(self):
        return self.m.get("python") or "/usr/bin/python3"

    def node(self):
        return self.m.get("node") or "/usr/bin/node"

    def node_path(self):
        return self.m.get("node_path")

    def gxx(self):
        return self.m.get("gxx") or "/usr/bin/g++"

    def go(self):
        return self.m.get("go") or "/usr/bin/go"

    def gopath(self):
        return self.m.get("gopath") or "/usr/share/gocode"

    def rustc(self):
        return self.m.get("rustc") or "/usr/bin/rustc"

    def rust_deps(self):
        if not self.m.get("rust_deps"):
            raise FileNotFoundError("the image's toolchain.json has no Rust crates")
        return self.m["rust_deps"]

    def harness_object(self):
        if not self.m.get("harness_object"):
            raise FileNotFoundError("the image's toolchain.json has no harness object")
        return self.m["harness_object"]


def write_manifest(info: dict) -> Path:
    """Record the prepared paths (``prepare`` calls this) for ManifestPaths."""
    p = toolchain_dir() / MANIFEST_NAME
    m = {
        "python": python_exe(), "node": node_exe(), "node_path": node_path(), "gxx": _which("g++"),
        "go": go_exe(), "gopath": go_path(), "rustc": rustc_exe(),
        "rust_deps": info.get("rust_deps"), "harness_object": info.get("harness_object"),
    }
    p.write_text(json.dumps(m, indent=1))
    os.chmod(p, 0o644)
    return p
