"""Render a `Digest` into the email people read: one context, an HTML and a text template.

The HTML is built for mail clients rather than browsers: table layout, CSS inlined with
css-inline (the `@media` rules for dark mode and narrow screens are kept in a `<style>`),
at most 600 px wide. Gmail clips a message past ~102 KB, so the HTML is kept under
`RenderSettings.max_html_bytes` by giving up detail in steps (see `DETAIL_STEPS`); the first
`full_papers` papers of each section always keep their summary, authors and links. The site
(`flows.site`) builds its pages from the same section views (`section_views`).
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from flows import PROJECT_URL, __version__
from flows.models import Change, Digest, DigestPaper, ForYou, Recipient, RenderedEmail, Topics

log = logging.getLogger("paperdigest.render")

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# A paper's card, rendered once per (paper, detail) and reused in every email that shows it.
HTML_CARD_TEMPLATE = "cards.html.j2"
TEXT_CARD_TEMPLATE = "cards.txt.j2"

# Each step gives up detail so a big day still fits under Gmail's clipping limit. The first
# `full_papers` of each section stay full cards through "capped"; only past the budget do the
# rest become short cards, then a compact numbered list ("list", without a web archive) or
# "N more on the web" ("web", with one), then a capped list. "short-head" and "shrunk" are the
# last resorts of an enormous day: short cards (still summary, authors, links) for the head.
DETAIL_STEPS = ("full", "short", "list", "web", "capped", "short-head", "shrunk")
SHORT_EXCERPT_CHARS = 140
ON_EMPTY_CHOICES = ("skip", "note")

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}(v\d+)?")
_KIND_LABELS = {"trending": "Trending", "new": "New", "late": "Missed earlier"}
_BACKEND_LABELS = {"tf-idf": "a TF-IDF model", "embeddings": "sentence embeddings"}


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """How digests are rendered; the defaults suit the public Hugging Face site."""

    site_url: str = "https://huggingface.co"
    # `{address}` in the URL is replaced by the recipient's URL-quoted address.
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None  # an address, or a full mailto: URI
    max_html_bytes: int = 100_000
    excerpt_chars: int = 280
    on_empty: str = "note"  # "skip" sends nothing on an empty day, "note" a short email
    max_authors: int = 3
    max_keywords: int = 5
    outside_topics_limit: int = 3
    list_name: str = "Daily Papers"
    full_papers: int = 25  # the first papers of each section always keep full detail
    # Root URL of the published archive site (PAPERDIGEST_SITE_URL); "N more on the web" links
    # to its day page. None: the papers past the budget are listed compactly instead.
    archive_url: str | None = None

    def __post_init__(self) -> None:
        if safe_url(self.site_url) is None:
            raise ValueError(f"site_url must be an http(s) URL, got {self.site_url!r}")
        if self.on_empty not in ON_EMPTY_CHOICES:
            raise ValueError(f"on_empty must be one of {ON_EMPTY_CHOICES}, got {self.on_empty!r}")
        if self.max_html_bytes < 10_000:
            raise ValueError("max_html_bytes below 10,000 cannot hold even the frame")
        if self.full_papers < 0:
            raise ValueError("full_papers must not be negative")
        if self.archive_url is not None and safe_url(self.archive_url) is None:
            raise ValueError(f"archive_url must be an http(s) URL, got {self.archive_url!r}")


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Where a recipient can unsubscribe: a one-click https URL and/or a mailto: URI."""

    url: str | None = None
    mailto: str | None = None


@dataclass(frozen=True, slots=True)
class Rendering:
    """A rendered email plus how much detail had to be given up to fit the size budget."""

    email: RenderedEmail
    detail: str  # one of DETAIL_STEPS
    html_bytes: int
    shown: int  # papers shown as cards or in a numbered list
    omitted: int  # papers left out behind an "N more" link
    listed: int = 0  # of the shown, papers in a compact numbered list rather than a card


