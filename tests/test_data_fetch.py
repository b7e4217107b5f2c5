"""`mftlaunch data fetch` against a local HTTP server: pinned sums checked, corrupt files refused,
atomic writes, existing good files kept."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from launcher import data_fetch
from jobs.code_benchmarks.data import load_benchmark
from launcher.data_fetch import FILES, FetchError, fetch


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


# --- `data fetch --model`: a fake Hugging Face Hub on 127.0.0.1 -----------------------------------

SECRET = "hf_fakeSecretToken0123456789abcdef"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tiny_safetensors() -> bytes:
    """A valid safetensors file (one 2x2 float32 tensor), written without torch."""
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<4f", 0.5, -1.0, 2.0, 3.25)


def _tiny_repo() -> dict[str, bytes]:
    return {
        "config.json": b'{"model_type": "llama", "hidden_size": 2, "num_hidden_layers": 1}\n',
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}\n',
        "tokenizer_config.json": b'{"eos_token": "</s>"}\n',
        "model.safetensors": _tiny_safetensors(),
        "pytorch_model.bin": b"PK\x03\x04 pickle weights that must not be fetched by default",
        "README.md": b"# tiny\n",
    }


@pytest.fixture
def fake_hub(monkeypatch):
    """Serves `org/tiny` at COMMIT (branch `main`) the way the Hub answers snapshot_download: repo info,
    tree listing, and HEAD/GET on /resolve/ with X-Repo-Commit, ETag and Content-Length.
    Yields (endpoint, files, request log of (method, path, Authorization header))."""
    import json
    from urllib.parse import unquote, urlsplit

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    files = _tiny_repo()
    repos = {"org/tiny": files}
    log: list[tuple[str, str, str]] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body=b"", headers=(), head=False):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, data):
            self._send(200, json.dumps(data).encode(), [("Content-Type", "application/json")])

        def _handle(self, head):
            path = unquote(urlsplit(self.path).path)
            log.append((self.command, path, self.headers.get("Authorization", "")))
            parts = path.strip("/").split("/")
            api = parts[:2] == ["api", "models"]
            repo_id = "/".join(parts[2:4] if api else parts[0:2])
            rest = parts[4:] if api else parts[2:]
            if repo_id not in repos:  # the Hub answers 401 for a missing (or private) repo
                return self._send(401, b'{"error":"Repository not found"}',
                                  [("X-Error-Code", "RepoNotFound"), ("X-Error-Message", "Repository not found")], head)
            if len(rest) < 2 or rest[1] not in ("main", COMMIT):
                return self._send(404, b'{"error":"Invalid rev id"}', [("X-Error-Code", "RevisionNotFound")], head)
            repo = repos[repo_id]
            if api and rest[0] == "revision":
                return self._json({"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": f} for f in repo]})
            if api and rest[0] == "tree":
                return self._json([{"type": "file", "path": f, "size": len(b),
                                    "oid": hashlib.sha1(b).hexdigest()} for f, b in repo.items()])
            filename = "/".join(rest[2:])
            if not api and rest[0] == "resolve" and filename in repo:
                body = repo[filename]
                return self._send(200, body, [("X-Repo-Commit", COMMIT),
                                              ("ETag", f'"{hashlib.sha256(body).hexdigest()}"')], head)
            return self._send(404, b'{"error":"Entry not found"}', [("X-Error-Code", "EntryNotFound")], head)

        def do_HEAD(self):
            self._handle(head=True)

        def do_GET(self):
            self._handle(head=False)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import huggingface_hub.constants as hf_constants  # read at import; clear it if set then

        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        yield endpoint, files, log
    finally:
        server.shutdown()
        server.server_close()


def _all_bytes_under(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_fetch_model_from_fake_hub(tmp_path, fake_hub, monkeypatch, capfd):
    from launcher.cli import main

    _endpoint, files, log = fake_hub
    monkeypatch.setenv("HF_TOKEN", SECRET)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "--dest", str(dest), "--model", "org/tiny"]) == 0
    out, err = capfd.readouterr()
    model = dest / "models" / "org--tiny"
    assert out.strip().splitlines()[-1] == str(model)  # the path to put in a recipe's model.path
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        assert (model / name).read_bytes() == files[name], name
    assert not (model / "pytorch_model.bin").exists() and not (model / "README.md").exists()
    assert not any("pytorch_model.bin" in path for _m, path, _a in log)
    assert not (model / ".cache").exists()
    assert sorted(p.name for p in (dest / "models").iterdir()) == ["org--tiny"]  # no partial dir left
    # the token was honoured (sent to the Hub) and leaked nowhere
    assert log and all(auth == f"Bearer {SECRET}" for _m, _p, auth in log)
    assert SECRET.encode() not in _all_bytes_under(dest)
    assert SECRET not in out + err
    # a second fetch of the same repo and revision keeps the directory and asks the Hub nothing
    requests = len(log)
    assert main(["data", "fetch", "--dest", str(dest), "--model", "org/tiny", "--revision", COMMIT]) == 0
    assert len(log) == requests and "already present" in capfd.readouterr().out


def test_fetch_model_allow_pickle(tmp_path, fake_hub, monkeypatch, capfd):
    from launcher.cli import main

    _endpoint, files, _log = fake_hub
    monkeypatch.delenv("HF_TOKEN", raising=False)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "--dest", str(dest), "--model", "org/tiny", "--allow-pickle"]) == 0
    model = dest / "models" / "org--tiny"
    assert (model / "pytorch_model.bin").read_bytes() == files["pytorch_model.bin"]
    assert (model / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_fetch_model_missing_repo_and_revision(tmp_path, fake_hub, monkeypatch, capfd):
    from launcher.cli import main

    monkeypatch.setenv("HF_TOKEN", SECRET)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "--dest", str(dest), "--model", "org/nope"]) == 1
    out, err = capfd.readouterr()
    assert "org/nope" in err and "not found" in err and "HF_TOKEN" in err
    assert SECRET not in out + err
    assert not (dest / "models" / "org--nope").exists() and not list((dest / "models").glob(".*partial"))
    assert main(["data", "fetch", "--dest", str(dest), "--model", "org/tiny", "--revision", "v9"]) == 1
    err = capfd.readouterr().err
    assert "org/tiny" in err and "'v9'" in err and "--revision" in err
    assert main(["data", "fetch", "--dest", str(dest), "--model", "../etc"]) == 1
    assert "not a Hugging Face repo id" in capfd.readouterr().err
