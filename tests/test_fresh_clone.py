"""A fresh clone with nothing beside it: `pip install .` ships the benchmark data, and the
launcher's data paths (validate --check-paths, prompts, load_benchmark) work with no ../shared
and no $MFTLAUNCH_DATA_DIR.

The clone is of the committed HEAD (what a user gets); it is installed offline with
`pip install --no-deps --no-build-isolation --no-index --target` (the real setuptools build,
about 2 s) and imported from there, never from this checkout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.code_benchmarks.data import pinned_sha256

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    root = tmp_path_factory.mktemp("empty")
    clone, site, work = root / "mftlaunch", root / "site", root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MFTLAUNCH_DATA_DIR", "PYTHONPATH")}
    done = _run(["git", "clone", "-q", str(REPO), str(clone)], root, env)
    assert done.returncode == 0, done.stderr
    assert not (root / "shared").exists()
    done = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                 "--no-index", "--target", str(site), str(clone)], root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    env["PYTHONPATH"] = str(site)
    return {"clone": clone, "site": site, "work": work, "env": env}


def test_pip_install_ships_the_pinned_data(installed):
    data = installed["site"] / "jobs" / "code_benchmarks" / "data"
    for name in ("SOURCES.md", "SHA256SUMS", "LICENSE-humanevalpack", "LICENSE-mbpp"):
        assert (data / name).is_file(), name
    code = (
        "import json, sys\n"
        "from jobs.code_benchmarks import data\n"
        "rows = {b: data.load_benchmark(b, None) for b in ('mbpp', 'humanevalsynthesize-rust', 'humaneval')}\n"
        "print(json.dumps({'module': data.__file__, 'files': {b: str(d.path) for b, d in rows.items()},\n"
        "                  'pinned': all(d.matches_pin for d in rows.values()), 'mbpp': len(rows['mbpp'])}))\n"
    )
    done = _run([sys.executable, "-c", code], installed["work"], installed["env"])
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["module"].startswith(str(installed["site"]))
    assert all(path.startswith(str(data)) for path in out["files"].values())
    assert out["pinned"] and out["mbpp"] == 500
    assert set(pinned_sha256()) == {line.split()[1] for line in (data / "SHA256SUMS").read_text().splitlines()}


def test_validate_and_prompts_from_a_fresh_clone(installed):
    work, clone = installed["work"], installed["clone"]
    env = {**installed["env"], "MFTLAUNCH_PROFILES": str(clone / "cluster_profiles")}
    cli = [sys.executable, "-c", "import sys; from launcher.cli import main; sys.exit(main(sys.argv[1:]))"]
    done = _run(cli + ["validate", str(clone / "recipes" / "tiny_demo.yaml"), "--check-paths"], work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _run(cli + ["prompts", "--task", "humanevalfixtests-go", "--limit", "2", "--out", "p.json"], work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    prompts = json.loads((work / "p.json").read_text())
    assert len(prompts) == 2 and "Fix bugs in" in prompts[0]
