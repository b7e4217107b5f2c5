"""The one-way architecture, enforced (docs/ARCHITECTURE.md).

- `jobs/` imports from `launcher/` only the contract: launcher.contract, launcher.recipe,
  launcher.rundir.
- `launcher/` never imports `jobs/`, except the CLI layer (cli.py, cli_eval.py, cli_results.py), and that only
  inside functions, so that `mftlaunch --help` and every launcher module stay free of the
  compute side.
- `eval_sandbox/` imports neither `jobs/` nor `launcher/`: untrusted code runs through a package
  that knows nothing about runs.

Every import statement counts, at module level or inside a function: a lazy import is still a
dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTRACT = {"launcher.contract", "launcher.recipe", "launcher.rundir"}
CLI_LAYER = {"launcher/cli.py", "launcher/cli_eval.py", "launcher/cli_results.py"}


def imported_modules(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) of every import; `from launcher import rundir` counts as
    launcher.rundir."""
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in ("launcher", "jobs"):
                found += [(f"{node.module}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
            else:
                found.append((node.module, node.lineno, id(node) in top_level))
    return found


def _package(module: str) -> str:
    return module.split(".")[0]


def violations(relpath: str, source: str) -> list[str]:
    """Every import in `source` (the file at `relpath` inside the repository) that breaks a rule."""
    package = relpath.split("/")[0]
    problems = []
    for module, line, top in imported_modules(ast.parse(source)):
        where = f"{relpath}:{line}: imports {module}"
        target = _package(module)
        if package == "jobs" and target == "launcher":
            if not any(module == c or module.startswith(c + ".") for c in CONTRACT):
                problems.append(f"{where}: jobs/ may import only {', '.join(sorted(CONTRACT))} from launcher/")
        elif package == "launcher" and target == "jobs":
            if relpath not in CLI_LAYER:
                problems.append(f"{where}: only the CLI layer ({', '.join(sorted(CLI_LAYER))}) may import jobs/")
            elif top:
                problems.append(f"{where}: the CLI layer imports jobs/ only inside the command that needs it")
        elif package == "eval_sandbox" and target in ("jobs", "launcher"):
            problems.append(f"{where}: eval_sandbox/ imports neither jobs/ nor launcher/")
    return problems


def package_files() -> list[Path]:
    return sorted(p for pkg in ("launcher", "jobs", "eval_sandbox") for p in (REPO / pkg).rglob("*.py"))


def test_the_packages_obey_the_import_rules():
    problems = []
    for path in package_files():
        problems += violations(path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_every_package_is_checked():
    checked = {p.relative_to(REPO).parts[0] for p in package_files()}
    assert checked == {"launcher", "jobs", "eval_sandbox"}
    assert len(package_files()) > 60


@pytest.mark.parametrize("relpath, source", [
    ("jobs/train.py", "from launcher.submit import load\n"),
    ("jobs/train.py", "def f():\n    from launcher import plan\n"),
    ("jobs/train.py", "import launcher.status\n"),
    ("launcher/plan.py", "def f():\n    from jobs.training import model\n"),
    ("launcher/render.py", "from jobs import distributed\n"),
    ("launcher/cli.py", "from jobs.collect import render\n"),
    ("eval_sandbox/api.py", "from jobs.code_benchmarks import assembly\n"),
    ("eval_sandbox/api.py", "def f():\n    import launcher.rundir\n"),
])
def test_a_forbidden_import_is_caught(relpath, source):
    """The rule check fails when someone adds a forbidden import (each rule, each form)."""
    assert violations(relpath, source), source


@pytest.mark.parametrize("relpath, source", [
    ("jobs/train.py", "from launcher.recipe import TrainStage\nfrom launcher import contract, rundir\n"),
    ("jobs/run.py", "from launcher.contract import REQUEUE_EXIT_CODE\n"),
    ("launcher/cli_eval.py", "def cmd():\n    from jobs.collect import render\n"),
    ("launcher/plan.py", "from launcher.profile import Profile\n"),
    ("eval_sandbox/api.py", "import subprocess\n"),
])
def test_allowed_imports_pass(relpath, source):
    assert violations(relpath, source) == []