@dataclass(frozen=True, slots=True)
class _Fit:
    """How much of each section is shown, and how: one step of the size budget."""

    step: str  # one of DETAIL_STEPS
    head: str  # "full" | "short": the card detail of the first `head_n` papers of a section
    head_n: int
    tail: str  # "full" | "short" (cards) | "list" (numbered titles) | "none" (behind a link)
    tail_cap: int | None = None  # "list": how many papers the list shows (None = all)


@dataclass(frozen=True, slots=True)
class _Entry:
    """A paper placed in a section, with its origin and (for topic matches) why it matched."""

    paper: DigestPaper
    kind: str  # "trending" | "new" | "late"
    why: str | None = None


@dataclass(frozen=True, slots=True)
class _Section:
    key: str
    title: str
    intro: str
    entries: tuple[_Entry, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What goes in one recipient's email, before any formatting."""

    sections: tuple[_Section, ...]
    outside: tuple[_Entry, ...]
    changes: tuple[Change, ...]
    n_new: int
    n_trending: int
    n_late: int
    n_matches: int | None  # None when the recipient has no include topics
    top: DigestPaper | None
    n_for_you: int | None = None  # set when the reader's library ranked the digest


# ---------------------------------------------------------------------------------------
# Public API


def render_digest(
    digest: Digest,
    *,
    recipient: Recipient | None = None,
    settings: RenderSettings | None = None,
    for_you: ForYou | None = None,
) -> RenderedEmail:
    """Render the digest for one recipient (or for everyone when recipient is None)."""
    return render_fitted(digest, recipient=recipient, settings=settings, for_you=for_you).email


def render_fitted(
    digest: Digest,
    *,
    recipient: Recipient | None = None,
    settings: RenderSettings | None = None,
    for_you: ForYou | None = None,
) -> Rendering:
    """Render the digest at the most detailed step whose HTML fits `max_html_bytes`.

    `for_you` (flows.ranking) puts the reader's top picks first, each with the library paper
    it is closest to; without it the email is exactly the unranked one.
    """
    settings = settings or RenderSettings()
    plan = _plan(digest, recipient, settings)
    if for_you is not None:
        plan = _plan_for_you(digest, plan, for_you, recipient, settings)
    n = settings.full_papers
    tail_step = (
        _Fit("web", "full", n, "none") if settings.archive_url else _Fit("list", "full", n, "list")
    )
    for fit in (_Fit("full", "full", n, "full"), _Fit("short", "full", n, "short"), tail_step):
        rendering = _render_at(digest, plan, recipient, settings, fit)
        if rendering.html_bytes <= settings.max_html_bytes:
            return _logged(rendering, digest)
    if not settings.archive_url:
        capped = _largest_fitting(
            lambda cap: _render_at(
                digest, plan, recipient, settings, replace(tail_step, step="capped", tail_cap=cap)
            ),
            settings,
            _longest(plan),
        )
        if capped is not None:
            return _logged(capped, digest)
    short_head = _render_at(
        digest, plan, recipient, settings, _Fit("short-head", "short", n, "none")
    )
    if short_head.html_bytes <= settings.max_html_bytes:
        return _logged(short_head, digest)
    return _logged(_render_shrunk(digest, plan, recipient, settings), digest)


def section_views(digest: Digest, settings: RenderSettings | None = None) -> list[dict[str, Any]]:
    """The digest's sections (trending, new, missed earlier) as the templates show them, every
    paper a full card: what the site's day pages and feeds show, shared with the email."""
    settings = settings or RenderSettings()
    plan = _plan(digest, None, settings)
    fit = _Fit("full", "full", settings.full_papers, "full")
    day_url = _hf_day_url(digest, settings)
    views = [_section_view(s, settings, fit, day_url) for s in plan.sections]
    # The cards are cached and shared by every email; callers get copies they may change.
    return [v | {"papers": [dict(c) for c in v["papers"]]} for v in views]


def change_views(digest: Digest, settings: RenderSettings | None = None) -> list[dict[str, Any]]:
    """The digest's updates (code released, stars jumps) as the templates show them."""
    settings = settings or RenderSettings()
    return [_change_view(c, settings) for c in digest.changes]


def paper_view(paper: DigestPaper, settings: RenderSettings | None = None) -> dict[str, Any]:
    """One paper as a full card shows it (title, links, authors, summary, keywords)."""
    return dict(_paper_view(_Entry(paper, "new"), settings or RenderSettings(), "full"))


def archive_day_url(archive_url: str, day: date) -> str:
    """The published site's page of a digest date (see flows.site for the layout)."""
    return f"{archive_url.rstrip('/')}/days/{day.isoformat()}.html"


def match_topics(paper: DigestPaper, topics: Topics) -> str | None:
    """Say why the paper matches the recipient's include topics, or None when it does not.

    A keyword matches case-insensitively at the start of a word ("agent" matches "agents"
    and "agentic", "art" does not match "start"), in the title, keywords, authors or abstract
    (in that order, the first hit is the reason). Any exclude keyword anywhere wins.
    """
    if not topics.include or excluded_by(paper, topics):
        return None
    for keyword in topics.include:
        where = _first_field_matching(paper, keyword)
        if where:
            return f"matched '{keyword.strip()}' in {where}"
    return None


def excluded_by(paper: DigestPaper, topics: Topics) -> str | None:
    """Say which exclude keyword hides the paper, or None when none does."""
    for keyword in topics.exclude:
        where = _first_field_matching(paper, keyword)
        if where:
            return f"excluded by '{keyword.strip()}' in {where}"
    return None


def unsubscribe_for(settings: RenderSettings, address: str | None) -> Unsubscribe:
    """Resolve the unsubscribe URL and mailto: URI for one recipient (only https URLs)."""
    url = settings.unsubscribe_url
    if url and "{address}" in url:  # a per-recipient URL means nothing without a recipient
        url = url.replace("{address}", quote(address, safe="@")) if address else None
    url = url if url and urlsplit(url).scheme == "https" and safe_url(url) else None
    mailto = settings.unsubscribe_mailto
    if mailto and not mailto.startswith("mailto:"):
        mailto = f"mailto:{mailto}?subject=unsubscribe"
    if mailto and ("\r" in mailto or "\n" in mailto or " " in mailto):
        mailto = None  # a mailto with whitespace would break the List-Unsubscribe header
    return Unsubscribe(url=url, mailto=mailto)


def safe_url(url: str | None) -> str | None:
    """Return the URL when it is a plain http(s) URL with a host, else None (never a link)."""
    if not url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def write_preview(rendered: RenderedEmail, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write the HTML and text of a rendered email as `<stem>.html` and `<stem>.txt`."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", stem) or ".." in stem:
        raise ValueError(f"preview stem must be a plain file name, got {stem!r}")
    directory.mkdir(parents=True, exist_ok=True)
    html_path, text_path = directory / f"{stem}.html", directory / f"{stem}.txt"
    html_path.write_text(rendered.html, encoding="utf-8")
    text_path.write_text(rendered.text, encoding="utf-8")
    return html_path, text_path


def date_label(day: date, *, year: bool = False) -> str:
    """Format a date like "Tue Nov 3" (or "Tue Nov 3, 2026"), whatever the locale."""
    label = f"{_WEEKDAYS[day.weekday()]} {_MONTHS[day.month - 1]} {day.day}"
    return f"{label}, {day.year}" if year else label


def clear_caches() -> None:
    """Forget cached topic matches, paper views and cards (a benchmark starts cold)."""
    for cached in (_first_field_matching, _searchable, _paper_view, _card, _wrap_lines):
        cached.cache_clear()


def template_environment() -> Environment:
    """The Jinja environment: autoescape for .html/.html.j2 templates, StrictUndefined."""
    return _environment()


# ---------------------------------------------------------------------------------------
# Planning: which papers go where


def _plan(digest: Digest, recipient: Recipient | None, settings: RenderSettings) -> _Plan:
    topics = recipient.topics if recipient else Topics()
    entries = _unique_entries(digest)
    if topics.include:
        sections, outside = _topic_sections(entries, topics, settings)
        n_matches: int | None = len(sections[0].entries)
    else:
        sections, outside = _plain_sections(entries, topics, settings)
        n_matches = None
    shown = [e for s in sections for e in s.entries]
    top = max(shown, key=_popularity, default=None)
    return _Plan(
        sections=tuple(s for s in sections if s.entries or s.key == "matches"),
        outside=outside,
        changes=_changes_for(digest.changes, topics),
        n_new=sum(e.kind == "new" for e in shown),
        n_trending=sum(e.kind == "trending" for e in shown),
        n_late=sum(e.kind == "late" for e in shown),
        n_matches=n_matches,
        top=top.paper if top else None,
    )


def _unique_entries(digest: Digest) -> list[_Entry]:
    """Trending, new and late papers, each paper once (trending wins, then new)."""
    seen: set[str] = set()
    entries: list[_Entry] = []
    for kind, papers in (("trending", digest.trending), ("new", digest.new), ("late", digest.late)):
        for paper in papers:
            if paper.paper_id not in seen:
                seen.add(paper.paper_id)
                entries.append(_Entry(paper, kind))
    return entries


def _plain_sections(
    entries: list[_Entry], topics: Topics, settings: RenderSettings
) -> tuple[list[_Section], tuple[_Entry, ...]]:
    """Trending / New / Missed earlier, minus excluded papers (shown as "outside")."""
    excluded = {e.paper.paper_id for e in entries if excluded_by(e.paper, topics)}
    kept = [e for e in entries if e.paper.paper_id not in excluded]
    hidden = [e for e in entries if e.kind == "trending" and e.paper.paper_id in excluded]
    sections = [
        _Section(
            "trending", "Trending", "Climbing fastest on Hugging Face.", _of(kept, "trending")
        ),
        _Section("new", "New", "First seen in this digest.", _of(kept, "new")),
        _Section(
            "late", "Missed earlier", "Added to earlier days after we looked.", _of(kept, "late")
        ),
    ]
    return sections, tuple(hidden[: settings.outside_topics_limit])


def _topic_sections(
    entries: list[_Entry], topics: Topics, settings: RenderSettings
) -> tuple[list[_Section], tuple[_Entry, ...]]:
    """One "Matches for your topics" section, plus the top trending papers it left out."""
    matches: list[_Entry] = []
    for entry in entries:
        why = match_topics(entry.paper, topics)
        if why:
            matches.append(replace(entry, why=why))
    matched_ids = {e.paper.paper_id for e in matches}
    outside = [e for e in entries if e.kind == "trending" and e.paper.paper_id not in matched_ids]
    intro = "Your topics: " + ", ".join(k.strip() for k in topics.include)
    if topics.exclude:
        intro += " · not: " + ", ".join(k.strip() for k in topics.exclude)
    section = _Section("matches", "Matches for your topics", intro + ".", tuple(matches))
    return [section], tuple(outside[: settings.outside_topics_limit])


def _plan_for_you(
    digest: Digest,
    plan: _Plan,
    for_you: ForYou,
    recipient: Recipient | None,
    settings: RenderSettings,
) -> _Plan:
    """ "For you" first (the ranked picks, each close to a library paper), then the trending
    papers the ranking left out in their own short section; the rest is a link away."""
    topics = recipient.topics if recipient else Topics()
    entries = {e.paper.paper_id: e for e in _unique_entries(digest)}
    picks = [
        replace(
            entries[p.paper_id], why=f"close to: {_one_line(p.close_to)}" if p.close_to else None
        )
        for p in for_you.picks
        if p.paper_id in entries and not excluded_by(entries[p.paper_id].paper, topics)
    ]
    if not picks:
        return plan
    picked = {e.paper.paper_id for e in picks}
    outside = [
        e
        for e in entries.values()
        if e.kind == "trending"
        and e.paper.paper_id not in picked
        and not excluded_by(e.paper, topics)
    ]
    model = _BACKEND_LABELS.get(for_you.backend, for_you.backend)
    intro = (
        f"The {len(picks)} of today's {len(entries)} papers closest to the "
        f"{_plural(for_you.n_library, 'paper')} of your library ({model}); "
        "under each, the library paper it is closest to."
    )
    section = _Section("for_you", "For you", intro, tuple(picks))
    return replace(
        plan,
        sections=(section,),
        outside=tuple(outside[: settings.outside_topics_limit]),
        n_new=sum(e.kind == "new" for e in picks),
        n_trending=sum(e.kind == "trending" for e in picks),
        n_late=sum(e.kind == "late" for e in picks),
        n_matches=None,
        top=picks[0].paper,
        n_for_you=len(picks),
    )


def _of(entries: list[_Entry], kind: str) -> tuple[_Entry, ...]:
    return tuple(e for e in entries if e.kind == kind)


def _popularity(entry: _Entry) -> tuple[int, int]:
    return (entry.paper.upvote_gain or 0, entry.paper.upvotes or 0)


def _changes_for(changes: tuple[Change, ...], topics: Topics) -> tuple[Change, ...]:
    """Updates the recipient cares about: none excluded, and matching when topics are set."""
    return tuple(
        c
        for c in changes
        if not any(_keyword_in(k, c.title) for k in topics.exclude)
        and (not topics.include or any(_keyword_in(k, c.title) for k in topics.include))
    )


@lru_cache(maxsize=16384)
def _first_field_matching(paper: DigestPaper, keyword: str) -> str | None:
    # Cached: a thousand readers share a few dozen papers and a vocabulary of topics.
    pattern = _keyword_pattern(keyword)
    if pattern is None:
        return None
    text, field_ends, ascii_lower = _searchable(paper)
    # All-ASCII text and keyword: case-insensitive means ASCII case, so the first word must
    # appear as a plain substring. Most pairs fail here, at memchr speed.
    ascii_only = ascii_lower is not None and keyword.isascii()
    if ascii_only and keyword.split()[0].lower() not in (ascii_lower or ""):
        return None
    found = pattern.search(text)  # the leftmost hit is in the first field that has one
    if found is None:
        return None
    return next(name for end, name in field_ends if found.start() < end)


@lru_cache(maxsize=1024)
def _searchable(paper: DigestPaper) -> tuple[str, tuple[tuple[int, str], ...], str | None]:
    """The paper's title, keywords, authors and abstract in one string, where each ends, and
    the string in lower case when it is all ASCII (else None).

    Texts are joined by NUL: not a word character (a start-of-word match after it still
    counts) and not whitespace or a hyphen (no phrase can match across two texts).
    """
    fields = (
        ("title", (paper.title,)),
        ("keywords", paper.ai_keywords),
        ("authors", paper.authors),
        ("abstract", (paper.abstract, paper.ai_summary or "")),
    )
    text, field_ends = "", []
    for name, texts in fields:
        text += "\0" + "\0".join(texts)
        field_ends.append((len(text), name))
    return text, tuple(field_ends), text.lower() if text.isascii() else None


def _keyword_in(keyword: str, text: str) -> bool:
    pattern = _keyword_pattern(keyword)
    return bool(pattern and pattern.search(text))


@lru_cache(maxsize=512)
def _keyword_pattern(keyword: str) -> re.Pattern[str] | None:
    words = keyword.split()
    if not words:
        return None
    # Start-of-word match; the words of a phrase may be split by any whitespace or hyphen.
    body = r"[\s\-]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!\w){body}", re.IGNORECASE)


