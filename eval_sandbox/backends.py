"""Isolation backends: turn (command, scratch dir, limits) into the argv that runs it isolated.

``bubblewrap`` (default where it works)
    ``bwrap --unshare-all --die-with-parent --new-session``: new user, PID, network, IPC,
    UTS, cgroup and mount namespaces; a fresh ``--proc /proc`` and minimal ``--dev /dev``;
    the host root bound read-only; home directories and ``/run``, ``/var/tmp`` masked; the
    per-program scratch dir bound read-write at ``/tmp`` (the working directory) and a
    second per-program dir at ``/dev/shm``. Both are private to the program; they live on
    the scratch disk rather than a tmpfs because bubblewrap 0.8 cannot cap a tmpfs' size
    and the scratch watchdog must be able to see every byte written. Empty environment
    plus the variables the toolchain needs. ``prlimit(1)`` sets the rlimits right before
    the command is exec'd, inside the namespaces (so RLIMIT_NPROC counts only the
    processes of this sandbox).
    When the caller is root, bwrap itself is started as an unprivileged uid (65534 by
    default): the kernel never enforces RLIMIT_NPROC for uid 0.

``apptainer``
    ``apptainer exec --containall --no-home --net --network none`` with the toolchain
    image (``MFTLAUNCH_SANDBOX_IMAGE``), the scratch dir bound at ``/tmp``, rlimits by
    ``prlimit`` inside. Not runnable on this machine; its argv is golden-tested.

``none``
    Explicit opt-in only. No isolation at all: rlimits, a process-group kill and a
    scratch working directory. Logs a loud warning.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field

from . import toolchain
from .limits import Limits

log = logging.getLogger(__name__)

#: Where the scratch dir appears inside the sandbox (also the working directory).
SANDBOX_CWD = "/tmp"
MASKED_PATHS = ("/home", "/root", "/run", "/var/tmp", "/mnt", "/media", "/srv")


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class Mounts:
    """Extra paths a runner needs inside the sandbox (host path == sandbox path)."""

    ro: list[str] = field(default_factory=list)
    rw: list[str] = field(default_factory=list)


class Backend:
    name = "?"
    #: True if the command sees the scratch dir at SANDBOX_CWD (else at its host path).
    remaps_scratch = True

    def wrap(self, argv: list[str], *, scratch: str, shm: str | None, env: dict[str, str],
             limits: Limits, mounts: Mounts) -> list[str]:
        raise NotImplementedError

    def host_env(self) -> dict[str, str]:
        """Environment of the wrapper process itself (not of the sandboxed command)."""
        return {"PATH": toolchain.SANDBOX_PATH, "LANG": "C.UTF-8"}

    def run_as(self) -> tuple[int, int] | None:
        return toolchain.sandbox_ids()

    def cwd_in_sandbox(self, scratch: str) -> str:
        return SANDBOX_CWD if self.remaps_scratch else scratch

    def paths(self) -> toolchain.Paths:
        """Toolchain paths as the sandboxed command sees them (the host's, by default)."""
        return toolchain.Paths()


def _prlimit() -> str:
    p = shutil.which("prlimit", path=toolchain.SANDBOX_PATH)
    if not p:
        raise SandboxUnavailable("prlimit(1) (util-linux) not found")
    return p


class BubblewrapBackend(Backend):
    name = "bubblewrap"

    def __init__(self, bwrap: str | None = None):
        self.bwrap = bwrap or shutil.which("bwrap", path=toolchain.SANDBOX_PATH) or "bwrap"

    def wrap(self, argv, *, scratch, shm, env, limits, mounts):
        a = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
             "--ro-bind", "/", "/",
             "--proc", "/proc",
             "--dev", "/dev"]
        masked = [m for m in MASKED_PATHS if os.path.isdir(m) and not os.path.islink(m)]
        for m in masked:
            a += ["--tmpfs", m]
        a += ["--bind", scratch, SANDBOX_CWD]
        if shm:
            a += ["--bind", shm, "/dev/shm"]
        for p in mounts.ro:
            a += ["--ro-bind", p, p]
        for p in mounts.rw:
            a += ["--bind", p, p]
        # after the binds, so their mount points could still be created. /dev is bwrap's own
        # tmpfs: read-only, or it would be an uncapped RAM disk (device nodes stay writable).
        for m in masked + ["/dev"]:
            a += ["--remount-ro", m]
        a += ["--chdir", SANDBOX_CWD, "--hostname", "sandbox", "--clearenv"]
        for k, v in sorted(env.items()):
            a += ["--setenv", k, v]
        a += ["--", _prlimit(), *limits.prlimit_args(), "--", *argv]
        return a


