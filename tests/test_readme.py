"""README.md's first command runs the whole demo pipeline (train → merge → generate → evaluate →
collect) on this machine with the local profile. The test runs the command as README.md spells
it (after `./install.sh`, which tests/run.sh has already run)."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_demo_command() -> list[str]:
    text = (REPO / "README.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("./install.sh && "))
    return shlex.split(line.split("&&", 1)[1].strip())


def test_readme_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    head = text[: text.index("## ")]
    assert re.search(r"^\./install\.sh && \.venv/bin/mftlaunch submit recipes/\S+\.yaml --profile local --wait$", head, re.M)
    assert re.search(r"^tests/run\.sh$", head, re.M)
    assert "tests/run.sh" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_readme_demo_runs_end_to_end(tmp_path):
    cmd = readme_demo_command()
    cmd[0] = str(REPO / cmd[0])
    cmd = [str(REPO / a) if a.startswith("recipes/") else a for a in cmd]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "run completed" in proc.stdout
    assert "mean (13 tasks)" in proc.stdout
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "merged" / "config.json").is_file()
    assert len(list((run_dir / "sentinels" / "generate").glob("*.done"))) == 14
    report = (run_dir / "collect" / "report.html").read_text()
    assert "humanevalfixtests-rust" in report and "<h2>Training</h2>" in report and "<h2>Resources</h2>" in report