# ---------------------------------------------------------------------------------------
# Rendering at a detail step


def _longest(plan: _Plan) -> int:
    return max((len(s.entries) for s in plan.sections), default=0)


def _largest_fitting(
    attempt: Callable[[int], Rendering], settings: RenderSettings, high: int
) -> Rendering | None:
    """The rendering with the largest count that fits the budget (binary search from 0)."""
    best = attempt(0)
    if best.html_bytes > settings.max_html_bytes:
        return None
    low = 1
    while low <= high:
        count = (low + high) // 2
        rendering = attempt(count)
        if rendering.html_bytes <= settings.max_html_bytes:
            best, low = rendering, count + 1
        else:
            high = count - 1
    return best


def _render_shrunk(
    digest: Digest, plan: _Plan, recipient: Recipient | None, settings: RenderSettings
) -> Rendering:
    """The last resort: short cards for as many of each section's first papers as fit."""

    def attempt(n: int) -> Rendering:
        return _render_at(digest, plan, recipient, settings, _Fit("shrunk", "short", n, "none"))

    best = _largest_fitting(attempt, settings, min(settings.full_papers, _longest(plan)))
    if best is None:
        best = attempt(0)
        log.warning("digest HTML is %d bytes even with no papers listed", best.html_bytes)
    else:
        log.warning("digest too large: only %d papers per section kept their cards", best.shown)
    return best


