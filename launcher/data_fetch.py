"""`mftlaunch data fetch`: download the benchmark data and check it against pinned sha256 sums.

The files and sums (FILES below) are the pinned benchmark data: HumanEvalPack from
bigcode-project/octopack at commit e17a8f6 (MIT; the copy with the 2024 Python/142 fix) and the
full MBPP jsonl from google-research (CC-BY-4.0). A file whose sum differs is refused and not
written, so a data dir holds either the pinned bytes or nothing; every write is atomic.

`base_url` points at a mirror laid out like a data dir (`<base_url>/humanevalpack/python.jsonl`,
`<base_url>/mbpp/mbpp.jsonl`), for clusters without GitHub access (and for the tests).
Only the standard library is used for the benchmark data: login nodes have nothing else.

`fetch_model` (`mftlaunch data fetch --model REPO_ID`) downloads a Hugging Face model snapshot for
compute nodes without internet: config, tokenizer and safetensors weights (pickle `*.bin` weights
only with `allow_pickle`) into `<dest>/models/<org>--<name>/`, through `huggingface_hub`, which is
imported only there. HF_TOKEN and HF_ENDPOINT are read from the environment at call time; the token
is passed to the library and never printed or written.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from launcher.rundir import atomic_write_bytes

OCTOPACK_COMMIT = "e17a8f6470264286bc6a52eb8263582083bf3bf6"
_OCTOPACK = (
    f"https://raw.githubusercontent.com/bigcode-project/octopack/{OCTOPACK_COMMIT}"
    "/evaluation/create/humaneval-x/data/{lang}/data/humanevalpack.jsonl"
)
_MBPP = "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl"


@dataclass(frozen=True)
class DataFile:
    """One pinned file: where it goes in a data dir, where it comes from, what it must hash to."""

    relpath: str
    url: str
    sha256: str
    licence: str


FILES: tuple[DataFile, ...] = (
    DataFile("humanevalpack/python.jsonl", _OCTOPACK.format(lang="python"),
             "b1376d72be4bd016a62ad043d9de3846edb8d63edf1222da802a31330c14c3a7", "MIT"),
    DataFile("humanevalpack/js.jsonl", _OCTOPACK.format(lang="js"),
             "04c86c1fac5f33818d9187cba278ed1dfc66cc259372dd8342126aa580fb7569", "MIT"),
    DataFile("humanevalpack/java.jsonl", _OCTOPACK.format(lang="java"),
             "a8d077d300bbdc2eda91e1a733deb2944678bce8fcc7eb272214626516768cc1", "MIT"),
    DataFile("humanevalpack/cpp.jsonl", _OCTOPACK.format(lang="cpp"),
             "891a390c1b9d2cb85dd8fbebcf1d88dbdd565734a6b2b3259f9ddb3fe95e33d7", "MIT"),
    DataFile("humanevalpack/go.jsonl", _OCTOPACK.format(lang="go"),
             "0ee2cdca46d70afb33d913a0d4b205624fe4ded2f28c2efdb241727221837993", "MIT"),
    DataFile("humanevalpack/rust.jsonl", _OCTOPACK.format(lang="rust"),
             "01ece28eaf490d7af037ce53095083dacfd38022cf5b82662ccb78024dc269a1", "MIT"),
    DataFile("mbpp/mbpp.jsonl", _MBPP,
             "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f", "CC-BY-4.0"),
)

MAX_BYTES = 64 * 1024 * 1024  # the largest file is < 1 MB; anything near this is not our data


class FetchError(Exception):
    """A download failed or its bytes are not the pinned ones."""


def url_for(item: DataFile, base_url: Optional[str]) -> str:
    if base_url:
        return base_url.rstrip("/") + "/" + item.relpath
    return item.url


def _sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _file_sha256(path: Path) -> Optional[str]:
    try:
        return _sha256_bytes(path.read_bytes())
    except OSError:
        return None


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (pinned https / user mirror)
            payload = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"download failed: {url}: {exc}") from None
    if len(payload) > MAX_BYTES:
        raise FetchError(f"{url}: larger than {MAX_BYTES} bytes, refusing it")
    return payload


def fetch(
    dest: str | Path,
    base_url: Optional[str] = None,
    files: Iterable[DataFile] = FILES,
    timeout: float = 60.0,
    log: Callable[[str], None] = lambda msg: print(msg, flush=True),
) -> list[Path]:
    """Download every pinned file into `dest` (skipping files already there with the right sum)
    and verify each. All files are tried; a FetchError naming every failure is raised at the end.
    Returns the paths of the verified files."""
    dest = Path(dest).expanduser()
    done: list[Path] = []
    errors: list[str] = []
    for item in files:
        target = dest / item.relpath
        if _file_sha256(target) == item.sha256:
            log(f"ok       {target} (already present, sha256 verified)")
            done.append(target)
            continue
        url = url_for(item, base_url)
        try:
            payload = _download(url, timeout)
        except FetchError as exc:
            errors.append(str(exc))
            continue
        digest = _sha256_bytes(payload)
        if digest != item.sha256:
            errors.append(f"{url}: sha256 {digest} is not the pinned {item.sha256}; not written")
            continue
        atomic_write_bytes(target, payload)
        log(f"fetched  {target} ({len(payload)} bytes, {item.licence}, sha256 verified)")
        done.append(target)
    if errors:
        raise FetchError(f"{len(errors)} of {len(done) + len(errors)} files failed:\n  " + "\n  ".join(errors))
    return done


# --- models -------------------------------------------------------------------------------------

MODEL_PATTERNS: tuple[str, ...] = (
    "*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt",
)
"""What a model snapshot takes by default: configs, tokenizer files, safetensors weights."""
PICKLE_PATTERNS: tuple[str, ...] = ("*.bin",)
"""Pickle weights (`pytorch_model*.bin`): loading one can run arbitrary code, so only on request."""
FETCH_RECORD = ".mftlaunch-fetch.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def model_dir_name(repo_id: str) -> str:
    """`org/name` -> `org--name` (the Hub's own cache naming); refuses anything that is not a repo id."""
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or len(repo_id) > 96:
        raise FetchError(f"{repo_id!r} is not a Hugging Face repo id (expected ORG/NAME, e.g. Qwen/Qwen2.5-Coder-1.5B)")
    return repo_id.replace("/", "--")


def _scrub(text: str, secret: Optional[str]) -> str:
    return text.replace(secret, "<HF_TOKEN>") if secret else text


def _describe_hub_error(exc: BaseException, repo_id: str, revision: str, endpoint: str) -> str:
    """What went wrong, and what to check, without the library's multi-line tracebacks."""
    from huggingface_hub import errors

    token_hint = "HF_TOKEN is set to a token that can read it" + (
        "" if os.environ.get("HF_TOKEN") else " (HF_TOKEN is not set)")
    if isinstance(exc, errors.GatedRepoError):
        return (f"{repo_id} is gated: accept its licence on {endpoint}/{repo_id} with your account, "
                f"and check that {token_hint}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return (f"repository {repo_id} not found on {endpoint}: check the spelling (ORG/NAME), "
                f"and if it is private or gated that {token_hint}")
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"{repo_id} has no revision {revision!r}: check --revision (a branch, tag or commit sha)"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return (f"could not download {repo_id}@{revision} from {endpoint} ({type(exc).__name__}: {first_line}): "
            f"check that this machine reaches {endpoint} (proxy settings, HF_ENDPOINT) and that {token_hint}")


def fetch_model(
    dest: str | Path,
    repo_id: str,
    revision: Optional[str] = None,
    allow_pickle: bool = False,
    log: Callable[[str], None] = lambda msg: print(msg, flush=True),
) -> Path:
    """Download a model snapshot into `<dest>/models/<org>--<name>/` and return that path.

    The download goes into `<dest>/models/.<org>--<name>.partial/` (kept on failure so that a rerun
    resumes it) and is renamed into place only once complete, so the final directory is either
    whole or absent. A directory already there from the same repo and revision is kept as it is.
    Raises FetchError, naming the repo and what to check, on any failure."""
    name = model_dir_name(repo_id)
    revision = revision or "main"
    models = Path(dest).expanduser().resolve() / "models"
    final = models / name
    partial = models / f".{name}.partial"
    token = os.environ.get("HF_TOKEN") or None

    if final.exists():
        try:
            record = json.loads((final / FETCH_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        if record.get("repo_id") == repo_id and revision in (record.get("revision"), record.get("commit")):
            log(f"ok       {final} (already present: {repo_id}@{revision}, commit {record.get('commit')})")
            return final
        held = f"{record.get('repo_id')}@{record.get('revision')}" if record else "files not fetched by mftlaunch"
        raise FetchError(f"{final} already exists and holds {held}, not {repo_id}@{revision}: "
                         "delete it or use another --dest")

    try:
        import huggingface_hub
        from huggingface_hub import constants as hf_constants
    except ImportError:
        raise FetchError("--model needs the huggingface_hub package (pip install huggingface_hub)") from None
    endpoint = (os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or hf_constants.HF_HUB_OFFLINE:
        raise FetchError(f"cannot download {repo_id}: HF_HUB_OFFLINE is set in this environment; "
                         "unset it for `data fetch` (keep it for the offline compute nodes)")

    patterns = list(MODEL_PATTERNS) + (list(PICKLE_PATTERNS) if allow_pickle else [])
    partial.mkdir(parents=True, exist_ok=True)
    log(f"fetching {repo_id}@{revision} from {endpoint} into {partial} ({', '.join(patterns)})")
    try:
        huggingface_hub.snapshot_download(
            repo_id=repo_id,
            revision=revision,
            local_dir=str(partial),
            # the Hub's refs and blobs go inside the partial dir too, never into ~/.cache
            cache_dir=str(partial / ".cache" / "hub"),
            allow_patterns=patterns,
            token=token,
            endpoint=endpoint,
        )
    except Exception as exc:  # the library raises many types; all end here with one clear message
        _drop_if_empty(partial)
        kept = f"; the partial download in {partial} is kept: rerun to resume" if partial.exists() else ""
        raise FetchError(_scrub(_describe_hub_error(exc, repo_id, revision, endpoint) + kept, token)) from None

    files = sorted(p.relative_to(partial).as_posix() for p in partial.rglob("*")
                   if p.is_file() and not p.relative_to(partial).as_posix().startswith(".cache/"))
    weights = [f for f in files if f.endswith(".safetensors") or (allow_pickle and f.endswith(".bin"))]
    if "config.json" not in files or not weights:
        shutil.rmtree(partial, ignore_errors=True)
        missing = "config.json" if "config.json" not in files else "weights"
        hint = "" if allow_pickle else (" (only *.safetensors weights are taken: if the repo ships only "
                                        "pytorch_model*.bin, rerun with --allow-pickle if you trust it)")
        raise FetchError(f"{repo_id}@{revision}: no {missing} among the downloaded files {files}{hint}")
    commit = _snapshot_commit(partial, revision)
    shutil.rmtree(partial / ".cache", ignore_errors=True)
    atomic_write_bytes(partial / FETCH_RECORD, (json.dumps(
        {"repo_id": repo_id, "revision": revision, "commit": commit, "endpoint": endpoint, "files": files},
        indent=2) + "\n").encode("utf-8"))
    try:
        partial.rename(final)
    except OSError as exc:
        raise FetchError(f"could not move {partial} to {final}: {exc}") from None
    size = sum((final / f).stat().st_size for f in files)
    log(f"fetched  {final} ({repo_id}@{revision}, commit {commit}, {len(files)} files, {size} bytes)")
    return final


def _drop_if_empty(partial: Path) -> None:
    """Remove a partial dir that holds no downloaded bytes (a bad repo id leaves only cache dirs);
    one with files or `.incomplete` downloads in it is kept for a rerun to resume."""
    for path in partial.rglob("*"):
        inside_cache = path.relative_to(partial).parts[0] == ".cache"
        if path.is_file() and (not inside_cache or path.name.endswith(".incomplete")) and path.stat().st_size:
            return
    shutil.rmtree(partial, ignore_errors=True)


def _snapshot_commit(partial: Path, revision: str) -> Optional[str]:
    """The commit sha the Hub resolved `revision` to (written by the library under `.cache/hub`)."""
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    for ref in (partial / ".cache" / "hub").glob(f"*/refs/{revision}"):
        try:
            return ref.read_text(encoding="utf-8").strip() or None
        except OSError:
            pass
    return None
