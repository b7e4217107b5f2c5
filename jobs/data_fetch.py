"""`mftlaunch data fetch`: download the benchmark data and check it against pinned sha256 sums.

The files and sums are those of ../shared/data/SOURCES.md: HumanEvalPack from
bigcode-project/octopack at commit e17a8f6 (MIT; the copy with the 2024 Python/142 fix) and the
full MBPP jsonl from google-research (CC-BY-4.0). A file whose sum differs is refused and not
written, so a data dir holds either the pinned bytes or nothing; every write is atomic.

`base_url` points at a mirror laid out like a data dir (`<base_url>/humanevalpack/python.jsonl`,
`<base_url>/mbpp/mbpp.jsonl`), for clusters without GitHub access (and for the tests).
Only the standard library is used: login nodes have nothing else.
"""
from __future__ import annotations

import hashlib
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
