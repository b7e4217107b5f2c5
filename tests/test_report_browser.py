"""report.html in a real browser: headless Chromium (Debian's `chromium`, installed by
tests/browser/install.sh) renders the report; the DOM it builds holds the results table with every
task and model, every plot decodes as an image of a readable size, and a screenshot is written
next to the report for a person to look at."""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from launcher.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_fixtures import TASKS, make_sweep_run  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-extensions", "--disable-background-networking"]


class Dom(HTMLParser):
    """What the test reads from the browser's DOM: tables (by id) as rows of cell texts, images."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict[str, str]] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id") or f"table{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: bash tests/browser/install.sh (install.sh --dev runs it)")
    return path


def test_report_renders_in_headless_chromium(tmp_path):
    run = make_sweep_run(tmp_path / "tiny_sweep-20261205-101500", steps=(2, 4, 6))
    report = tmp_path / "report.html"
    assert main(["report", str(run.root), "--out", str(report)]) == 0
    dom_text = subprocess.run([chromium(), *CHROMIUM_FLAGS, "--dump-dom", report.as_uri()], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    dom = Dom()
    dom.feed(dom_text)

    table = dom.tables["results-table"]
    header, body = table[0], table[1:]
    models = ["tiny-step2", "tiny-step4", "tiny-step6"]
    assert header[1:4] == models
    assert [row[0] for row in body] == TASKS[:13] + ["mean (13 tasks)", "humaneval"]
    assert all(len(row) == len(header) for row in body)
    assert next(r for r in body if r[0] == "mbpp")[1:4] == ["0.3000", "0.0000", "0.7000"]
    assert {row[1] for row in dom.tables["outcomes-table"][1:]} == {"cpp", "go", "java", "js", "python", "rust"}

    plots = [img for img in dom.images if "plot" in img.get("class", "")]
    assert len(plots) == 5
    for img in plots:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), img["src"][:40]
        image = Image.open(io.BytesIO(base64.b64decode(img["src"][len(prefix):], validate=True)))
        image.load()
        assert image.format == "PNG" and image.width >= 800 and image.height >= 250, (img["alt"], image.size)
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, img["alt"]  # drawn, not blank

    screenshot = report.with_suffix(".png")
    subprocess.run([chromium(), *CHROMIUM_FLAGS, "--window-size=1280,2400", f"--screenshot={screenshot}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    shot = Image.open(screenshot)
    assert shot.size == (1280, 2400)
    assert len(shot.getcolors(maxcolors=1 << 20) or range(1 << 20)) > 50  # the page was drawn
