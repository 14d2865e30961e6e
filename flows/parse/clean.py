"""The one cleaning layer under every format: decoding, text, ids, counts, URLs, dates, entries.

Format parsers only *find* values (where a title lives in JSON, HTML or a text page); every
value goes through the coercions here, so all formats clean the same way and no malformed
value can raise: a coercion returns None (or an empty tuple) for anything it cannot use.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit

from flows.models import Paper, ParsedPage, Reject

TITLE_MAX_CHARS = 1000
ABSTRACT_MAX_CHARS = 20_000
EXCERPT_MAX_CHARS = 300
# Counts beyond this are corrupt data, and would overflow a warehouse BIGINT anyway.
COUNT_MAX = 2**53

# Zero-width and bidi controls (plus soft hyphen): invisible, yet they split title keys and
# can reorder what a reader sees.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
# C0/C1 controls that are not whitespace, and lone surrogates (which cannot be encoded).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")
_ASCII_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_HAS_WORD = re.compile(r"[^\W_]")  # a letter or digit

_NEW_ID = r"(?P<new>(?P<yymm>\d{4})\.\d{4,5})"
_OLD_ID = r"(?P<old>[a-z]+(?:-[a-z]+)*(?:\.[A-Za-z]{2})?/(?P<oldyymm>\d{4})\d{3})"
_ARXIV_ID = re.compile(
    r"(?:(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/|arxiv:)?"
    rf"(?:{_NEW_ID}|{_OLD_ID})(?:v\d{{1,3}})?(?:\.pdf)?/?",
    re.IGNORECASE,
)
_COUNT = re.compile(r"(?P<number>\d{1,15}(?:\.\d{1,6})?)\s*(?P<suffix>[kKmM])?")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000}
_ISO_DATE = re.compile(r"\s*(\d{4})-(\d{2})-(\d{2})")

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_bytes(data: bytes) -> str:
    """Decode page bytes: BOM-marked UTF-8/16/32, else UTF-8, cp1252, Latin-1; LF newlines."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return normalise_newlines(data[len(bom) :].decode(encoding, errors="replace"))
    for encoding in ("utf-8", "cp1252"):
        try:
            return normalise_newlines(data.decode(encoding))
        except UnicodeDecodeError:
            continue
    # Latin-1 maps every byte; detection then judges whether the result is sane text.
    return normalise_newlines(data.decode("latin-1"))


def normalise_newlines(text: str) -> str:
    """CRLF and lone CR become LF; a leading BOM character is dropped."""
    text = text.removeprefix("\ufeff")
    if "\r" not in text:  # the usual case; a find is much cheaper than two replaces
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_text(value: object) -> str | None:
    """NFC text with controls removed and all whitespace runs (line wraps too) made one space."""
    if not isinstance(value, str):
        return None
    if value.isascii():  # fast paths for most values; ASCII is already NFC
        text = value.replace("\n", " ")  # besides spaces, most values hold only line wraps
        if _is_clean_ascii(text):
            return text
        # Controls are neither printable nor whitespace: a printable result had none.
        text = " ".join(value.split())
        if text.isprintable():
            return text or None
    text = _CONTROL.sub("", value)
    if not text.isascii():  # ASCII is already NFC; skipping it matters for 500-author lists
        text = unicodedata.normalize("NFC", text)
    return _WHITESPACE.sub(" ", text).strip() or None


def clean_title(value: object) -> str | None:
    """Like clean_text, and also strips zero-width and bidi control characters."""
    if not isinstance(value, str):
        return None
    return clean_text(value if value.isascii() else _INVISIBLE.sub("", value))