def _render_at(
    digest: Digest,
    plan: _Plan,
    recipient: Recipient | None,
    settings: RenderSettings,
    fit: _Fit,
) -> Rendering:
    context = _context(digest, plan, recipient, settings, fit)
    html = _inline_css(_template(HTML_TEMPLATE).render(context))
    text = _template(TEXT_TEMPLATE).render(context)
    email = RenderedEmail(
        subject=context["subject"], preheader=context["preheader"], text=text, html=html
    )
    listed = sum(len(s["listed"]) for s in context["sections"])
    shown = sum(len(s["papers"]) for s in context["sections"]) + listed
    omitted = sum(s["more"] for s in context["sections"])
    return Rendering(email, fit.step, len(html.encode("utf-8")), shown, omitted, listed)


def _logged(rendering: Rendering, digest: Digest) -> Rendering:
    log.info(
        "rendered digest %s: %d bytes of HTML at detail %r "
        "(%d papers shown, %d of them listed, %d behind a link)",
        digest.digest_date,
        rendering.html_bytes,
        rendering.detail,
        rendering.shown,
        rendering.listed,
        rendering.omitted,
    )
    return rendering


def _inline_css(html: str) -> str:
    html = _inliner().inline(html)
    # css-inline puts the kept @media rules first in <head>; the charset must stay within
    # the first 1024 bytes or a browser opening a preview file may guess another encoding.
    html = html.replace('<meta charset="utf-8">', "", 1).replace(
        "<head>", '<head><meta charset="utf-8">', 1
    )
    # Indentation is dead weight in a size-budgeted email; newlines already separate tokens.
    return re.sub(r"\n[ \t]+", "\n", html)


