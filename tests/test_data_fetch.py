"""`mftlaunch data fetch` against a local HTTP server: pinned sums checked, corrupt files refused,
atomic writes, existing good files kept."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from jobs import data_fetch
from jobs.benchmarks.data import load_benchmark
from jobs.data_fetch import FILES, FetchError, fetch


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def mirror(tmp_path, data_dir, monkeypatch):
    """A copy of the pinned data served on 127.0.0.1; yields (root on disk, base URL, request log)."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to the local server directly
    root = tmp_path / "mirror"
    for item in FILES:
        (root / item.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / item.relpath, root / item.relpath)
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_pins_match_sources_md(data_dir):
    text = (data_dir / "SOURCES.md").read_text(encoding="utf-8")
    for item in FILES:
        assert item.sha256 in text and item.relpath in text
        assert hashlib.sha256((data_dir / item.relpath).read_bytes()).hexdigest() == item.sha256


def test_public_urls_are_pinned_to_a_commit():
    for item in FILES:
        assert item.url.startswith("https://raw.githubusercontent.com/")
        if item.relpath.startswith("humanevalpack/"):
            assert data_fetch.OCTOPACK_COMMIT in item.url and len(data_fetch.OCTOPACK_COMMIT) == 40


def test_fetch_from_mirror(tmp_path, mirror):
    _root, base, requests = mirror
    dest = tmp_path / "data"
    paths = fetch(dest, base_url=base, log=lambda m: None)
    assert sorted(p.relative_to(dest).as_posix() for p in paths) == sorted(f.relpath for f in FILES)
    assert len(requests) == len(FILES)
    assert len(load_benchmark("mbpp", dest)) == 500
    assert len(load_benchmark("humanevalfixtests-rust", dest)) == 164
    assert not list(dest.rglob("*.tmp"))
    # a second fetch finds everything in place and downloads nothing
    fetch(dest, base_url=base + "/", log=lambda m: None)
    assert len(requests) == len(FILES)


def test_corrupted_file_is_rejected_and_not_written(tmp_path, mirror):
    root, base, _requests = mirror
    bad = root / "humanevalpack" / "go.jsonl"
    payload = bytearray(bad.read_bytes())
    payload[100] ^= 0x01  # one flipped bit
    bad.write_bytes(bytes(payload))
    dest = tmp_path / "data"
    with pytest.raises(FetchError) as info:
        fetch(dest, base_url=base, log=lambda m: None)
    message = str(info.value)
    assert "humanevalpack/go.jsonl" in message and "not the pinned" in message and "1 of 7" in message
    assert not (dest / "humanevalpack" / "go.jsonl").exists()
    assert (dest / "humanevalpack" / "python.jsonl").is_file()  # the good ones are kept
    assert not list(dest.rglob("*.tmp"))


def test_local_file_with_wrong_sum_is_replaced(tmp_path, mirror):
    _root, base, requests = mirror
    dest = tmp_path / "data"
    target = dest / "mbpp" / "mbpp.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text("old\n")
    fetch(dest, base_url=base, log=lambda m: None)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == next(f.sha256 for f in FILES if f.relpath == "mbpp/mbpp.jsonl")
    assert "/mbpp/mbpp.jsonl" in requests


def test_missing_file_and_unreachable_server(tmp_path, mirror):
    root, base, _requests = mirror
    (root / "mbpp" / "mbpp.jsonl").unlink()
    with pytest.raises(FetchError, match="mbpp/mbpp.jsonl"):
        fetch(tmp_path / "d1", base_url=base, log=lambda m: None)
    with pytest.raises(FetchError, match="download failed"):
        fetch(tmp_path / "d2", base_url="http://127.0.0.1:9", files=FILES[:1], timeout=5, log=lambda m: None)
