"""A corpus of missing, empty, foreign and damaged run directories, built from a real submission
(fake Slurm commands) and then broken one way each: every command that takes a run directory
answers with one `mftlaunch: error:` line and exit code 1, never a traceback."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest

from launcher.cli import main
from launcher.rundir import RunDir, read_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launcher_fakes import FakeSlurm, eval_recipe  # noqa: E402
from test_launcher_status import submit  # noqa: E402

COMMANDS = ["status", "logs", "cancel", "resume", "collect", "compare", "report"]


def _edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = read_json(path)
    change(data)
    path.write_text(json.dumps(data))


# name → (how to break a good run directory, words the one line must contain)
BREAKS: dict[str, tuple[Callable[[RunDir], Path], str]] = {
    "missing": (lambda run: run.root.parent / "no-such-run", "no such run directory"),
    "empty": (lambda run: _mkdir(run.root.parent / "empty"), "empty directory"),
    "foreign": (lambda run: _foreign(run.root.parent / "foreign"), "not a run directory"),
    "a file": (lambda run: _file(run.root.parent / "a-file.txt"), "not a directory"),
    "plan truncated": (lambda run: _truncate(run, run.plan_file), "invalid JSON"),
    "plan binary": (lambda run: _write(run, run.plan_file, b"\xff\xfe\x00garbage"), "damaged"),
    "plan a list": (lambda run: _write(run, run.plan_file, b"[1, 2]"), "a JSON object was expected"),
    "plan without jobs": (lambda run: _edit(run, run.plan_file, lambda d: d.pop("jobs")), "no list of jobs"),
    "plan job without items": (lambda run: _edit(run, run.plan_file, lambda d: d["jobs"][0].pop("items")),
                               "'items'"),
    "plan lost": (lambda run: _unlink(run, run.plan_file), "plan.json: missing"),
    "manifest truncated": (lambda run: _truncate(run, run.manifest_file), "invalid JSON"),
    "manifest foreign": (lambda run: _write(run, run.manifest_file, b'{"hello": "world"}'), "'scheduler'"),
    "manifest bad attempts": (lambda run: _edit(run, run.manifest_file, lambda d: d.update(attempts=[{"jobs": {"generate": [{}]}}])),
                              "no job id"),
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _foreign(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("not a run\n")
    (path / "data.json").write_text("{}")
    return path


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


def _copy(run: RunDir) -> RunDir:
    copy = run.root.parent / f"copy-{len(list(run.root.parent.iterdir()))}"
    shutil.copytree(run.root, copy)
    return RunDir(copy)


def _truncate(run: RunDir, file: Path) -> Path:
    run = _copy(run)
    target = run.root / file.name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    return run.root


def _write(run: RunDir, file: Path, payload: bytes) -> Path:
    run = _copy(run)
    (run.root / file.name).write_bytes(payload)
    return run.root


def _edit(run: RunDir, file: Path, change: Callable[[dict], object]) -> Path:
    run = _copy(run)
    _edit_json(run.root / file.name, change)
    return run.root


def _unlink(run: RunDir, file: Path) -> Path:
    run = _copy(run)
    (run.root / file.name).unlink()
    return run.root


@pytest.fixture
def good_run(tmp_path, monkeypatch) -> RunDir:
    monkeypatch.delenv("MFTLAUNCH_PROFILES", raising=False)
    monkeypatch.chdir(tmp_path)
    FakeSlurm(tmp_path / "slurm").install(monkeypatch)
    return submit(tmp_path, eval_recipe(tmp_path))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mftlaunch: error: "), err
    return err[0]


def _applies(command: str, name: str) -> bool:
    """collect also takes plain metrics folders (see test_collect_on_a_folder_without_a_run)."""
    return not (command == "collect" and name in ("empty", "foreign", "a file", "missing"))


def _argv(command: str, path: Path) -> list[str]:
    return [command, str(path)] + (["--out", str(path.parent / "report.html")] if command == "report" else [])


@pytest.mark.parametrize("command,name", [(c, n) for n in BREAKS for c in COMMANDS if _applies(c, n)])
def test_every_command_answers_a_bad_run_directory_in_one_line(good_run, capsys, command, name):
    break_it, words = BREAKS[name]
    path = break_it(good_run)
    capsys.readouterr()
    assert main(_argv(command, path)) == 1
    line = _one_error_line(capsys)
    assert words in line, line
    assert not (path.parent / "report.html").exists()


@pytest.mark.parametrize("name", ["empty", "foreign", "missing"])
def test_collect_on_a_folder_without_a_run(good_run, capsys, name):
    path = BREAKS[name][0](good_run)
    capsys.readouterr()
    assert main(["collect", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mftlaunch: "), err


def test_resume_of_a_run_with_a_damaged_profile(good_run, capsys):
    good_run.profile_file.write_text("name: [unclosed\n")
    assert main(["resume", str(good_run.root)]) == 1
    assert "profile.yaml: missing or damaged" in _one_error_line(capsys)


def test_planned_but_never_submitted(good_run, tmp_path, capsys):
    copy = _copy(good_run)
    copy.manifest_file.unlink()
    for command in ("status", "cancel", "resume"):
        assert main([command, str(copy.root)]) == 1
        assert "planned but never submitted" in _one_error_line(capsys)


@pytest.mark.parametrize("damage", ['{"state": "RUNN', "[1]", '"RUNNING"'])
def test_damaged_state_file_is_a_warning_in_status_and_a_reason_in_collect(good_run, capsys, damage):
    state = good_run.element_state("generate", 0)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(damage)
    capsys.readouterr()
    assert main(["status", str(good_run.root)]) == 0
    assert "0.json is damaged; ignored" in capsys.readouterr().out
    assert main(["collect", str(good_run.root)]) == 1  # nothing was evaluated: every task is missing
    captured = capsys.readouterr()
    assert "generate[0] (" in captured.out and "unknown (0.json is damaged)" in captured.out
    assert "Traceback" not in captured.err