@functools.lru_cache(maxsize=None)
def bubblewrap_works() -> tuple[bool, str]:
    """Probe once: can bwrap build the namespaces here (as the sandbox uid)?"""
    bwrap = shutil.which("bwrap", path=toolchain.SANDBOX_PATH)
    if not bwrap:
        return False, "bwrap not installed (apt-get install bubblewrap)"
    b = BubblewrapBackend(bwrap)
    import tempfile
    d = tempfile.mkdtemp(prefix="mftsbx-probe-", dir=toolchain.scratch_parent())
    try:
        ids = b.run_as()
        if ids:
            os.chown(d, *ids)
        argv = b.wrap(["/bin/true"], scratch=d, shm=None, env={"PATH": toolchain.SANDBOX_PATH},
                      limits=Limits(), mounts=Mounts())
        kw = {}
        if ids:
            kw = dict(user=ids[0], group=ids[1], extra_groups=[])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=d,
                           env=b.host_env(), **kw)
        if r.returncode != 0:
            return False, f"bwrap probe failed (rc={r.returncode}): {r.stderr.strip()[:300]}"
        return True, ""
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap probe failed: {e}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


class ApptainerBackend(Backend):
    name = "apptainer"

    def __init__(self, image: str | None = None, apptainer: str | None = None):
        self.image = image or os.environ.get("MFTLAUNCH_SANDBOX_IMAGE") or "mftlaunch-sandbox.sif"
        self.apptainer = apptainer or shutil.which("apptainer") or shutil.which("singularity") or "apptainer"

    def run_as(self):
        # Apptainer refuses nothing as root, but untrusted code must still not be uid 0.
        return toolchain.sandbox_ids()

    def paths(self) -> toolchain.Paths:
        """Read ``toolchain.json`` from the image once (written by ``prepare`` at build time)."""
        return _image_paths(self.apptainer, self.image)

    def wrap(self, argv, *, scratch, shm, env, limits, mounts):
        a = [self.apptainer, "exec", "--containall", "--no-home", "--net", "--network", "none",
             "--bind", f"{scratch}:{SANDBOX_CWD}:rw"]
        if shm:
            a += ["--bind", f"{shm}:/dev/shm:rw"]
        for p in mounts.ro:
            a += ["--bind", f"{p}:{p}:ro"]
        for p in mounts.rw:
            a += ["--bind", f"{p}:{p}:rw"]
        a += ["--pwd", SANDBOX_CWD]
        for k, v in sorted(env.items()):
            a += ["--env", f"{k}={v}"]
        a += [self.image, "/usr/bin/prlimit", *limits.prlimit_args(), "--", *argv]
        return a


@functools.lru_cache(maxsize=None)
def _image_paths(apptainer: str, image: str) -> toolchain.Paths:
    path = f"{toolchain.SYSTEM_OPT_TOOLCHAIN}/{toolchain.MANIFEST_NAME}"
    r = subprocess.run([apptainer, "exec", "--containall", "--no-home", image, "cat", path],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SandboxUnavailable(f"cannot read {path} from {image}: {r.stderr.strip()[:300]}")
    import json
    return toolchain.ManifestPaths(json.loads(r.stdout))


class NoneBackend(Backend):
    """No isolation. Explicit opt-in for debugging on a throwaway machine."""

    name = "none"
    remaps_scratch = False
    _warned = False

    def __init__(self):
        if not NoneBackend._warned:
            NoneBackend._warned = True
            msg = ("eval_sandbox backend 'none': UNTRUSTED CODE RUNS WITHOUT ISOLATION "
                   "(network, files, other processes all reachable). Use only on a throwaway machine.")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            log.warning(msg)

    def run_as(self):
        return toolchain.sandbox_ids()

    def wrap(self, argv, *, scratch, shm, env, limits, mounts):
        envargs = [f"{k}={v}" for k, v in sorted(env.items())]
        return ["/usr/bin/env", "-i", *envargs, _prlimit(), *limits.prlimit_args(), "--", *argv]


BACKENDS = ("auto", "bubblewrap", "apptainer", "none")


def get_backend(name: str = "auto", image: str | None = None) -> Backend:
    """Resolve a backend name. ``auto`` = bubblewrap if it works here, else apptainer if an
    image is configured; never silently ``none``."""
    name = name or "auto"
    if name in ("bwrap", "bubblewrap"):
        ok, why = bubblewrap_works()
        if not ok:
            raise SandboxUnavailable(why)
        return BubblewrapBackend()
    if name == "apptainer":
        return ApptainerBackend(image=image)
    if name == "none":
        return NoneBackend()
    if name == "auto":
        ok, why = bubblewrap_works()
        if ok:
            return BubblewrapBackend()
        if (image or os.environ.get("MFTLAUNCH_SANDBOX_IMAGE")) and (shutil.which("apptainer") or shutil.which("singularity")):
            return ApptainerBackend(image=image)
        raise SandboxUnavailable(f"no sandbox backend works here ({why}); install bubblewrap, "
                                 "set MFTLAUNCH_SANDBOX_IMAGE for apptainer, or pass backend='none' "
                                 "explicitly on a throwaway machine")
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")