# ---------------------------------------------------------------------------------------
# The template context (shared by the HTML and the text template)


def _context(
    digest: Digest,
    plan: _Plan,
    recipient: Recipient | None,
    settings: RenderSettings,
    fit: _Fit,
) -> dict[str, Any]:
    address = recipient.address if recipient else None
    weekly = bool(recipient and recipient.cadence == "weekly")
    day_url = _hf_day_url(digest, settings)
    return {
        "subject": _subject(digest, plan, settings, weekly),
        "preheader": _preheader(plan, digest),
        "list_name": "Weekly Papers" if weekly else settings.list_name,
        "date_label": _heading_date(digest, weekly),
        "summary": _summary(plan),
        "detail": fit.step,
        "sections": [_section_view(s, settings, fit, day_url, digest) for s in plan.sections],
        "outside": [_paper_view(e, settings, "titles") for e in plan.outside],
        "outside_title": _outside_title(plan),
        "changes": [_change_view(c, settings) for c in plan.changes],
        "is_empty": digest.is_empty,
        "no_matches": plan.n_matches == 0,
        "data_through": date_label(digest.data_through, year=True),
        "gaps": [date_label(d, year=True) for d in sorted(digest.gaps)],
        "day_url": day_url,
        "site_url": settings.site_url,
        "address": address,
        "cadence": recipient.cadence if recipient else "daily",
        "unsubscribe": unsubscribe_for(settings, address),
        "version": __version__,
        "project_url": PROJECT_URL,
    }


