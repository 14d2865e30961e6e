"""HF HTML pages (/papers, /papers/date/…, week, month, trending).

Primary path: the element with data-target="DailyPapers", whose data-props attribute is
HTML-escaped JSON with the API's item shape. It is found with a regex over the raw text, so
a 1.5 MB page never becomes a tree. Only when the props are missing are the <article> cards
parsed (with a SoupStrainer, so only the cards are built).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from flows.capture import stated_time
from flows.models import PageFormatError, ParsedPage, Reject
from flows.parse.api import entry_from_item, item_times
from flows.parse.clean import RawEntry, as_date, assemble_page, clean_text

if TYPE_CHECKING:
    from bs4 import BeautifulSoup
    from bs4.element import Tag

_PROPS_MARKER = re.compile(r"""\sdata-target\s*=\s*(["']?)DailyPapers\1[\s/>]""")
# A start tag whose quoted attribute values may contain ">".
_START_TAG = re.compile(r"""<[A-Za-z][^\s/>]*(?:[^>"']|"[^"]*"|'[^']*')*>""")
_PROPS_ATTR = re.compile(r"""\sdata-props\s*=\s*(?:"([^"]*)"|'([^']*)')""")
# The entities an attribute's escaping writes, besides &quot; (by far the most common).
_BASIC_ENTITIES = {"&#39;": "'", "&#x27;": "'", "&lt;": "<", "&gt;": ">", "&amp;": "&"}
_BASIC_ENTITY = re.compile("|".join(_BASIC_ENTITIES))
_OTHER_ENTITY = re.compile(r"&(?!(?:#39|#x27|lt|gt|amp);)")
_CARD_MARKER = re.compile(r"""<article\b[^>]*>[\s\S]{0,4000}?href=["']/papers/""", re.IGNORECASE)
_TITLE = re.compile(r"<title\b[^>]*>([^<]{0,500})</title>", re.IGNORECASE)
# Only the page's own URL (og:url or canonical) names its day; body links name other days.
_DAY_URL = re.compile(
    r"""(?:property=["']og:url["']\s+content|rel=["']canonical["']\s+href)"""
    r"""=["'][^"']*/papers/date/(\d{4}-\d{2}-\d{2})"""
)
_AUTHOR_COUNT = re.compile(r"(\d[\d,]*)\s+authors?\b")
_DISPLAYED_COUNT = re.compile(r"\d[\d,.]*\s*[kKmM]?")
_PAPER_HREF = re.compile(r"/papers/([^/?#\s]+)")
_CLOSING_HTML = re.compile(r"</html\s*>", re.IGNORECASE)
_TAIL_CHARS = 4096  # where a complete page's </html> must be (only trailing scripts follow)


def is_papers_html(text: str) -> bool:
    """True for an HF papers page: DailyPapers props, paper cards, or an HF "Papers" title."""
    if _PROPS_MARKER.search(text) or _CARD_MARKER.search(text):
        return True
    title = (page_title(text) or "").lower()
    return "papers" in title and "hugging face" in title


def page_title(text: str) -> str | None:
    """The page's <title> text, unescaped and on one line."""
    match = _TITLE.search(text)
    return clean_text(html.unescape(match.group(1))) if match else None


def parse_html(text: str, *, name: str, digest_date: date | None) -> ParsedPage:
    """Parse an HF papers page; raise PageFormatError when neither path finds papers."""
    if not _CLOSING_HTML.search(text[-_TAIL_CHARS:]):
        # A cut download can still hold whole props or cards: refuse it rather than load a
        # partial day as if it were the whole list.
        raise PageFormatError(name, "truncated HTML page (no closing </html>)")
    props = find_props(text) or {}
    papers = props.get("dailyPapers")
    if isinstance(papers, list):
        return _parse_props(props, papers, digest_date)
    page_date = _url_date(text) or digest_date
    entries = list(read_cards(text, page_date=page_date))
    if not entries:
        raise PageFormatError(
            name, "page format changed: no DailyPapers props and no paper cards found"
        )
    return assemble_page("html", page_date, entries)


def find_props(text: str) -> dict[str, object] | None:
    """The decoded data-props of the DailyPapers element, or None if absent or unreadable."""
    raw = _props_attribute(text)
    if raw is None:
        return None
    try:
        props = json.loads(unescape_attribute(raw), parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
    return props if isinstance(props, dict) else None


def unescape_attribute(value: str) -> str:
    """Undo HTML attribute escaping; plain replaces when only the basic entities occur."""
    # html.unescape costs ~0.2 s on a 1.5 MB props blob of &quot;; replace() is ~100x faster.
    # &quot; goes first and on its own: no other entity is left in most props, and a "&" of
    # the text is always escaped ("&amp;quot;"), so the &quot; found are all entities.
    value = value.replace("&quot;", '"')
    if "&" not in value:
        return value
    if _OTHER_ENTITY.search(value):
        return html.unescape(value)
    # one pass, so "&amp;lt;" stays the text "&lt;"
    return _BASIC_ENTITY.sub(lambda entity: _BASIC_ENTITIES[entity.group(0)], value)


def _props_attribute(text: str) -> str | None:
    marker = _PROPS_MARKER.search(text)
    if marker is None:
        return None
    tag_start = text.rfind("<", 0, marker.start())
    tag = _START_TAG.match(text, tag_start) if tag_start >= 0 else None
    if tag is None or tag.end() <= marker.start():
        return _props_attribute_via_soup(text)
    attribute = _PROPS_ATTR.search(tag.group(0))
    if attribute is None:
        return None
    return attribute.group(1) if attribute.group(1) is not None else attribute.group(2)


def _props_attribute_via_soup(text: str) -> str | None:
    # Odd markup before the element (a stray "<" in an attribute): let lxml tokenise it.
    from bs4.element import Tag

    only_props = {"attrs": {"data-target": "DailyPapers"}}
    element = _soup(text, only_props).find(attrs={"data-target": "DailyPapers"})
    value = element.get("data-props") if isinstance(element, Tag) else None
    return value if isinstance(value, str) else None


def _parse_props(
    props: dict[str, object], items: list[object], digest_date: date | None
) -> ParsedPage:
    # A day page names its day; week, month and trending pages leave each item its own.
    page_day = as_date(props.get("date")) or as_date(props.get("dateString"))
    entries = []
    for position, item in enumerate(items, 1):
        entry = entry_from_item(item, position, page_day)
        if isinstance(entry, RawEntry) and entry.digest_date is None:
            entry = replace(entry, digest_date=digest_date)
        entries.append(entry)
    page = assemble_page("html", page_day or digest_date, entries)
    return replace(page, stated_at=stated_time([props.get("date"), *map(item_times, items)]))


def _url_date(text: str) -> date | None:
    match = _DAY_URL.search(text)
    return as_date(match.group(1)) if match else None


def read_cards(text: str, *, page_date: date | None) -> Iterator[RawEntry | Reject]:
    """Entries from the <article> cards, once per paper id (the 2026 layout renders two)."""
    cards = _soup(text, {"name": "article"})
    seen: set[str] = set()
    position = 0
    for card in cards.find_all("article"):
        link = card.select_one('h3 a[href^="/papers/"]')
        paper_id = _card_paper_id(link)
        if link is None or paper_id is None or paper_id in seen:
            continue
        seen.add(paper_id)
        position += 1
        yield _card_entry(card, link, paper_id, position, page_date)


def _soup(text: str, only: dict[str, object]) -> BeautifulSoup:
    """The elements of `text` that `only` (SoupStrainer's arguments) names, as a tree.

    bs4 and lxml are imported here, on first use: they are 0.1-0.15 s of every command's
    start-up, and a page with props (every API page; HTML pages of the current layouts)
    never needs them.
    """
    from bs4 import BeautifulSoup, SoupStrainer

    return BeautifulSoup(text, "lxml", parse_only=SoupStrainer(**only))


def _card_paper_id(link: Tag | None) -> str | None:
    href = link.get("href") if link is not None else None
    match = _PAPER_HREF.match(href) if isinstance(href, str) else None
    return match.group(1) if match else None


def _card_entry(
    card: Tag, link: Tag, paper_id: str, position: int, page_date: date | None
) -> RawEntry:
    card_text = card.get_text(" ", strip=True)
    github = card.select_one('a[href^="https://github.com/"], a[href^="http://github.com/"]')
    return RawEntry(
        position=position,
        source=card_text,
        title=link.get_text(" ", strip=True),
        abstract=_text_of(card.select_one("p")),
        arxiv_id=paper_id,
        n_authors=_first_group(_AUTHOR_COUNT, card_text),
        digest_date=page_date,
        upvotes=_text_of(card.select_one(".leading-none")),
        comments=_displayed_count(card.select_one('a[href$="#community"]')),
        github_url=github.get("href") if github else None,
        github_stars=_displayed_count(github),
    )


def _text_of(element: Tag | None) -> str | None:
    return element.get_text(" ", strip=True) if element is not None else None


def _first_group(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _displayed_count(element: Tag | None) -> str | None:
    """The last number shown in an element ("GitHub 3.29k" gives "3.29k")."""
    counts = _DISPLAYED_COUNT.findall(_text_of(element) or "")
    return counts[-1] if counts else None
