"""Tests of the "For you" email: a reader's ranked picks first, each close to a library paper.

The ranking itself is tested in tests/test_ranking.py; here a `ForYou` is written by hand so
the golden file depends on the template, not on the numerics of a fitted model. Regenerate:

    PAPERDIGEST_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_render_for_you.py -k golden
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deliver_fakes import typical_digest
from test_email_browser import CHROMIUM, WIDTHS, measure
from test_render import SETTINGS, check_golden, hrefs

from flows.models import ForYou, RankedPaper, Recipient, Topics
from flows.render import render_digest, render_fitted

ADA = Recipient("ada@example.org")


def ada_for_you() -> ForYou:
    """A world-model reader's picks: three new papers, one trending, one late arrival."""
    digest = typical_digest()
    by_title = {p.title.split(":")[0]: p.paper_id for p in (*digest.new, *digest.trending)}
    by_title.update({p.title.split(":")[0]: p.paper_id for p in digest.late})
    iv = "iVideoGPT: Interactive VideoGPTs are Scalable World Models"
    picks = (
        RankedPaper(by_title["DreamX-Phi 1.0"], 0.41, iv),
        RankedPaper(by_title["PlayWorld"], 0.33, iv),
        RankedPaper(
            by_title["H2R-Bench"], 0.29, "Video Prediction Policies for Robotic Manipulation"
        ),
        RankedPaper(
            digest.trending[1].paper_id, 0.12, "Recurrent World Models Facilitate Policy Evolution"
        ),
        RankedPaper(digest.late[0].paper_id, 0.05, ""),
    )
    return ForYou(picks=picks, n_library=4, backend="tf-idf")


def test_golden_for_you_html_and_text() -> None:
    rendered = render_digest(
        typical_digest(), recipient=ADA, settings=SETTINGS, for_you=ada_for_you()
    )
    check_golden("digest_for_you.html", rendered.html)
    check_golden("digest_for_you.txt", rendered.text)


def test_for_you_comes_first_in_rank_order_with_close_to_lines() -> None:
    digest = typical_digest()
    for_you = ada_for_you()
    rendered = render_digest(digest, recipient=ADA, settings=SETTINGS, for_you=for_you)
    titles = {p.paper_id: p.title for p in (*digest.new, *digest.trending, *digest.late)}
    text = rendered.text
    assert text.index("== FOR YOU ==") < text.index("== TRENDING OUTSIDE YOUR INTERESTS ==")
    positions = [text.index(titles[p.paper_id]) for p in for_you.picks]
    assert positions == sorted(positions)
    assert text.count("close to: iVideoGPT: Interactive VideoGPTs are Scalable World Models") == 2
    assert "close to: Video Prediction Policies for Robotic Manipulation" in text
    assert "The 5 of today's 20 papers closest to the 4 papers of your library" in text
    html = rendered.html
    assert html.index("For you") < html.index("Trending outside your interests")
    assert html.count("close to: ") == 4  # the late paper has no library paper near it
    assert rendered.subject.endswith("5 for you, 3 trending elsewhere")
    assert rendered.preheader.startswith("Top for you: DreamX-Phi 1.0")


def test_trending_left_out_of_the_picks_keeps_a_short_section() -> None:
    digest = typical_digest()
    rendered = render_fitted(digest, recipient=ADA, settings=SETTINGS, for_you=ada_for_you())
    outside = rendered.email.text.split("== TRENDING OUTSIDE YOUR INTERESTS ==")[1]
    picked = {p.paper_id for p in ada_for_you().picks}
    unpicked = [p for p in digest.trending if p.paper_id not in picked]
    assert len(unpicked) == 3
    for paper in unpicked:  # the big paper of the day is never hidden by the ranking
        assert paper.title in outside
    assert rendered.shown == 5


def test_excluded_topics_still_hide_papers_from_the_picks() -> None:
    digest = typical_digest()
    reader = Recipient("ada@example.org", Topics(exclude=("PlayWorld",)))
    text = render_digest(digest, recipient=reader, settings=SETTINGS, for_you=ada_for_you()).text
    assert "PlayWorld" not in text
    assert "4 for you" in text


def test_no_ranking_or_no_usable_pick_is_exactly_the_unranked_email() -> None:
    digest = typical_digest()
    plain = render_digest(digest, recipient=ADA, settings=SETTINGS)
    assert render_digest(digest, recipient=ADA, settings=SETTINGS, for_you=None) == plain
    gone = ForYou(picks=(RankedPaper("2699.99999", 1.0, "x"),), n_library=3, backend="tf-idf")
    assert render_digest(digest, recipient=ADA, settings=SETTINGS, for_you=gone) == plain


def test_library_titles_are_escaped_in_the_close_to_line() -> None:
    digest = typical_digest()
    hostile = '<img src="https://evil.example/x.png"> Attention'
    for_you = ForYou((RankedPaper(digest.new[0].paper_id, 1.0, hostile),), 1, "tf-idf")
    html = render_digest(digest, recipient=ADA, settings=SETTINGS, for_you=for_you).html
    assert "close to: &lt;img" in html
    assert "https://evil.example/x.png" not in hrefs(html)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
@pytest.mark.parametrize("width", WIDTHS)
def test_for_you_email_does_not_overflow_in_a_browser(tmp_path: Path, width: int) -> None:
    digest = typical_digest()
    long_title = "Pneumonoultramicroscopicsilicovolcanoconiosis-Aware" * 3 + " Transformers"
    picks = (RankedPaper(digest.new[0].paper_id, 1.0, long_title), *ada_for_you().picks[1:])
    for_you = ForYou(picks=picks, n_library=4, backend="tf-idf")
    html = render_digest(digest, recipient=ADA, settings=SETTINGS, for_you=for_you).html
    found = measure(tmp_path / "profile", html, width)
    assert int(found["scroll-width"]) <= width, found
