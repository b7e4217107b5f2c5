"""Loading benchmark problems: order, limit, sha256, the MBPP test split, clear errors."""
from __future__ import annotations

import json
import shutil

import pytest

from launcher import contract
from launcher.contract import shard_key
from jobs.code_benchmarks.data import (
    PACKAGED_DATA_DIR,
    DataError,
    data_provenance,
    default_data_dir,
    expected_size,
    language_of,
    load_benchmark,
    pinned_sha256,
    relative_data_file,
    resolve_data_dir,
    shard_range,
    sha256_file,
)
from launcher.data_fetch import FILES

PINNED = {f.relpath: f.sha256 for f in FILES}


@pytest.mark.parametrize("benchmark", contract.ALL_BENCHMARKS)
def test_full_sizes_and_pinned_sha(data_dir, benchmark):
    data = load_benchmark(benchmark, data_dir)
    assert len(data) == (500 if benchmark == "mbpp" else 164)
    assert data.sha256 == PINNED[relative_data_file(benchmark)]


def test_dataset_order_and_limit(data_dir):
    rows = load_benchmark("humanevalsynthesize-go", data_dir, limit=4).problems
    assert [r["task_id"] for r in rows] == ["Go/0", "Go/1", "Go/2", "Go/3"]
    mbpp = load_benchmark("mbpp", data_dir).problems
    assert mbpp[0]["task_id"] == 11 and mbpp[-1]["task_id"] == 510
    assert load_benchmark("mbpp", data_dir, limit=1000).problems == mbpp


def test_humaneval_is_the_python_rows_of_humanevalpack(data_dir):
    he = load_benchmark("humaneval", data_dir, limit=3).problems
    assert [r["task_id"] for r in he] == ["Python/0", "Python/1", "Python/2"]
    assert he[0]["prompt"].startswith("from typing import List\n\n\ndef has_close_elements")
    assert language_of("humaneval") == "python" and language_of("humanevalfixtests-rust") == "rust"


def test_missing_file_names_it_and_the_fetch_command(tmp_path):
    with pytest.raises(DataError) as info:
        load_benchmark("humanevalsynthesize-cpp", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "humanevalpack" / "cpp.jsonl") in message
    assert "mftlaunch data fetch" in message


def test_data_dir_order_explicit_then_environment_then_packaged(tmp_path, monkeypatch):
    monkeypatch.setenv("MFTLAUNCH_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "mine") == tmp_path / "mine"
    assert resolve_data_dir(None) == default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("MFTLAUNCH_DATA_DIR")
    assert resolve_data_dir(None) == default_data_dir() == PACKAGED_DATA_DIR
    data = load_benchmark("mbpp", None, limit=2)
    assert data.path == PACKAGED_DATA_DIR / "mbpp" / "mbpp.jsonl" and data.matches_pin


def test_packaged_copy_matches_its_pins_the_fetcher_and_the_sources_file():
    pins = pinned_sha256()
    assert sorted(pins) == sorted(item.relpath for item in FILES)
    sources = (PACKAGED_DATA_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for item in FILES:
        assert pins[item.relpath] == item.sha256
        assert sha256_file(PACKAGED_DATA_DIR / item.relpath) == item.sha256
        assert f"| {item.relpath} |" in sources and item.sha256 in sources and item.licence in sources
    assert (PACKAGED_DATA_DIR / "LICENSE-humanevalpack").is_file() and (PACKAGED_DATA_DIR / "LICENSE-mbpp").is_file()


def test_other_data_is_recorded_beside_the_pin(tmp_path, data_dir):
    (tmp_path / "mbpp").mkdir()
    text = (data_dir / "mbpp" / "mbpp.jsonl").read_text(encoding="utf-8")
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text(text.replace("Write a", "Write  a", 1), encoding="utf-8")
    record = data_provenance(load_benchmark("mbpp", tmp_path))
    assert record["data_pinned_sha256"] == pinned_sha256()["mbpp/mbpp.jsonl"]
    assert record["data_sha256"] != record["data_pinned_sha256"] and record["data_matches_pin"] is False


def test_truncated_or_damaged_file(tmp_path, data_dir):
    (tmp_path / "mbpp").mkdir()
    lines = (data_dir / "mbpp" / "mbpp.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text("\n".join(lines[:100]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected 500 problems"):
        load_benchmark("mbpp", tmp_path)
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mbpp.jsonl:2: not valid JSON"):
        load_benchmark("mbpp", tmp_path)


def test_sha_changes_with_the_bytes(tmp_path, data_dir):
    shutil.copytree(data_dir / "humanevalpack", tmp_path / "humanevalpack")
    path = tmp_path / "humanevalpack" / "js.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["prompt"] += " "
    path.chmod(0o644)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert load_benchmark("humanevalsynthesize-js", tmp_path).sha256 != PINNED["humanevalpack/js.jsonl"]


@pytest.mark.parametrize("n,k", [(164, 1), (164, 3), (500, 7), (5, 8), (0, 2)])
def test_shard_ranges_partition_in_order(n, k):
    ranges = [shard_range(n, s, k) for s in range(k)]
    assert [i for r in ranges for i in r] == list(range(n))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_shard_key_and_sizes():
    assert shard_key("mbpp", 0, 1) == "mbpp"
    assert shard_key("mbpp", 1, 3) == "mbpp-s1of3"
    assert expected_size("mbpp", None) == 500 and expected_size("mbpp", 20) == 20
    assert expected_size("humanevalsynthesize-go", 1000) == 164
    with pytest.raises(ValueError):
        shard_range(10, 2, 2)