def _subject(digest: Digest, plan: _Plan, settings: RenderSettings, weekly: bool) -> str:
    name = "Weekly Papers" if weekly else settings.list_name
    day = f"week to {date_label(digest.digest_date)}" if weekly else date_label(digest.digest_date)
    return _one_line(f"{name} · {day} · {_counts(plan) or 'nothing new'}")


def _counts(plan: _Plan) -> str:
    parts = []
    if plan.n_for_you is not None:
        parts.append(f"{plan.n_for_you} for you")
        parts.append(f"{len(plan.outside)} trending elsewhere" if plan.outside else "")
    elif plan.n_matches is not None:
        parts.append(f"{plan.n_matches} for your topics")
        parts.append(f"{len(plan.outside)} trending elsewhere" if plan.outside else "")
    else:
        parts.append(f"{plan.n_new} new" if plan.n_new else "")
        parts.append(f"{plan.n_trending} trending" if plan.n_trending else "")
        parts.append(f"{plan.n_late} missed earlier" if plan.n_late else "")
    if not any(parts) and plan.changes:
        parts.append(_plural(len(plan.changes), "update"))
    return ", ".join(p for p in parts if p)


def _summary(plan: _Plan) -> str:
    counts = _counts(plan)
    return counts[:1].upper() + counts[1:] if counts else "Nothing new today"


