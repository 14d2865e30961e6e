"""Tests of flows.render: golden files, sections, topics, injection, the size budget.

Golden files live in tests/golden/. After a deliberate change to the templates or the
rendering, regenerate them and review the diff:

    PAPERDIGEST_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_render.py -k golden

Volatile parts (the package version in the footer) are scrubbed before comparing.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest
from deliver_fakes import DAY, fixture_papers, typical_digest

from flows import __version__
from flows.models import Change, Digest, DigestPaper, Recipient, Topics
from flows.render import (
    HTML_TEMPLATE,
    TEXT_TEMPLATE,
    RenderSettings,
    date_label,
    excluded_by,
    match_topics,
    render_digest,
    safe_url,
    template_environment,
    unsubscribe_for,
    write_preview,
)

GOLDEN = Path(__file__).parent / "golden"


def _regen_requested() -> bool:
    """PAPERDIGEST_REGEN_GOLDEN=1 rewrites the golden files (tests/conftest.py keeps it)."""
    return os.environ.get("PAPERDIGEST_REGEN_GOLDEN") == "1"


REGEN = _regen_requested()
SETTINGS = RenderSettings(
    unsubscribe_url="https://papers.example.org/unsubscribe?address={address}",
    unsubscribe_mailto="unsubscribe@papers.example.org",
)
ALICE = Recipient("alice@example.org")
BOB = Recipient("bob@example.org", Topics(include=("world model", "robot"), exclude=("survey",)))


def scrub(text: str) -> str:
    """Remove what changes without the email changing: the package version."""
    return text.replace(f"paperdigest {__version__}", "paperdigest <version>")


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"{path} is missing; run with PAPERDIGEST_REGEN_GOLDEN=1 to create it")
        path.parent.mkdir(exist_ok=True)
        path.write_text(scrub(actual), encoding="utf-8")
    assert scrub(actual) == path.read_text(encoding="utf-8"), f"{name} differs from its golden"


def paper(**overrides) -> DigestPaper:
    base = DigestPaper(
        paper_id="2608.99999",
        arxiv_id="2608.99999",
        title="A Plain Title",
        abstract="An abstract about nothing in particular.",
        upvotes=10,
        digest_date=DAY,
    )
    return replace(base, **overrides)


def one_paper_digest(p: DigestPaper, section: str = "new") -> Digest:
    return Digest(digest_date=DAY, data_through=DAY, **{section: (p,)})


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [value or "" for name, value in attrs if name in ("href", "src")]


def parsed(html: str) -> _LinkCollector:
    """The tags and link targets a browser would see (text that merely looks like a tag
    is not a tag)."""
    collector = _LinkCollector()
    collector.feed(html)
    return collector


def hrefs(html: str) -> list[str]:
    return parsed(html).hrefs


# ---- golden files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "recipient"),
    [("digest_everyone", ALICE), ("digest_topics", BOB)],
)
def test_golden_html_and_text(name: str, recipient: Recipient) -> None:
    rendered = render_digest(typical_digest(), recipient=recipient, settings=SETTINGS)
    check_golden(f"{name}.html", rendered.html)
    check_golden(f"{name}.txt", rendered.text)


def test_golden_files_hold_no_version_or_absolute_paths() -> None:
    for path in GOLDEN.glob("digest_*"):
        text = path.read_text(encoding="utf-8")
        assert "/work/" not in text and "/tmp/" not in text, path


# ---- the shape of the email --------------------------------------------------------------


def test_subject_has_date_and_counts() -> None:
    rendered = render_digest(typical_digest(), settings=SETTINGS)
    assert rendered.subject == "Daily Papers · Fri Aug 14 · 14 new, 4 trending, 2 missed earlier"


def test_date_label_has_no_zero_padding() -> None:
    assert date_label(date(2026, 11, 3)) == "Tue Nov 3"
    assert date_label(date(2026, 11, 3), year=True) == "Tue Nov 3, 2026"


def test_sections_in_order_with_trending_reasons() -> None:
    html = render_digest(typical_digest(), recipient=ALICE, settings=SETTINGS).html
    positions = [html.index(f">{title}</h2>") for title in ("Trending", "New", "Missed earlier")]
    assert positions == sorted(positions)
    assert "+41 upvotes since yesterday, the fastest climber this week." in html
    assert "Added to Thu Aug 13 after that digest was sent." in html
    assert "Updates</h2>" in html and "Code released:" in html


def test_paper_card_has_links_authors_votes_stars_and_keywords() -> None:
    digest = typical_digest()
    rendered = render_digest(digest, settings=SETTINGS)
    router = next(p for p in digest.new if p.paper_id == "2608.06867")  # LLMRouter
    assert 'href="https://huggingface.co/papers/2608.06867"' in rendered.html
    assert 'href="https://arxiv.org/abs/2608.06867"' in rendered.html
    assert 'href="https://github.com/ulab-uiuc/LLMRouter"' in rendered.html
    assert "GitHub&nbsp;★&nbsp;2,341" in rendered.html
    assert "Tao Feng, Fangxu Yu, Haozhen Zhang et al." in rendered.html
    assert router.ai_keywords[0] in rendered.html
    assert "53 upvotes · 1 comment · 2,341 GitHub stars" in rendered.text


def test_upvote_gain_is_shown_with_its_sign() -> None:
    rendered = render_digest(typical_digest(), settings=SETTINGS)
    assert "▲&nbsp;139</span>&nbsp;<span" in rendered.html and ">+41</span>" in rendered.html
    assert "139 upvotes (+41)" in rendered.text


def test_excerpt_prefers_ai_summary_and_clips_the_abstract() -> None:
    long_abstract = "word " * 200
    with_summary = paper(ai_summary="A short machine summary.", abstract=long_abstract)
    rendered = render_digest(one_paper_digest(with_summary), settings=SETTINGS)
    assert "A short machine summary." in rendered.html and "word word" not in rendered.html
    without = paper(abstract=long_abstract.strip())
    html = render_digest(one_paper_digest(without), settings=SETTINGS).html
    excerpt = re.search(r'class="excerpt"[^>]*>([^<]*)<', html).group(1)
    assert excerpt.endswith("…") and len(excerpt) <= SETTINGS.excerpt_chars


def test_authors_first_three_then_et_al() -> None:
    four = paper(authors=("A One", "B Two", "C Three", "D Four"))
    three = paper(authors=("A One", "B Two", "C Three"), n_authors=3)
    assert "A One, B Two, C Three et al." in render_digest(one_paper_digest(four)).text
    text = render_digest(one_paper_digest(three)).text
    assert "A One, B Two, C Three" in text and "et al." not in text


def test_footer_has_data_through_gaps_and_unsubscribe() -> None:
    rendered = render_digest(typical_digest(), recipient=ALICE, settings=SETTINGS)
    assert "Data through Fri Aug 14, 2026." in rendered.html
    assert "No page could be read for Wed Aug 12, 2026" in rendered.html
    assert 'href="https://papers.example.org/unsubscribe?address=alice@example.org"' in (
        rendered.html
    )
    assert "Unsubscribe: https://papers.example.org/unsubscribe?address=alice@example.org" in (
        rendered.text
    )


def test_html_keeps_media_queries_and_inlines_the_rest() -> None:
    html = render_digest(typical_digest(), settings=SETTINGS).html
    assert "@media screen and (max-width: 620px)" in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert html.index('<meta charset="utf-8">') < 100
    assert 'class="title" style="' in html  # inlined by css-inline
    assert "max-width:600px" in html
    assert 'name="viewport"' in html and 'name="color-scheme"' in html


def test_preheader_is_hidden_text_at_the_top() -> None:
    rendered = render_digest(typical_digest(), settings=SETTINGS)
    assert rendered.preheader.startswith("Top: OpenART")
    body = rendered.html[rendered.html.index("<body") :]
    assert body.index(rendered.preheader) < body.index("<table")
    assert "display:none" in body[: body.index(rendered.preheader)]


def test_empty_day_renders_a_short_note() -> None:
    empty = Digest(digest_date=DAY, data_through=date(2026, 8, 13))
    rendered = render_digest(empty, recipient=ALICE, settings=SETTINGS)
    assert rendered.subject == "Daily Papers · Fri Aug 14 · nothing new"
    assert "Nothing new on Hugging Face Daily Papers" in rendered.html
    assert "Data through Thu Aug 13, 2026." in rendered.text


def test_weekly_recipient_gets_a_weekly_subject() -> None:
    weekly = replace(ALICE, cadence="weekly")
    rendered = render_digest(typical_digest(), recipient=weekly, settings=SETTINGS)
    assert rendered.subject.startswith("Weekly Papers · week to Fri Aug 14 · ")
    assert "You get this weekly digest as alice@example.org." in rendered.text


def test_write_preview_writes_html_and_text(tmp_path: Path) -> None:
    rendered = render_digest(typical_digest(), settings=SETTINGS)
    html_path, text_path = write_preview(rendered, tmp_path / "preview", "digest-2026-08-14")
    assert html_path.read_text(encoding="utf-8") == rendered.html
    assert text_path.read_text(encoding="utf-8") == rendered.text
    assert (html_path.name, text_path.name) == ("digest-2026-08-14.html", "digest-2026-08-14.txt")


@pytest.mark.parametrize("stem", ["../escape", "a/b", "", ".hidden", "x" * 200])
def test_write_preview_refuses_stems_that_are_not_plain_names(tmp_path: Path, stem: str) -> None:
    rendered = render_digest(typical_digest(), settings=SETTINGS)
    with pytest.raises(ValueError):
        write_preview(rendered, tmp_path, stem)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        RenderSettings(on_empty="shout")
    with pytest.raises(ValueError):
        RenderSettings(site_url="javascript:alert(1)")


# ---- topics ------------------------------------------------------------------------------


def test_match_topics_says_where_it_matched() -> None:
    p = paper(
        title="Latent Diffusion for Video",
        ai_keywords=("world models",),
        authors=("Ada Lovelace",),
        abstract="We study robots.",
    )
    assert match_topics(p, Topics(include=("diffusion",))) == "matched 'diffusion' in title"
    assert match_topics(p, Topics(include=("world model",))) == "matched 'world model' in keywords"
    assert match_topics(p, Topics(include=("lovelace",))) == "matched 'lovelace' in authors"
    assert match_topics(p, Topics(include=("robot",))) == "matched 'robot' in abstract"
    assert match_topics(p, Topics(include=("transformer",))) is None
    assert match_topics(p, Topics()) is None


def test_keywords_match_at_word_starts_only() -> None:
    p = paper(title="Starting an agentic art-style project", abstract="")
    assert match_topics(p, Topics(include=("agent",))) == "matched 'agent' in title"
    assert match_topics(p, Topics(include=("art",))) == "matched 'art' in title"  # art-style
    assert match_topics(paper(title="Starting over", abstract=""), Topics(include=("art",))) is None
    assert match_topics(paper(title="World-Model RL"), Topics(include=("world model",)))


def test_exclude_wins_over_include() -> None:
    p = paper(title="A Survey of Diffusion Models")
    topics = Topics(include=("diffusion",), exclude=("survey",))
    assert match_topics(p, topics) is None
    assert excluded_by(p, topics) == "excluded by 'survey' in title"


def test_topic_recipient_gets_matches_with_why_and_trending_outside() -> None:
    rendered = render_digest(typical_digest(), recipient=BOB, settings=SETTINGS)
    html = rendered.html
    assert "Matches for your topics</h2>" in html
    assert "✓ matched 'world model' in title" in html
    assert "Trending outside your topics</h2>" in html
    assert "OpenART: Scaling Agent Red Teaming" in html  # the big paper is still there
    assert ">Trending</h2>" not in html and ">New</h2>" not in html
    assert rendered.subject == "Daily Papers · Fri Aug 14 · 5 for your topics, 3 trending elsewhere"


def test_topic_recipient_with_no_matches_is_told_so() -> None:
    nobody = Recipient("carol@example.org", Topics(include=("quantum chromodynamics",)))
    rendered = render_digest(typical_digest(), recipient=nobody, settings=SETTINGS)
    assert "Nothing matched your topics in this digest." in rendered.html
    assert rendered.preheader.startswith("No matches for your topics today; trending: OpenART")


def test_exclude_only_recipient_sees_everything_else_and_what_was_hidden() -> None:
    picky = Recipient("dan@example.org", Topics(exclude=("red teaming",)))
    html = render_digest(typical_digest(), recipient=picky, settings=SETTINGS).html
    assert ">Trending</h2>" in html and ">New</h2>" in html
    assert "Trending, hidden by your filters</h2>" in html
    hidden_part = html[html.index("Trending, hidden by your filters") :]
    assert "OpenART" in hidden_part and "OpenART" not in html[: html.index(">Trending</h2>")]


# ---- injection ---------------------------------------------------------------------------


def test_autoescape_is_on_for_the_html_template_and_off_for_text() -> None:
    env = template_environment()
    assert env.autoescape(HTML_TEMPLATE) is True
    assert env.autoescape(TEXT_TEMPLATE) is False
    assert env.autoescape(None) is True  # templates from strings are escaped too
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ missing }}").render()  # StrictUndefined


@pytest.mark.parametrize(
    "title",
    [
        "<script>alert('x')</script> Diffusion",
        '"><img src=x onerror=alert(1)>',
        'Innocent</a><a href="javascript:alert(1)">click',
    ],
)
def test_markup_in_titles_is_escaped(title: str) -> None:
    rendered = render_digest(one_paper_digest(paper(title=title)), settings=SETTINGS)
    tags = parsed(rendered.html).tags
    assert "script" not in tags and "img" not in tags
    assert "<script>" not in rendered.html and "<img" not in rendered.html
    assert not any("javascript:" in href for href in hrefs(rendered.html))
    assert title in rendered.text  # plain text keeps the title as written


def test_only_http_urls_become_links() -> None:
    sneaky = paper(
        github_url="javascript:alert(1)",
        project_url="data:text/html,<script>alert(1)</script>",
    )
    rendered = render_digest(one_paper_digest(sneaky), settings=SETTINGS)
    for href in hrefs(rendered.html):
        assert href.startswith(("https://", "http://", "mailto:")), href
    assert "javascript:" not in rendered.html and "data:text" not in rendered.html
    assert "javascript:" not in rendered.text


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://github.com/a/b", True),
        ("http://example.org/x", True),
        ("HTTPS://EXAMPLE.ORG", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html,x", False),
        ("//example.org/x", False),
        ("https://", False),
        ("https://exa mple.org", False),
        ("https://example.org/\nSet-Cookie: x", False),
        (None, False),
    ],
)
def test_safe_url(url: str | None, ok: bool) -> None:
    assert (safe_url(url) is not None) is ok


def test_odd_arxiv_ids_are_quoted_in_urls() -> None:
    odd = paper(arxiv_id='2608.1"><script>', paper_id="2608.1")
    html = render_digest(one_paper_digest(odd), settings=SETTINGS).html
    assert "https://huggingface.co/papers/2608.1%22%3E%3Cscript%3E" in html
    assert "<script>" not in html


def test_newline_in_a_title_cannot_break_subject_preheader_or_lines() -> None:
    evil = paper(title="Top Paper\r\nBcc: victim@example.org\nX-Injected: 1", upvotes=999)
    rendered = render_digest(one_paper_digest(evil, "trending"), settings=SETTINGS)
    for value in (rendered.subject, rendered.preheader):
        assert "\n" not in value and "\r" not in value
    assert "* Top Paper Bcc: victim@example.org X-Injected: 1" in rendered.text
    assert not any(line.startswith("Bcc:") for line in rendered.text.splitlines())


def test_unsubscribe_url_must_be_https_and_address_is_quoted() -> None:
    plain_http = RenderSettings(unsubscribe_url="http://example.org/u?a={address}")
    assert unsubscribe_for(plain_http, "a@example.org").url is None
    spaced = RenderSettings(unsubscribe_url="https://example.org/u?a={address}")
    assert unsubscribe_for(spaced, "a+b c@example.org").url == (
        "https://example.org/u?a=a%2Bb%20c@example.org"
    )
    assert unsubscribe_for(SETTINGS, None).mailto == (
        "mailto:unsubscribe@papers.example.org?subject=unsubscribe"
    )


# ---- the size budget: see tests/test_render_budget.py -----------------------------------


def test_fixture_papers_are_realistic() -> None:
    papers = fixture_papers(DAY)
    assert len(papers) == 23 and papers[0].title.startswith("DreamX-Phi 1.0")


def test_updates_follow_the_recipients_topics() -> None:
    digest = typical_digest()
    robot = Change(
        "2608.13489", "DreamX-Phi 1.0: Video World Model for Robots", "code_released", "x"
    )
    digest = replace(digest, changes=(*digest.changes, robot))
    html = render_digest(digest, recipient=BOB, settings=SETTINGS).html
    updates = html[html.index("Updates</h2>") :]
    assert "DreamX-Phi 1.0: Video World Model for Robots" in updates
    assert "LLMRouter" not in updates  # not one of Bob's topics
