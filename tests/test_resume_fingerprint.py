"""`resume` refuses to continue a run under a changed recipe or profile (naming the fields),
warns about changed code (refuses with --strict), and --force goes on and is recorded. Also the
manifest's fingerprint itself. Fake Slurm commands on PATH; the real cluster in test_slurm_waiting."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher import fingerprint
from launcher.cli import main
from launcher.rundir import atomic_write_json, read_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launcher_fakes import eval_recipe  # noqa: E402
from test_launcher_status import mark_all_done, submit  # noqa: E402


@pytest.fixture
def half_done(fake, tmp_path):
    run_dir = submit(tmp_path, eval_recipe(tmp_path))
    mark_all_done(run_dir, except_=(("generate", 1),))
    return run_dir


def _sbatch_count(fake) -> int:
    return len(fake.argv("sbatch"))


def test_manifest_records_the_fingerprint(half_done):
    record = read_json(half_done.manifest_file)["fingerprint"]
    assert record["recipe"]["name"] == "evalrun" and record["profile"]["name"] == "test-cluster"
    assert record["recipe_sha256"] == fingerprint.digest(record["recipe"])
    assert record["profile_ref"] == "test-cluster" and record["overrides"] == []
    code = record["code"]
    assert len(code["git_sha"]) == 40 and isinstance(code["dirty"], bool) and code["version"]


def test_code_identity_counts_edits_and_new_source_files(tmp_path, monkeypatch):
    """A tree is dirty with an edited tracked file or a new, untracked .py of a package (a job may
    import it); files outside the packages, and ignored ones, leave it clean."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "train.py").write_text("STEPS = 1\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setattr(fingerprint, "CODE_ROOT", tmp_path)
    clean = fingerprint.code_identity()
    assert clean["dirty"] is False and clean["diff_sha256"] is None and len(clean["git_sha"]) == 40
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "jobs" / "cache.pyc").write_bytes(b"\0")
    assert fingerprint.code_identity()["dirty"] is False
    (tmp_path / "jobs" / "helper.py").write_text("X = 1\n")
    new_file = fingerprint.code_identity()
    assert new_file["dirty"] is True and new_file["diff_sha256"]
    (tmp_path / "jobs" / "helper.py").write_text("X = 2\n")
    assert fingerprint.code_identity()["diff_sha256"] != new_file["diff_sha256"]
    (tmp_path / "jobs" / "helper.py").unlink()
    (tmp_path / "jobs" / "train.py").write_text("STEPS = 2\n")
    assert fingerprint.code_identity()["dirty"] is True


def test_resume_after_editing_the_recipe_is_refused_naming_the_fields(fake, half_done, tmp_path, capsys):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(recipe.read_text().replace("cpus_per_task: 1, time: 10}}\n  collect",
                                                 "cpus_per_task: 2, time: 10}}\n  collect")
                      .replace("builtin:tiny-llama\", model_name: tiny", "builtin:tiny-llama\", model_name: tiny2"))
    before = _sbatch_count(fake)
    capsys.readouterr()
    assert main(["resume", str(half_done.root)]) == 1
    err = capsys.readouterr().err
    assert "resume refused: the recipe or profile changed" in err
    assert "stages.evaluate.resources.cpus_per_task: 1 → 2" in err and "model.model_name: 'tiny' → 'tiny2'" in err
    assert "--force" in err
    assert _sbatch_count(fake) == before and half_done.is_done("evaluate", 0)  # nothing touched

    assert main(["resume", str(half_done.root), "--force"]) == 0
    assert _sbatch_count(fake) > before
    forced = read_json(half_done.manifest_file)["forced_resumes"]
    assert len(forced) == 1 and any("model.model_name" in c for c in forced[0]["config"])
    assert "resuming despite a changed" in capsys.readouterr().err


def test_an_edited_profile_copy_in_the_run_directory_is_refused(fake, half_done, capsys):
    half_done.profile_file.write_text(half_done.profile_file.read_text().replace("array_throttle: 4", "array_throttle: 9"))
    assert main(["resume", str(half_done.root)]) == 1
    assert "profile.yaml in the run directory: array_throttle: 4 → 9" in capsys.readouterr().err


def test_changed_code_warns_and_strict_refuses(fake, half_done, monkeypatch, capsys):
    then = read_json(half_done.manifest_file)["fingerprint"]["code"]
    monkeypatch.setattr(fingerprint, "code_identity", lambda: {**then, "git_sha": "f" * 40, "dirty": True,
                                                               "diff_sha256": "0" * 64})
    before = _sbatch_count(fake)
    assert main(["resume", str(half_done.root), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "resume refused: the code changed" in err and f"→ {'f' * 12}" in err
    assert _sbatch_count(fake) == before
    assert main(["resume", str(half_done.root)]) == 0
    assert "warning: code changed since submission" in capsys.readouterr().err
    assert "forced_resumes" not in read_json(half_done.manifest_file)


def test_unchanged_run_resumes_without_a_word(fake, half_done, capsys):
    capsys.readouterr()
    assert main(["resume", str(half_done.root)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_changed_fields_lists_added_and_removed():
    assert fingerprint.changed_fields({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "d": 3}}) == [
        "a.c: 2 → '(absent)'", "a.d: '(absent)' → 3"]


def test_a_field_added_to_the_schema_since_submission_is_no_change(fake, half_done, capsys):
    manifest = read_json(half_done.manifest_file)
    del manifest["fingerprint"]["profile"]["sbatch_retry"]  # as submitted before the field existed
    del manifest["fingerprint"]["recipe"]["stages"]["generate"]["max_new_tokens"]
    atomic_write_json(half_done.manifest_file, manifest)
    capsys.readouterr()
    assert main(["resume", str(half_done.root)]) == 0, capsys.readouterr().err