def _preheader(plan: _Plan, digest: Digest) -> str:
    if digest.is_empty:
        return "Nothing new on Hugging Face Daily Papers since the last digest."
    if plan.top is None:
        lead = "No matches for your topics today"
        if plan.outside:
            lead += f"; trending: {plan.outside[0].paper.title}"
        return _one_line(_clip(lead, 140))
    votes = f" ({plan.top.upvotes:,} upvotes)" if plan.top.upvotes else ""
    lead = "Top for you" if plan.n_for_you else "Top"
    return _one_line(f"{lead}: {_clip(_one_line(plan.top.title), 100)}{votes}")


def _heading_date(digest: Digest, weekly: bool) -> str:
    label = date_label(digest.digest_date, year=True)
    return f"Week to {label}" if weekly else label


def _outside_title(plan: _Plan) -> str:
    if plan.n_for_you is not None:
        return "Trending outside your interests"
    if plan.n_matches is None:
        return "Trending, hidden by your filters"
    return "Trending outside your topics"


def _hf_day_url(digest: Digest, settings: RenderSettings) -> str:
    return f"{settings.site_url.rstrip('/')}/papers/date/{digest.digest_date.isoformat()}"


def _section_view(
    section: _Section,
    settings: RenderSettings,
    fit: _Fit,
    day_url: str,
    digest: Digest | None = None,
) -> dict[str, Any]:
    head, rest = section.entries[: fit.head_n], section.entries[fit.head_n :]
    cards = [_paper_view(e, settings, fit.head) for e in head]
    listed: list[dict[str, Any]] = []
    if fit.tail in ("full", "short"):
        cards += [_paper_view(e, settings, fit.tail) for e in rest]
        rest = ()
    elif fit.tail == "list":
        shown = rest if fit.tail_cap is None else rest[: fit.tail_cap]
        listed = [_paper_view(e, settings, "titles") for e in shown]
        rest = rest[len(shown) :]
    on_web = bool(settings.archive_url and digest is not None)
    return {
        "key": section.key,
        "title": section.title,
        "intro": section.intro,
        "papers": cards,
        "listed": listed,
        "list_start": len(cards) + 1,
        "more": len(rest),
        "more_url": archive_day_url(settings.archive_url, digest.digest_date)
        if on_web and settings.archive_url and digest is not None
        else day_url,
        "more_where": "on the web" if on_web else "on Hugging Face",
        "show_kind": section.key in ("matches", "for_you"),
    }


@lru_cache(maxsize=2048)
def _paper_view(entry: _Entry, settings: RenderSettings, detail: str) -> dict[str, Any]:
    # Cached (the same card in many readers' emails); the templates only read the dict.
    paper = entry.paper
    excerpt_chars = {"full": settings.excerpt_chars, "short": SHORT_EXCERPT_CHARS}.get(detail, 0)
    keywords = {"full": settings.max_keywords, "short": 3}.get(detail, 0)
    return {
        "paper_id": paper.paper_id,
        "title": _one_line(paper.title) or paper.paper_id,
        "url": _paper_url(paper, settings),
        "arxiv_url": _arxiv_url(paper.arxiv_id),
        "authors": _authors_line(paper, settings.max_authors) if excerpt_chars else "",
        "organization": _one_line(paper.organization or "") if excerpt_chars else "",
        "excerpt": _clip(_one_line(paper.ai_summary or paper.abstract), excerpt_chars),
        "upvotes": paper.upvotes,
        "gain": paper.upvote_gain or 0,
        "comments": paper.comments or 0,
        "github_url": safe_url(paper.github_url),
        "github_stars": paper.github_stars,
        "project_url": safe_url(paper.project_url),
        "keywords": [_clip(_one_line(k), 32) for k in paper.ai_keywords[:keywords]],
        "reason": _one_line(paper.reason),
        "why": entry.why or "",
        "kind": entry.kind,
        "kind_label": _KIND_LABELS[entry.kind],
        "from_date": date_label(paper.digest_date)
        if entry.kind == "late" and paper.digest_date
        else "",
        "card_key": (entry, settings, detail),  # what the card cache knows this view by
    }


