"""The whole sandbox self-test again, as an unprivileged user (uid 65534 via setpriv).

Run as root (as CI does), so both root (test_sandbox_exec.py) and unprivileged callers are
covered: as root the sandbox drops to uid 65534 itself; as an ordinary user bubblewrap uses
unprivileged user namespaces. Uses /usr/bin/python3 (the venv may live under /root, which
uid 65534 cannot read); eval_sandbox needs only the standard library.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from eval_sandbox import toolchain
from eval_sandbox.backends import bubblewrap_works

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("MFTLAUNCH_REQUIRE_SANDBOX") == "1" or os.environ.get("CI") == "true"


def test_selftest_as_unprivileged_user():
    if os.geteuid() != 0:
        pytest.skip("not root: the rest of the sandbox tests already ran unprivileged")
    ok, why = bubblewrap_works()
    if not ok or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        (pytest.fail if REQUIRE else pytest.skip)(why or "setpriv or /usr/bin/python3 missing")
    # uid 65534 must be able to read the checkout
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/usr/bin/test", "-r", str(REPO / "eval_sandbox" / "api.py")])
    if probe.returncode != 0:
        (pytest.fail if REQUIRE else pytest.skip)(f"uid 65534 cannot read {REPO}")
    home = Path(tempfile.gettempdir()) / "mftlaunch-sandbox-test-home-65534"
    home.mkdir(exist_ok=True)
    os.chown(home, 65534, 65534)
    os.chmod(home, 0o700)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "LANG": "C.UTF-8",
        # reuse the rlibs prepared by install.sh (read-only is enough)
        "MFTLAUNCH_SANDBOX_TOOLCHAIN": str(toolchain.toolchain_dir()),
    }
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "/usr/bin/python3", "-m", "eval_sandbox", "selftest", "--backend", "bubblewrap", "--json"],
        cwd=str(home), env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.stdout.strip(), r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["uid"] == 65534
    bad = {k: v for k, v in report["results"].items() if v}
    assert not bad, json.dumps(bad, indent=1)
    assert len(report["results"]) >= 15
    assert r.returncode == 0
