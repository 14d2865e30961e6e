"""HF HTML pages: the DailyPapers props path, the card fallback, and the 2026 card layout."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

import flows.parse.html as html_parser
from flows.models import PageFormatError, Paper
from flows.parse import parse_page

ROOT = Path(__file__).resolve().parents[1]

FIXTURES = Path(__file__).parent / "fixtures"
DAY_PAGE = FIXTURES / "hf-html" / "papers_2024-08-01.html"
CARDS_2026 = FIXTURES / "parse" / "papers_2026_cards.html"
PROPS = re.compile(r'data-target="DailyPapers"( data-props="([^"]*)")')


def day_page_text() -> str:
    return DAY_PAGE.read_text(encoding="utf-8")


def day_props() -> dict:
    return json.loads(html.unescape(PROPS.search(day_page_text()).group(2)))


def with_props(props: dict | None, page: str | None = None) -> str:
    """The day page with its DailyPapers props replaced (or removed when props is None)."""
    page = page or day_page_text()
    match = PROPS.search(page)
    if props is None:
        return page[: match.start(1)] + page[match.end(1) :]
    escaped = html.escape(json.dumps(props), quote=True)
    return page[: match.start(2)] + escaped + page[match.end(2) :]


def test_day_page_has_13_papers_from_props():
    page = parse_page(DAY_PAGE.read_bytes(), name=DAY_PAGE.name)
    assert (page.fmt, page.digest_date, len(page.papers), page.rejects) == (
        "html",
        date(2024, 8, 1),
        13,
        (),
    )
    assert page.papers[0].paper_id == "2407.21783"
    assert page.papers[0].n_authors == len(page.papers[0].authors) == 533
    assert {paper.digest_date for paper in page.papers} == {date(2024, 8, 1)}


def test_day_page_full_record():
    page = parse_page(DAY_PAGE.read_bytes(), name=DAY_PAGE.name)
    assert page.papers[10] == Paper(
        paper_id="2407.21686",
        title="Expressive Whole-Body 3D Gaussian Avatar",
        abstract=(
            "Facial expression and hand motions are necessary to express our emotions and"
            " interact with the world. Nevertheless, most of the 3D human avatars modeled"
            " from a casually captured video only support body motions without facial "
            "expressions and hand motions.In this work, we present ExAvatar, an "
            "expressive whole-body 3D human avatar learned from a short monocular video. "
            "We design ExAvatar as a combination of the whole-body parametric mesh model "
            "(SMPL-X) and 3D Gaussian Splatting (3DGS). The main challenges are 1) a "
            "limited diversity of facial expressions and poses in the video and 2) the "
            "absence of 3D observations, such as 3D scans and RGBD images. The limited "
            "diversity in the video makes animations with novel facial expressions and "
            "poses non-trivial. In addition, the absence of 3D observations could cause "
            "significant ambiguity in human parts that are not observed in the video, "
            "which can result in noticeable artifacts under novel motions. To address "
            "them, we introduce our hybrid representation of the mesh and 3D Gaussians. "
            "Our hybrid representation treats each 3D Gaussian as a vertex on the surface"
            " with pre-defined connectivity information (i.e., triangle faces) between "
            "them following the mesh topology of SMPL-X. It makes our ExAvatar animatable"
            " with novel facial expressions by driven by the facial expression space of "
            "SMPL-X. In addition, by using connectivity-based regularizers, we "
            "significantly reduce artifacts in novel facial expressions and poses."
        ),
        rank=11,
        arxiv_id="2407.21686",
        authors=("Gyeongsik Moon", "Takaaki Shiratori", "Shunsuke Saito"),
        n_authors=3,
        published_on=date(2024, 7, 31),
        digest_date=date(2024, 8, 1),
        upvotes=7,
        comments=2,
    )


def test_props_items_clean_exactly_like_the_same_items_from_the_api():
    items = day_props()["dailyPapers"]
    from_html = parse_page(DAY_PAGE.read_bytes(), name="html")
    from_api = parse_page(json.dumps(items), name="api", digest_date=date(2024, 8, 1))
    assert from_html.papers == from_api.papers


def test_props_path_never_builds_a_soup(monkeypatch):
    def no_soup(*args, **kwargs):
        raise AssertionError("the props path must not build a BeautifulSoup tree")

    monkeypatch.setattr(html_parser, "_soup", no_soup)
    assert len(parse_page(DAY_PAGE.read_bytes(), name="day").papers) == 13


def test_bs4_is_imported_only_when_a_page_needs_a_soup():
    """bs4 and lxml cost every command 0.1-0.15 s of start-up: the pipeline does not import
    them, and the first page without props does."""
    probe = (
        "import sys; import flows.pipeline; print('bs4' in sys.modules);"
        "from flows.parse.html import read_cards;"
        "list(read_cards('<article></article>', page_date=None)); print('bs4' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "True"]


def test_attribute_order_quotes_and_entities_do_not_matter():
    props = {"date": "2024-08-01", "dailyPapers": day_props()["dailyPapers"][:2]}
    props["dailyPapers"][0]["paper"]["title"] = "Q&A <b>\"quoted\"</b> 'single'"
    escaped = html.escape(json.dumps(props), quote=True)  # &amp; &lt; &gt; &quot; &#x27;
    page = (
        "<!doctype html><html><head><title>Daily Papers - Hugging Face</title></head><body>"
        f'<div data-props=\'{escaped}\' class="x > y" data-target="DailyPapers"></div>'
        "</body></html>"
    )
    papers = parse_page(page, name="reordered").papers
    assert [paper.title for paper in papers] == [
        "Q&A <b>\"quoted\"</b> 'single'",
        "Tora: Trajectory-oriented Diffusion Transformer for Video Generation",
    ]


@pytest.mark.parametrize(
    "escaped",
    [
        "{&quot;t&quot;: &quot;plain&quot;}",
        "&amp;quot; &amp;lt; &amp;amp; &#x27;x&#39; &lt;b&gt;",  # escaped entities stay text
        "&quot;caf&eacute; &nbsp;&#233; &amp;quot;&quot;",  # other entities: html.unescape
        "no entities at all & a bare ampersand",
        "",
    ],
)
def test_unescape_attribute_reads_as_html_unescape(escaped):
    assert html_parser.unescape_attribute(escaped) == html.unescape(escaped)


def test_empty_day_page_is_valid():
    page = parse_page(with_props({"date": "2024-08-03", "dailyPapers": []}), name="weekend")
    assert (page.fmt, page.digest_date, page.papers, page.rejects) == (
        "html",
        date(2024, 8, 3),
        (),
        (),
    )


def test_trending_page_items_keep_their_own_day_or_take_the_requested_one():
    items = [json.loads(json.dumps(entry)) for entry in day_props()["dailyPapers"][:3]]
    items[0]["paper"]["submittedOnDailyAt"] = "2024-07-30T09:00:00.000Z"
    for entry in items:
        entry["isTrending"] = True
    trending = with_props({"dailyPapers": items})
    page = parse_page(trending, name="trending", digest_date=date(2024, 8, 2))
    assert page.digest_date == date(2024, 8, 2)
    assert [paper.digest_date for paper in page.papers] == [
        date(2024, 7, 30),
        date(2024, 8, 2),
        date(2024, 8, 2),
    ]


def test_2026_layout_cards_rendered_twice_fall_back_to_card_parsing():
    page = parse_page(CARDS_2026.read_bytes(), name=CARDS_2026.name)
    assert (page.fmt, page.digest_date) == ("html", date(2026, 8, 14))
    assert [paper.paper_id for paper in page.papers] == [
        "2608.13489",
        "2608.06867",
        "2608.13546",
        "2503.02130",
    ]
    assert [paper.rank for paper in page.papers] == [1, 2, 3, 4]
    assert [(paper.upvotes, paper.github_stars) for paper in page.papers] == [
        (1056, 3290),
        (None, 40100),
        (843, 843),
        (15, None),
    ]
    assert page.papers[1].title == "LLMRouter: Routing Queries Across Language Models"
    assert [(reject.position, reject.reason) for reject in page.rejects] == [(4, "no abstract")]


def test_2026_layout_full_record():
    page = parse_page(CARDS_2026.read_bytes(), name=CARDS_2026.name)
    assert page.papers[0] == Paper(
        paper_id="2608.13489",
        title=("DreamX-Phi 1.0: Action-Conditioned Video World Model for Robotic Manipulation"),
        abstract=(
            "We present DreamX-Phi 1.0, an action-conditioned video world model for "
            "robotic manipulation."
        ),
        rank=1,
        arxiv_id="2608.13489",
        n_authors=10,
        digest_date=date(2026, 8, 14),
        upvotes=1056,
        comments=12,
        github_url="https://github.com/AMAP-ML/DreamX-Phi",
        github_stars=3290,
    )


def test_cards_fallback_on_the_2024_page_finds_all_13_cards():
    # 2024 cards carry no abstract, so each is quarantined rather than loaded half-empty.
    page = parse_page(with_props(None), name="no-props", digest_date=date(2024, 8, 1))
    assert page.papers == ()
    assert [reject.position for reject in page.rejects] == list(range(1, 14))
    assert {reject.reason for reject in page.rejects} == {"no abstract"}
    assert page.rejects[0].excerpt.startswith("Submitted by akhaliq 94 The Llama 3 Herd of Models")


def test_unreadable_props_fall_back_to_cards():
    page = day_page_text()
    match = PROPS.search(page)
    broken = page[: match.start(2)] + "{&quot;dailyPapers&quot;: [" + page[match.end(2) :]
    assert len(parse_page(broken, name="broken").rejects) == 13


def test_page_with_neither_props_nor_cards_says_the_format_changed():
    page = (
        "<!doctype html><html><head><title>Daily Papers - Hugging Face</title></head>"
        "<body><main><div class='papers'>nothing we know</div></main></body></html>"
    )
    with pytest.raises(PageFormatError) as error:
        parse_page(page, name="https://huggingface.co/papers/date/2026-09-01")
    assert str(error.value).startswith("https://huggingface.co/papers/date/2026-09-01: ")
    assert "page format changed" in str(error.value)
    assert "\n" not in str(error.value)


def test_card_with_dangerous_github_link_keeps_no_url():
    card = (
        '<article><h3><a href="/papers/2401.00001">Safe title</a></h3><p>Some abstract text.</p>'
        '<a href="https://github.com/x/y" onclick="">GitHub <span>1.2k</span></a></article>'
        '<article><h3><a href="/papers/2401.00002">Other title</a></h3><p>Other abstract.</p>'
        '<a href="javascript:alert(1)">GitHub 5</a></article>'
    )
    page = parse_page(f"<html><body>{card}</body></html>", name="cards")
    assert [(p.github_url, p.github_stars) for p in page.papers] == [
        ("https://github.com/x/y", 1200),
        (None, None),
    ]


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.999])
def test_a_truncated_page_is_refused_even_when_its_props_are_whole(keep: float) -> None:
    page = DAY_PAGE.read_bytes()
    cut = page[: int(len(page) * keep)]
    with pytest.raises(PageFormatError) as err:
        parse_page(cut, name="cut.html")
    assert str(err.value) == "cut.html: truncated HTML page (no closing </html>)"