def _change_view(change: Change, settings: RenderSettings) -> dict[str, Any]:
    url = None
    if _ARXIV_ID.fullmatch(change.paper_id):
        url = f"{settings.site_url.rstrip('/')}/papers/{quote(change.paper_id)}"
    label = {"code_released": "Code released", "stars_jump": "Stars jump"}.get(change.kind)
    return {
        "title": _one_line(change.title),
        "url": url,
        "label": label or _one_line(change.kind.replace("_", " ")).capitalize(),
        "detail": _one_line(change.detail),
    }


def _paper_url(paper: DigestPaper, settings: RenderSettings) -> str | None:
    if not paper.arxiv_id:
        return None
    return f"{settings.site_url.rstrip('/')}/papers/{quote(paper.arxiv_id, safe='')}"


def _arxiv_url(arxiv_id: str | None) -> str | None:
    return f"https://arxiv.org/abs/{quote(arxiv_id, safe='')}" if arxiv_id else None


def _authors_line(paper: DigestPaper, limit: int) -> str:
    names = [_one_line(a) for a in paper.authors if a.strip()]
    if not names:
        return ""
    total = max(paper.n_authors or 0, len(names))
    shown = ", ".join(names[:limit])
    return f"{shown} et al." if total > limit else shown


def _clip(text: str, limit: int) -> str:
    """Cut at a word boundary near `limit` characters, with an ellipsis when cut."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def _one_line(text: str) -> str:
    """Collapse all whitespace, newlines included, so no text can break a line or header."""
    return " ".join(text.split())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------------------
# Jinja


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(keep_at_rules=True, minify_css=True, load_remote_stylesheets=False)


@lru_cache(maxsize=8)
def _template(name: str) -> Template:
    # Compiled once: get_template would stat the file on every call to check for changes.
    return _environment().get_template(name)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # select_autoescape(["html"]) would not cover "digest.html.j2": name the .j2 suffix too.
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = _thousands
    env.filters["signed"] = _signed
    env.filters["wrap_lines"] = _wrap_lines
    env.globals["paper_card"] = _paper_card
    env.globals["paper_lines"] = _paper_lines
    return env


def _paper_card(view: dict[str, Any], show_kind: bool) -> str:
    """The HTML card of a paper view (the `paper_card` macro of cards.html.j2), cached."""
    return _card(HTML_CARD_TEMPLATE, "paper_card", view["card_key"], bool(show_kind))


def _paper_lines(view: dict[str, Any], show_kind: bool) -> str:
    """The text lines of a paper view (the `paper_lines` macro of cards.txt.j2), cached."""
    return _card(TEXT_CARD_TEMPLATE, "paper_lines", view["card_key"], bool(show_kind))


@lru_cache(maxsize=4096)
def _card(template: str, macro: str, card_key: tuple[Any, ...], show_kind: bool) -> str:
    # Rendered from the key, not the view: the view is a dict (unhashable), the key is not.
    view = _paper_view(*card_key)
    return getattr(_template(template).module, macro)(view, show_kind)


def _thousands(value: int | None) -> str:
    return f"{value:,}" if value is not None else ""


def _signed(value: int) -> str:
    return f"+{value:,}" if value >= 0 else f"−{-value:,}"


@lru_cache(maxsize=8192)
def _wrap_lines(text: str, width: int = 72, indent: str = "") -> str:
    return textwrap.fill(
        text, width=width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
    )
