"""The digest HTML in a real browser: headless Chromium at phone (375 px) and email (600 px) widths.

Screenshots are kept under test-artifacts/email/ (git-ignored) for a human to look at. The
overflow check loads a copy of the email with a small script appended that writes the page's
scroll width into the DOM, which `--dump-dom` then prints; the email itself has no script.
Skipped only when Debian's `chromium` binary is absent (CI installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from html import escape
from pathlib import Path

import pytest
from deliver_fakes import typical_digest

from flows.models import Recipient, Topics
from flows.render import RenderSettings, render_digest

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "email"
WIDTHS = (375, 600)
SETTINGS = RenderSettings(
    unsubscribe_url="https://papers.example.org/unsubscribe?address={address}",
    unsubscribe_mailto="unsubscribe@papers.example.org",
)
# Headless Chromium lays out --dump-dom pages at least 500 px wide, so the email is measured
# inside an iframe of the exact width (srcdoc keeps it same-origin for the script).
WRAPPER = """<!DOCTYPE html>
<html><body style="margin:0">
<iframe id="email" style="border:0;width:{width}px;height:2400px" srcdoc="{srcdoc}"></iframe>
<script>
  const frame = document.getElementById('email');
  frame.addEventListener('load', () => {{
    const doc = frame.contentDocument;
    const card = doc.querySelector('.container');
    document.body.setAttribute('data-scroll-width', doc.documentElement.scrollWidth);
    const style = frame.contentWindow.getComputedStyle(card);
    document.body.setAttribute('data-card-width', Math.round(card.getBoundingClientRect().width));
    document.body.setAttribute('data-card-bg', style.backgroundColor);
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


def chromium(profile: Path, width: int, *args: str, dark: bool = False) -> str:
    """Run headless Chromium with everything that reaches the network switched off."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},2400",
        *(["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if dark else []),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def measure(profile: Path, html: str, width: int, *, dark: bool = False) -> dict[str, str]:
    """Scroll width, card width and card background of the email laid out `width` px wide."""
    page = profile.parent / f"measure-{width}{'-dark' if dark else ''}.html"
    page.write_text(WRAPPER.format(width=width, srcdoc=escape(html, quote=True)), encoding="utf-8")
    dom = chromium(
        profile, 800, "--virtual-time-budget=3000", "--dump-dom", page.as_uri(), dark=dark
    )
    found = dict(re.findall(r'data-(scroll-width|card-width|card-bg)="([^"]*)"', dom))
    assert len(found) == 3, dom[-1000:]
    return found


def stress_digest():
    """The typical day plus the worst a title, an author list and keywords can do."""
    digest = typical_digest()
    worst = replace(
        digest.new[0],
        paper_id="2608.77777",
        arxiv_id="2608.77777",
        title="Pneumonoultramicroscopicsilicovolcanoconiosis-Aware" * 3 + " Transformers",
        authors=("Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaft",),
        ai_keywords=("averyveryveryveryveryveryveryverylongkeywordwithoutspaces",),
        organization="https://example.org/" + "a" * 80,
    )
    return replace(digest, new=(worst, *digest.new[1:]))


@pytest.fixture(scope="module")
def emails() -> dict[str, str]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rendered = {
        "everyone": render_digest(
            stress_digest(), recipient=Recipient("ada@example.org"), settings=SETTINGS
        ),
        "topics": render_digest(
            typical_digest(),
            recipient=Recipient("bob@example.org", Topics(include=("world model", "robot"))),
            settings=SETTINGS,
        ),
    }
    for name, email in rendered.items():
        (ARTIFACTS / f"digest-{name}.html").write_text(email.html, encoding="utf-8")
    return {name: email.html for name, email in rendered.items()}


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "chromium-profile"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["everyone", "topics"])
def test_no_horizontal_overflow(emails: dict[str, str], profile: Path, name: str, width: int):
    found = measure(profile, emails[name], width)
    assert int(found["scroll-width"]) <= width, f"{name} overflows at {width}px: {found}"
    assert int(found["card-width"]) <= 600


def test_measurement_detects_overflow(profile: Path) -> None:
    """The control: a page that does overflow is caught, so a pass above means something."""
    wide = '<html><body><div class="container" style="width:900px">x</div></body></html>'
    assert int(measure(profile, wide, 375)["scroll-width"]) > 375


def test_dark_mode_rules_survive_inlining(emails: dict[str, str], profile: Path) -> None:
    assert measure(profile, emails["everyone"], 600)["card-bg"] == "rgb(255, 255, 255)"
    assert measure(profile, emails["everyone"], 600, dark=True)["card-bg"] == "rgb(24, 24, 27)"


@pytest.mark.parametrize("width", WIDTHS)
def test_screenshots_are_kept_as_artifacts(emails: dict[str, str], profile: Path, width: int):
    for name in emails:
        shot = ARTIFACTS / f"digest-{name}-{width}.png"
        shot.unlink(missing_ok=True)
        page = (ARTIFACTS / f"digest-{name}.html").as_uri()
        chromium(profile, width, f"--screenshot={shot}", page)
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dark = ARTIFACTS / "digest-everyone-600-dark.png"
    page = (ARTIFACTS / "digest-everyone.html").as_uri()
    chromium(profile, 600, f"--screenshot={dark}", page, dark=True)
    assert dark.exists()
