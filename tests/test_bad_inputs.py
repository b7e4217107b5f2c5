"""The bad-input corpus (tests/bad_inputs/cases.yaml): every case is refused by `validate` and by
`submit` with exit code 1 and a message naming the file, the line and the field, and `submit`
sends nothing: a fake `sbatch` first on PATH records every call, and must record none."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from launcher.cli import main
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fakes live beside the tests
from launcher_fakes import FakeSlurm  # noqa: E402

HERE = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text())["cases"]


def _profile_arg(case: dict) -> str:
    profile = case.get("profile", "slurm-generic")
    return str(HERE / profile) if profile.endswith(".yaml") else profile


def _args(command: str, case: dict, *extra: str) -> list[str]:
    args = [command, str(HERE / case["recipe"]), "--profile", _profile_arg(case)]
    for item in case.get("set", []):
        args += ["--set", item]
    return args + list(extra)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Fake Slurm first on PATH, benchmark data that exists, no admin profile dir, a scratch cwd
    (a submission that wrongly went through would leave its run directory there)."""
    fake = FakeSlurm(tmp_path / "slurm").install(monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(data))
    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.delenv("MFTLAUNCH_PROFILE", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return fake, work


def _check_refused(capsys, args: list[str], case: dict) -> str:
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 1, f"{' '.join(args)} exited {code}; stdout: {out}\nstderr: {err}"
    for want in case["expect"]:
        assert want in err, f"{case['id']}: {want!r} not in:\n{err}"
    if case.get("at"):
        assert case["at"] in err, f"{case['id']}: location {case['at']!r} not in:\n{err}"
    assert "nothing was submitted" in err
    assert "Traceback" not in err
    return err


def test_corpus_is_big_enough():
    assert len(CASES) >= 25
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES:
        assert case["expect"], case["id"]
        if case["recipe"] != "recipes/no_such_recipe.yaml":
            assert (HERE / case["recipe"]).is_file(), case["recipe"]
        if case.get("profile", "").endswith(".yaml"):
            assert (HERE / case["profile"]).is_file(), case["profile"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_validate_refuses(case, env, capsys):
    if case.get("check_paths"):
        # the recipe itself is fine: only the paths are missing here
        assert main(_args("validate", case)) == 0, capsys.readouterr().err
        capsys.readouterr()
        _check_refused(capsys, _args("validate", case, "--check-paths"), case)
    else:
        _check_refused(capsys, _args("validate", case), case)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_submit_refuses_and_submits_nothing(case, env, capsys):
    fake, work = env
    _check_refused(capsys, _args("submit", case), case)
    assert fake.calls("sbatch") == [], "sbatch was called for a refused recipe"
    assert fake.calls("scancel") == []
    assert list(work.iterdir()) == [], "a run directory was created for a refused recipe"


def test_cli_binary_exit_code(env, tmp_path):
    """The installed `mftlaunch` entry point turns the same errors into exit code 1 (not a traceback)."""
    import subprocess
    import sys

    fake, _ = env
    case = next(c for c in CASES if c["id"] == "unknown-key-typo")
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *_args("submit", case)],
                          capture_output=True, text=True, env=fake.env(), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "did you mean 'learning_rate'?" in proc.stderr
    assert "unknown_key_typo.yaml:6" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert fake.calls("sbatch") == []


@pytest.mark.slurm
def test_real_cluster_queue_stays_empty(slurm, tmp_path, monkeypatch, capsys):
    """The whole corpus submitted to the real test cluster: every case refused, queue untouched."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(data))
    def newest_job_id() -> int:
        ids = slurm.run(["sacct", "-n", "-X", "-a", "-S", "now-1days", "-o", "JobID%30"]).stdout.split()
        ids += slurm.run(["squeue", "-h", "-o", "%i"]).stdout.split()
        return max([int(i.split("_")[0]) for i in ids if i.split("_")[0].isdigit()] or [0])

    before = newest_job_id()
    for case in CASES:
        assert main(_args("submit", case)) == 1, case["id"]
        capsys.readouterr()
    assert newest_job_id() == before, "a refused recipe reached the cluster"