def title_key(title: str) -> str:
    """Stable key of a title: "t:" + 16 hex of sha1 over its letters and digits, casefolded."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", title).casefold())
    # Letters, marks and numbers only: punctuation, symbols, spaces and controls all go.
    if folded.isascii():  # same result as the category test, ~10x faster
        kept = _ASCII_NOT_ALNUM.sub("", folded)
    else:
        kept = "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LMN")
    return "t:" + hashlib.sha1(kept.encode("utf-8")).hexdigest()[:16]


def canonical_arxiv_id(s: str) -> str | None:
    """The arXiv id in s (bare, arXiv:, or an arxiv.org abs/pdf URL) without version, or None."""
    if not isinstance(s, str):
        return None
    match = _ARXIV_ID.fullmatch(s.strip())
    if match is None:
        return None
    yymm = match.group("yymm") or match.group("oldyymm")
    if not 1 <= int(yymm[2:]) <= 12:
        return None
    if new_id := match.group("new"):
        # Five-digit numbers began in 1501; "2503.0213" is a float-mangled "2503.02130".
        expected_digits = 5 if yymm >= "1501" else 4
        return new_id if len(new_id) == 5 + expected_digits else None
    archive, number = match.group("old").split("/")
    head, _, subject = archive.partition(".")
    return f"{head.lower()}{'.' + subject.upper() if subject else ''}/{number}"


def id_text(value: object) -> str | None:
    """An id as the source wrote it: strings as is; JSON numbers by their literal digits."""
    if isinstance(value, str):
        return value
    # Ids parsed with parse_float=Decimal keep trailing zeros: 2503.02130 stays "2503.02130".
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_count(text: str) -> int | None:
    """A displayed count: "843", "1,056", "3.29k", "40.1k", "1.2M"; "-" or junk gives None."""
    compact = text.strip().replace(",", "").replace("\u202f", "").replace("\u00a0", "")
    match = _COUNT.fullmatch(compact)
    if match is None:
        return None
    number = Decimal(match.group("number")) * _MULTIPLIERS[(match.group("suffix") or "").lower()]
    # "1.5" is no count (maybe a European "1.500"); "3.29k" is the whole number 3290.
    return int(number) if number == number.to_integral_value() and number <= COUNT_MAX else None


def as_count(value: object) -> int | None:
    """A non-negative integer count from an int, an integral number, or displayed text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return parse_count(value)
    if isinstance(value, Decimal | float):
        try:
            # Range first: int() of 1e999999999 would build a gigantic integer.
            in_range = 0 <= value <= COUNT_MAX
            value = int(value) if in_range and value == int(value) else None
        except (ArithmeticError, ValueError):  # NaN, infinities, signalling decimals
            return None
    if isinstance(value, int) and 0 <= value <= COUNT_MAX:
        return value
    return None


def as_date(value: object) -> date | None:
    """A date from a date or the leading YYYY-MM-DD of an ISO string (its UTC calendar day)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    match = _ISO_DATE.match(value)
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def as_http_url(value: object) -> str | None:
    """An absolute http(s) URL, or None (drops javascript:, data:, relative and broken URLs)."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or _WHITESPACE.search(url) or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def as_names(value: object) -> tuple[str, ...]:
    """Author names from a list of strings or of {name | fullname | user.fullname} objects."""
    if not isinstance(value, list):
        return ()
    names = []
    for author in value:
        # Lists run to hundreds of authors: take an already clean name as it is, else clean.
        name = author.get("name") if isinstance(author, dict) else author
        if not _is_clean_ascii(name):
            name = clean_title(_author_name(author))
        if name:
            names.append(name)
    return tuple(names)


def _is_clean_ascii(value: object) -> bool:
    """True for non-empty printable ASCII without outer or double spaces: already clean."""
    return (
        isinstance(value, str)
        and value != ""
        and value.isascii()
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
        and "  " not in value
    )


def _author_name(author: object) -> object:
    if isinstance(author, dict):
        user = author.get("user")
        fallback = user.get("fullname") if isinstance(user, dict) else None
        return author.get("name") or author.get("fullname") or fallback
    return author


def as_keywords(value: object) -> tuple[str, ...]:
    """Cleaned keyword strings from a list; non-strings and blanks are dropped."""
    if not isinstance(value, list):
        return ()
    keywords = []
    for keyword in value:
        if not _is_clean_ascii(keyword):  # most keywords are; clean_text returns them as is
            keyword = clean_text(keyword)
        if keyword:
            keywords.append(keyword)
    return tuple(keywords)


