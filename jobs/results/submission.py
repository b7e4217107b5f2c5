"""The competition submission: `generations_<model>.zip`, whose single top folder
`generations_<model>/` holds exactly the 13 competition generation files, shards merged. The zip
is checked against the competition's rules before it is moved in place (atomically), so a file
that exists is a valid submission.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

from launcher import contract
from jobs.code_benchmarks.data import full_size
from jobs.results.collection import Collection, ResultsError
from launcher.rundir import generations_name, submission_folder

def _load_generations_list(path: Path) -> list:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ResultsError(f"{path}: not a JSON list")
    return data


def missing_generations(collection: Collection) -> list[str]:
    """Competition tasks without a complete set of generation files (no zip can be built)."""
    return [t for t in contract.COMPETITION_SUITE if not collection.generation_files.get(t)]


def submission_entries(collection: Collection) -> dict[str, bytes]:
    """{archive name: JSON bytes} of the 13 competition generation files (shards merged)."""
    if collection.limited:
        raise ResultsError("a limited run gets no submission zip (it lacks problems)")
    top = submission_folder(collection.model)
    entries: dict[str, bytes] = {}
    absent = missing_generations(collection)
    if absent:
        raise ResultsError(f"no (complete) generation files for: {', '.join(absent)}")
    for task in contract.COMPETITION_SUITE:
        merged: list = []
        for path in collection.generation_files[task]:
            merged.extend(_load_generations_list(path))
        name = f"{top}/{generations_name(task, collection.model)}"
        entries[name] = (json.dumps(merged, ensure_ascii=False) + "\n").encode("utf-8")
    return entries


def validate_submission(zip_path: Path, model: str) -> None:
    """The competition's rules: one top folder `generations_<model>/`, exactly the 13 files with
    the exact names, each a list (full problem count) of non-empty lists of strings."""
    top = submission_folder(model) + "/"
    want = {top + generations_name(t, model): t for t in contract.COMPETITION_SUITE}
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if n != top]
        if sorted(names) != sorted(want):
            extra = sorted(set(names) - set(want))
            lacking = sorted(set(want) - set(names))
            raise ResultsError(f"{zip_path}: wrong entries (unexpected {extra}, missing {lacking})")
        for name, task in want.items():
            try:
                data = json.loads(archive.read(name).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ResultsError(f"{zip_path}:{name}: not valid JSON ({exc})") from None
            if not isinstance(data, list) or len(data) != full_size(task):
                got = len(data) if isinstance(data, list) else type(data).__name__
                raise ResultsError(f"{zip_path}:{name}: {got} problems, {task} has {full_size(task)}")
            for index, samples in enumerate(data):
                if not (isinstance(samples, list) and samples and all(isinstance(s, str) for s in samples)):
                    raise ResultsError(f"{zip_path}:{name}: problem {index} is not a non-empty list of strings")


def write_submission_zip(collection: Collection, out_path: Path) -> Path:
    """Build the zip in a temporary file beside `out_path`, validate it, then move it in place."""
    entries = submission_entries(collection)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(submission_folder(collection.model) + "/", b"")
            for name, payload in entries.items():
                archive.writestr(name, payload)
        validate_submission(Path(tmp), collection.model)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path
