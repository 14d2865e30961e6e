"""The published site in a real browser (headless Chromium, as tests/test_email_browser.py):
the index, a day, a week and a paper page at 375 and 1280 px, with no horizontal overflow and
no console error; the optional search works from file://.

Each page is loaded in an iframe of the exact width inside a wrapper page (Chromium lays out
--dump-dom pages at least 500 px wide); --allow-file-access-from-files lets the wrapper's
script measure the file:// page. Console messages are read from Chromium's log on stderr.
Skipped only when Debian's `chromium` binary is absent (CI installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from site_build import FIRST_DIGEST, build_warehouse, publish

from flows.site import iso_week

CHROMIUM = shutil.which("chromium")
WIDTHS = (375, 1280)
WRAPPER = """<!DOCTYPE html>
<html><body style="margin:0">
<iframe id="page" style="border:0;width:{width}px;height:1600px" src="{src}"></iframe>
<script>
  const frame = document.getElementById('page');
  frame.addEventListener('load', () => {{
    const doc = frame.contentDocument;
    const input = doc.getElementById('search-input');
    if (input && {query}) {{
      input.value = {query};
      input.dispatchEvent(new Event('input'));
    }}
    setTimeout(() => {{
      document.body.setAttribute('data-scroll-width', doc.documentElement.scrollWidth);
      document.body.setAttribute('data-h1', doc.querySelectorAll('h1').length);
      const results = doc.getElementById('search-results');
      document.body.setAttribute('data-results', results ? results.children.length : -1);
      const form = doc.getElementById('search');
      document.body.setAttribute('data-search-hidden', form ? form.hidden : 'none');
    }}, 200);
  }});
</script>
</body></html>
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("browser-site")
    build_warehouse(work / "papers.duckdb", work / "pages")
    publish(work / "papers.duckdb", work / "site")
    return work / "site"


def pages(site: Path) -> dict[str, Path]:
    """The four kinds of page; the paper is the one with the most sightings (a real chart)."""
    papers = sorted(site.glob("papers/*.html"), key=lambda p: -p.read_text().count("<tr><td>"))
    return {
        "index": site / "index.html",
        "day": site / "days" / f"{FIRST_DIGEST}.html",
        "week": site / "weeks" / f"{iso_week(FIRST_DIGEST)}.html",
        "paper": papers[0],
    }


def load(tmp_path: Path, page: Path, width: int, query: str = "") -> tuple[dict[str, str], str]:
    """Load a page `width` px wide; what the wrapper measured, and Chromium's log."""
    wrapper = tmp_path / f"wrap-{page.stem}-{width}.html"
    wrapper.write_text(
        WRAPPER.format(width=width, src=page.as_uri(), query=json.dumps(query)), encoding="utf-8"
    )
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={width + 40},1700",
        "--virtual-time-budget=5000",
        "--dump-dom",
        wrapper.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', done.stdout))
    assert "scroll-width" in found, done.stdout[-1000:]
    return found, done.stderr


def console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", ["index", "day", "week", "paper"])
def test_no_horizontal_overflow_and_no_console_errors(
    site: Path, tmp_path: Path, kind: str, width: int
) -> None:
    found, log = load(tmp_path, pages(site)[kind], width)
    assert int(found["scroll-width"]) <= width, f"{kind} overflows at {width}px: {found}"
    assert found["h1"] == "1"
    assert console_messages(log) == []


def test_measurement_detects_overflow_and_console_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html lang="en"><body><h1 style="width:900px">x</h1>'
        "<script>nosuch();</script></body></html>",
        encoding="utf-8",
    )
    found, log = load(tmp_path, bad, 375)
    assert int(found["scroll-width"]) > 375
    assert any("nosuch" in line for line in console_messages(log))


def test_search_filters_titles_from_file_urls(site: Path, tmp_path: Path) -> None:
    found, log = load(tmp_path, site / "index.html", 1280, query="reasoning")
    assert found["search-hidden"] == "false"  # the script showed the form
    assert int(found["results"]) > 0
    assert console_messages(log) == []