def as_organization(value: object) -> str | None:
    """An organisation's display name: the object's fullname or name, or a plain string."""
    if isinstance(value, dict):
        return clean_text(value.get("fullname")) or clean_text(value.get("name"))
    return clean_text(value)


def excerpt_of(value: object) -> str:
    """At most EXCERPT_MAX_CHARS of a raw entry, for a quarantine record."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _CONTROL.sub("", text)[:EXCERPT_MAX_CHARS]


# Not frozen: a frozen dataclass's __init__ costs twice as much, and one is built per entry.
@dataclass(slots=True)
class RawEntry:
    """One entry as a format parser found it: values are untrusted until clean_entry."""

    position: int
    # The raw entry, or a function returning it (to skip building it for accepted entries);
    # excerpted only if the entry is rejected.
    source: object
    title: object = None
    abstract: object = None
    arxiv_id: object = None
    authors: object = None
    n_authors: object = None
    published_on: object = None
    digest_date: object = None
    upvotes: object = None
    comments: object = None
    github_url: object = None
    github_stars: object = None
    project_url: object = None
    ai_summary: object = None
    ai_keywords: object = None
    organization: object = None


def clean_entry(raw: RawEntry, rank: int = 0) -> Paper | Reject:
    """Clean one entry into a Paper with the given rank, or quarantine it as a Reject."""
    title = clean_title(raw.title)
    abstract = clean_text(raw.abstract)
    problem = _entry_problem(title, abstract)
    if problem or title is None or abstract is None:
        reason = problem or "no title"
        return Reject(position=raw.position, reason=reason, excerpt=_excerpt_source(raw.source))
    arxiv_id = canonical_arxiv_id(id_text(raw.arxiv_id) or "")
    authors = as_names(raw.authors)
    return Paper(
        paper_id=arxiv_id or title_key(title),
        title=title,
        abstract=abstract,
        rank=rank,
        arxiv_id=arxiv_id,
        authors=authors,
        n_authors=len(authors) if authors else as_count(raw.n_authors),
        published_on=as_date(raw.published_on),
        digest_date=as_date(raw.digest_date),
        upvotes=as_count(raw.upvotes),
        comments=as_count(raw.comments),
        github_url=as_http_url(raw.github_url),
        github_stars=as_count(raw.github_stars),
        project_url=as_http_url(raw.project_url),
        ai_summary=clean_text(raw.ai_summary),
        ai_keywords=as_keywords(raw.ai_keywords),
        organization=as_organization(raw.organization),
    )


def _excerpt_source(source: object) -> str:
    return excerpt_of(source() if callable(source) else source)


def _entry_problem(title: str | None, abstract: str | None) -> str | None:
    if title is None:
        return "no title"
    if len(title) > TITLE_MAX_CHARS:
        return "title too long"
    if not _HAS_WORD.search(title):
        return "title has no letters or digits"
    if abstract is None:
        return "no abstract"
    if len(abstract) > ABSTRACT_MAX_CHARS:
        return "abstract too long"
    if not _HAS_WORD.search(abstract):
        return "abstract has no letters or digits"
    return None


def assemble_page(
    fmt: str, page_date: date | None, entries: Iterable[RawEntry | Reject]
) -> ParsedPage:
    """Clean entries, keep the first of each paper_id, and rank the papers 1..n in page order."""
    papers: list[Paper] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for entry in entries:
        # The rank a new paper would get; a duplicate is dropped, so its rank never shows.
        cleaned = entry if isinstance(entry, Reject) else clean_entry(entry, len(papers) + 1)
        if isinstance(cleaned, Reject):
            rejects.append(cleaned)
        elif cleaned.paper_id not in seen:
            seen.add(cleaned.paper_id)
            papers.append(cleaned)
    return ParsedPage(fmt=fmt, digest_date=page_date, papers=tuple(papers), rejects=tuple(rejects))
