"""The small dataclasses the pipeline stages hand to each other.

Data flows one way: fetch → parse/clean → load → diff → render → deliver.
Every stage takes and returns these records, never raw dicts, so each stage can be
tested on its own and swapped (a recorded page stands in for a live fetch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

SOURCES = ("api", "html", "text")


class PageFormatError(ValueError):
    """A page is not what it claims to be; the message names the input and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RawPage:
    """One fetched or imported page, exactly as received (the archive keeps these bytes)."""

    source: str  # "api" | "html" | "text" (what was asked for; parse detects the real format)
    location: str  # URL or file path
    body: bytes
    digest_date: date | None = None  # the date that was requested, when there was one
    fetched_at: datetime | None = None  # UTC, timezone-aware
    http_status: int | None = None  # None for files
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    # When the figures on the page were true (UTC) and how that was found (a key of
    # flows.capture.CAPTURE_BASES); settled at load when the fetch or import did not say.
    captured_at: datetime | None = None
    capture_basis: str | None = None
    # The JSON value of an API body when the fetch client decoded it to check it (numbers as
    # Decimal, as the parser reads them), so the parser need not decode it again. Never
    # archived or compared: the bytes are the page.
    decoded: object = field(default=None, compare=False, repr=False)

    @property
    def not_modified(self) -> bool:
        """True for a 304 answer: nothing new to parse or load."""
        return self.http_status == 304


@dataclass(frozen=True, slots=True)
class Paper:
    """One cleaned entry of a digest page: the paper plus the figures this page showed."""

    paper_id: str  # canonical arXiv id (no version) when known, else "t:" + title key
    title: str
    abstract: str
    rank: int  # 1-based position on the page (after de-duplication)
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    n_authors: int | None = None
    published_on: date | None = None  # arXiv publication date
    digest_date: date | None = None  # the digest day this entry belongs to
    upvotes: int | None = None
    comments: int | None = None
    github_url: str | None = None
    github_stars: int | None = None
    project_url: str | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An entry that could not be cleaned: quarantined with where it was and why."""

    position: int  # 1-based position of the entry on its page
    reason: str
    excerpt: str  # at most a few hundred characters of the raw entry


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """What a parser made of one page."""

    fmt: str  # "api" | "html" | "text"
    digest_date: date | None  # the page's own digest date, when it says or was told
    papers: tuple[Paper, ...] = ()
    rejects: tuple[Reject, ...] = ()
    stated_at: datetime | None = None  # the latest time the page states (it existed by then)


@dataclass(frozen=True, slots=True)
class PageLoad:
    """What loading one page into the warehouse did."""

    page_id: int
    location: str
    skipped: bool  # True when the same content was already loaded (idempotent re-run)
    n_entries: int = 0
    n_rejected: int = 0
    n_new_papers: int = 0


@dataclass(frozen=True, slots=True)
class DigestPaper:
    """One paper as the digest shows it: latest figures plus why it is in the email."""

    paper_id: str
    title: str
    abstract: str
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    n_authors: int | None = None
    digest_date: date | None = None
    rank: int | None = None
    upvotes: int | None = None
    upvote_gain: int | None = None  # since the previous sighting (or last mailing)
    comments: int | None = None
    github_url: str | None = None
    github_stars: int | None = None
    project_url: str | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    organization: str | None = None
    published_on: date | None = None
    reason: str = ""  # a sentence a person can read: why this paper is here


@dataclass(frozen=True, slots=True)
class Change:
    """A change worth a line: code released, a jump in GitHub stars."""

    paper_id: str
    title: str
    kind: str  # "code_released" | "stars_jump"
    detail: str


@dataclass(frozen=True, slots=True)
class Digest:
    """The diff of a run against history: what the email is made of."""

    digest_date: date
    data_through: date
    new: tuple[DigestPaper, ...] = ()
    trending: tuple[DigestPaper, ...] = ()
    late: tuple[DigestPaper, ...] = ()
    changes: tuple[Change, ...] = ()
    gaps: tuple[date, ...] = ()  # digest dates in the window with no successful page
    as_of: datetime | None = None  # the newest capture time of the data the diff read

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to tell anyone."""
        return not (self.new or self.trending or self.late or self.changes)


@dataclass(frozen=True, slots=True)
class Topics:
    """A recipient's filters: keywords matched over title, abstract, keywords and authors."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber."""

    address: str
    topics: Topics = field(default_factory=Topics)
    cadence: str = "daily"  # "daily" | "weekdays" | "weekly"
    active: bool = True
    library: Path | None = None  # the reader's stored library (flows/library.py), if any


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A digest rendered for one recipient, before it becomes a MIME message."""

    subject: str
    preheader: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class RankedPaper:
    """A candidate paper placed for one reader: its score and the library paper it is closest to."""

    paper_id: str
    score: float
    close_to: str  # title of the nearest library paper (cosine similarity)


@dataclass(frozen=True, slots=True)
class ForYou:
    """One reader's ranking of the day's candidates, best first, and how it was made."""

    picks: tuple[RankedPaper, ...]  # the top-k, best first
    n_library: int  # library papers the model learned from
    backend: str  # "tf-idf" or "embeddings"


@dataclass(frozen=True, slots=True)
class CorpusPaper:
    """A warehouse paper as the ranking reads it: its id, title and searchable text."""

    paper_id: str
    arxiv_id: str | None
    title: str
    text: str  # title, abstract and keywords
