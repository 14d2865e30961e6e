"""A batch of parsed pages as the rows one bulk load writes (pure: no database).

The warehouse loads many pages in one transaction with a handful of statements, and the result
must equal loading them one at a time, in order. This module does the order-dependent part in
Python: which of a page's papers are new, how title-only ids resolve onto arXiv ids, and what
each paper's row becomes once every page of the batch has refreshed it (`fold_papers`).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from flows.capture import is_estimated
from flows.models import PageLoad, Paper, ParsedPage, RawPage
from flows.parse.clean import title_key
from flows.rows import Rows

EXCERPT_CHARS = 300
# Level 1 shrinks a recorded API or HTML page to 19-24% of its size (level 6: 17-21%) in about
# half the time; the archive is read only by `reparse`, and zlib.decompress reads every level.
ARCHIVE_LEVEL = 1

# Fields a later page refreshes, and how (see warehouse/queries/refresh_papers.sql).
_LATEST = ("title", "abstract")  # the latest page's value
_LATEST_KNOWN = (  # the latest value a page carried (a missing value never wipes one)
    "arxiv_id",
    "n_authors",
    "published_on",
    "github_url",
    "project_url",
    "ai_summary",
    "organization",
)
_LATEST_NONEMPTY = ("authors", "ai_keywords")  # the latest non-empty list
REFRESHED = (*_LATEST, *_LATEST_KNOWN, *_LATEST_NONEMPTY)
# Separators of `fields_hash`'s text: cleaned text never holds them (clean_text makes them
# spaces); a value that holds one anyway is digested through its repr.
_FIELD_SEP, _ITEM_SEP, _NONE = "\x1e", "\x1f", "\x00"


@dataclass(frozen=True, slots=True)
class PageBytes:
    """A page's identity and archive form: the SHA-256 of its bytes, their zlib stream and
    their size."""

    sha256: str
    archived: bytes
    size: int


def page_bytes(body: bytes) -> PageBytes:
    """Hash and compress a page body (a backfill does it on its fetch threads, off the
    writer's: both release the GIL, and the writer would wait to get it back each time)."""
    return PageBytes(
        hashlib.sha256(body).hexdigest(), zlib.compress(body, ARCHIVE_LEVEL), len(body)
    )


@dataclass(slots=True)
class PendingPage:
    """A page to insert: its row's values and its papers with ids resolved."""

    raw: RawPage  # digest_date already settled (the page's own, else the one asked for)
    parsed: ParsedPage
    stored: PageBytes | None  # None when the page is already archived (a reparse)
    page_id: int
    run_id: int
    seen_at: datetime  # when it was loaded
    papers: list[Paper] = field(default_factory=list)  # de-duplicated, ids resolved
    new_ids: set[str] = field(default_factory=set)  # papers this page brought to the warehouse

    @property
    def captured_at(self) -> datetime:
        """When the page's figures were true (its load time until a capture time is settled)."""
        return self.raw.captured_at or self.seen_at

    @property
    def capture_estimated(self) -> bool:
        """True when the capture time is a guess (see flows.capture.CAPTURE_BASES)."""
        return is_estimated(self.raw.capture_basis or "load-time")

    @property
    def n_listed(self) -> int:
        """Distinct ids the page lists before resolution: its `pages.n_entries`."""
        return len({p.paper_id for p in self.parsed.papers})

    def load(self) -> PageLoad:
        """What loading the page did."""
        return PageLoad(
            self.page_id,
            self.raw.location,
            False,
            n_entries=len(self.papers),
            n_rejected=len(self.parsed.rejects),
            n_new_papers=len(self.new_ids),
        )

    def load_as_skipped(self) -> PageLoad:
        """What loading the same bytes again later in the batch reports."""
        return PageLoad(
            self.page_id, self.raw.location, True, self.n_listed, len(self.parsed.rejects)
        )


class PaperIndex:
    """The paper ids a load can see, and title key → ids; updated as each page is planned.

    It starts from the warehouse's rows for the batch's ids and title keys, so planning page
    N sees pages 1..N-1 of the batch exactly as a page-at-a-time load would see them stored.
    """

    def __init__(self, rows: Iterable[tuple[str, str, str | None]]) -> None:
        self.ids: set[str] = set()
        self.by_key: dict[str, list[str]] = {}
        # paper id -> `fields_hash` of its stored fields (None: not known, so not comparable)
        self.hashes: dict[str, str | None] = {}
        for paper_id, key, stored_hash in rows:
            self._add(paper_id, key)
            self.hashes[paper_id] = stored_hash

    def resolve(
        self, papers: list[Paper], keys: dict[str, str]
    ) -> tuple[list[Paper], list[tuple[str, str]]]:
        """Map title-only ids onto known arXiv ids; also return the (title-only id, arXiv id)
        merges the page's arXiv papers call for, in the order they must be made.

        `keys` maps each title to its title key.
        """
        resolved, merges = [], []
        for paper in papers:
            known = self.by_key.get(keys[paper.title], ())
            if paper.paper_id.startswith("t:"):
                arxiv = sorted(i for i in known if not i.startswith("t:"))
                if arxiv:
                    paper = replace(paper, paper_id=arxiv[0], arxiv_id=arxiv[0])
            else:
                merges += [(alias, paper.paper_id) for alias in known if alias.startswith("t:")]
            resolved.append(paper)
        return dedupe(resolved), merges

    def merged(self, alias: str, paper_id: str) -> None:
        """Record that the warehouse moved a title-only paper to its arXiv id."""
        if alias not in self.ids:
            return  # an earlier merge of the same page already moved it
        self.ids.discard(alias)
        # The merge rewrote the stored row: its fields hash is no longer known.
        self.hashes.pop(alias, None)
        self.hashes[paper_id] = None
        self.by_key[alias].remove(alias)  # a title-only id is its own title key
        if paper_id not in self.ids:
            self._add(paper_id, alias)

    def add_page(self, papers: list[Paper], keys: dict[str, str]) -> set[str]:
        """Count a page's papers as stored; returns the ids that were new."""
        new = {p.paper_id for p in papers if p.paper_id not in self.ids}
        for paper in papers:
            if paper.paper_id in new:
                self._add(paper.paper_id, keys[paper.title])
        return new

    def _add(self, paper_id: str, key: str) -> None:
        self.ids.add(paper_id)
        self.by_key.setdefault(key, []).append(paper_id)


def dedupe(papers: Iterable[Paper]) -> list[Paper]:
    """Keep the first entry per paper_id (a page lists a paper once)."""
    seen: set[str] = set()
    kept = []
    for paper in papers:
        if paper.paper_id not in seen:
            seen.add(paper.paper_id)
            kept.append(paper)
    return kept


def title_keys(papers: Iterable[Paper]) -> dict[str, str]:
    """Title → title key, each title computed once."""
    keys: dict[str, str] = {}
    for paper in papers:
        if paper.title not in keys:
            keys[paper.title] = title_key(paper.title)
    return keys


# ---- what the batch writes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaperWrites:
    """What a batch writes to `papers`: new rows, the sighting times of known papers
    (touch_papers.sql), and the fields of the known papers whose fields may change
    (refresh_papers.sql)."""

    new: Rows
    touched: Rows
    refreshed: Rows

    @property
    def new_hashes(self) -> dict[str, str]:
        """paper id -> fields hash of each new row."""
        ids, hashes = self.new.columns["paper_id"][1], self.new.columns["fields_hash"][1]
        return dict(zip(ids, hashes, strict=True))


def fold_papers(
    pages: list[PendingPage], keys: dict[str, str], stored_hashes: dict[str, str | None]
) -> PaperWrites:
    """The `papers` writes of the pages, as if each in order inserted its new papers and
    refreshed the ones seen before.

    A known paper whose folded fields hash as its stored fields do (`stored_hashes`) cannot be
    changed by them: it is only touched, and refresh_papers.sql never sees it. A re-fetched page
    usually changes no paper's fields, and binding ~900 rows of abstracts and author lists to
    find that out cost ~30 ms a page.
    """
    rows: dict[str, dict[str, Any]] = {}
    for page in pages:
        for paper in page.papers:
            row = rows.get(paper.paper_id)
            if row is None:
                rows[paper.paper_id] = _first_row(paper, page, keys)
            else:
                _refresh(row, paper, page)
    brought = set().union(*(page.new_ids for page in pages))
    new, seen_again, changing = [], [], []
    for paper_id, row in rows.items():
        if paper_id in brought:
            row["fields_hash"] = fields_hash([row[name] for name in REFRESHED])
            new.append(row)
            continue
        seen_again.append(row)
        stored = stored_hashes.get(paper_id)  # None: not known, so refreshed (and then known)
        if stored is None or stored != fields_hash([row[name] for name in REFRESHED]):
            changing.append(row)
    return PaperWrites(
        _papers_rows(new),
        _columns(seen_again, ("paper_id", *_TOUCHED)),
        _columns(changing, ("paper_id", *REFRESHED)),
    )


def fields_hash(values: list[Any]) -> str:
    """A digest of a paper's refreshed fields (`REFRESHED`, in order), as text.

    Equal digests mean equal fields: a row whose fields hash as the stored ones do would set
    every field to the value it holds. Stored with each paper (`papers.fields_hash`).
    """
    parts = []
    plain = True  # no value holds a separator (cleaned text never does): the join is unambiguous
    for value in values:
        kind = type(value)
        if kind is str:
            plain = plain and not (_FIELD_SEP in value or _ITEM_SEP in value or _NONE in value)
            parts.append(value)
        elif value is None:
            parts.append(_NONE)
        elif kind is tuple or kind is list:
            items = _ITEM_SEP.join(value)
            plain = plain and not (_FIELD_SEP in items or _NONE in items)
            plain = plain and items.count(_ITEM_SEP) == max(len(value) - 1, 0)
            parts.append(items)
        else:
            parts.append(str(value))
    text = _FIELD_SEP.join(parts) if plain else repr([_tupled(value) for value in values])
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _tupled(value: Any) -> Any:
    return tuple(value) if type(value) is list else value


def first_fields(paper: Paper) -> dict[str, Any]:
    """A paper's refreshed fields (`REFRESHED`, in order) as its first row stores them: with no
    count given, the authors listed are counted."""
    fields = {name: getattr(paper, name) for name in REFRESHED}
    if fields["n_authors"] is None:
        fields["n_authors"] = len(paper.authors) or None
    return fields


def _first_row(paper: Paper, page: PendingPage, keys: dict[str, str]) -> dict[str, Any]:
    return first_fields(paper) | {
        "paper_id": paper.paper_id,
        "title_key": keys[paper.title],
        "first_seen_at": page.seen_at,
        "first_seen_run": page.run_id,
        "first_digest_date": paper.digest_date or page.parsed.digest_date,
        "last_seen_at": page.seen_at,
        "first_captured_at": page.captured_at,
    }


def _refresh(row: dict[str, Any], paper: Paper, page: PendingPage) -> None:
    """Apply a later sighting, as refresh_papers.sql and touch_papers.sql would."""
    for name in _LATEST:
        row[name] = getattr(paper, name)
    n_authors = paper.n_authors if paper.n_authors is not None else (len(paper.authors) or None)
    for name in _LATEST_KNOWN:
        value = n_authors if name == "n_authors" else getattr(paper, name)
        if value is not None:
            row[name] = value
    for name in _LATEST_NONEMPTY:
        if getattr(paper, name):
            row[name] = getattr(paper, name)
    day = paper.digest_date or page.parsed.digest_date
    if day is not None and (row["first_digest_date"] is None or day < row["first_digest_date"]):
        row["first_digest_date"] = day
    row["last_seen_at"] = max(row["last_seen_at"], page.seen_at)
    # Pages can load out of capture order (a replay imports a later capture first).
    row["first_captured_at"] = min(row["first_captured_at"], page.captured_at)


_PAPER_TYPES = {
    "paper_id": "VARCHAR",
    "title_key": "VARCHAR",
    "arxiv_id": "VARCHAR",
    "title": "VARCHAR",
    "abstract": "VARCHAR",
    "authors": "VARCHAR[]",
    "n_authors": "INTEGER",
    "published_on": "DATE",
    "github_url": "VARCHAR",
    "project_url": "VARCHAR",
    "ai_summary": "VARCHAR",
    "ai_keywords": "VARCHAR[]",
    "organization": "VARCHAR",
    "first_seen_at": "TIMESTAMPTZ",
    "first_seen_run": "BIGINT",
    "first_digest_date": "DATE",
    "last_seen_at": "TIMESTAMPTZ",
    "first_captured_at": "TIMESTAMPTZ",
    "fields_hash": "VARCHAR",
}
_TOUCHED = ("first_digest_date", "last_seen_at", "first_captured_at")  # see touch_papers.sql


def _papers_rows(rows: list[dict[str, Any]]) -> Rows:
    return _columns(rows, tuple(_PAPER_TYPES))


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> Rows:
    return Rows({name: (_PAPER_TYPES[name], [row[name] for row in rows]) for name in names})


def sightings_rows(pages: list[PendingPage]) -> Rows:
    """One row per paper per page: the figures each page showed."""
    papers = [(page, paper) for page in pages for paper in page.papers]

    def col(name: str) -> list[Any]:
        return [getattr(paper, name) for _, paper in papers]

    return Rows(
        {
            "run_id": ("BIGINT", [page.run_id for page, _ in papers]),
            "page_id": ("BIGINT", [page.page_id for page, _ in papers]),
            "paper_id": ("VARCHAR", col("paper_id")),
            "digest_date": ("DATE", [p.digest_date or pg.parsed.digest_date for pg, p in papers]),
            "rank": ("INTEGER", col("rank")),
            "upvotes": ("INTEGER", col("upvotes")),
            "comments": ("INTEGER", col("comments")),
            "github_stars": ("INTEGER", col("github_stars")),
            "github_url": ("VARCHAR", col("github_url")),
            "seen_at": ("TIMESTAMPTZ", [page.seen_at for page, _ in papers]),
            "captured_at": ("TIMESTAMPTZ", [page.captured_at for page, _ in papers]),
            "capture_estimated": ("BOOLEAN", [page.capture_estimated for page, _ in papers]),
        }
    )


def pages_rows(pages: list[PendingPage]) -> Rows:
    """The `pages` rows of new pages."""

    def raw(name: str) -> list[Any]:
        return [getattr(page.raw, name) for page in pages]

    return Rows(
        {
            "page_id": ("BIGINT", [p.page_id for p in pages]),
            "run_id": ("BIGINT", [p.run_id for p in pages]),
            "source": ("VARCHAR", raw("source")),
            "fmt": ("VARCHAR", [p.parsed.fmt for p in pages]),
            "location": ("VARCHAR", raw("location")),
            "digest_date": ("DATE", raw("digest_date")),
            "fetched_at": ("TIMESTAMPTZ", [p.seen_at for p in pages]),
            "content_sha256": ("VARCHAR", [_stored(p).sha256 for p in pages]),
            "http_status": ("INTEGER", raw("http_status")),
            "content_type": ("VARCHAR", raw("content_type")),
            "etag": ("VARCHAR", raw("etag")),
            "last_modified": ("VARCHAR", raw("last_modified")),
            "n_entries": ("INTEGER", [p.n_listed for p in pages]),
            "n_rejected": ("INTEGER", [len(p.parsed.rejects) for p in pages]),
            "captured_at": ("TIMESTAMPTZ", [p.captured_at for p in pages]),
            "capture_basis": ("VARCHAR", [p.raw.capture_basis or "load-time" for p in pages]),
            "capture_estimated": ("BOOLEAN", [p.capture_estimated for p in pages]),
        }
    )


def archive_rows(pages: list[PendingPage]) -> Rows:
    """The page-archive rows of new pages: their exact bytes, zlib-compressed."""
    return Rows(
        {
            "page_id": ("BIGINT", [p.page_id for p in pages]),
            "encoding": ("VARCHAR", ["zlib"] * len(pages)),
            "raw_size": ("BIGINT", [_stored(p).size for p in pages]),
            "raw": ("BLOB", [_stored(p).archived for p in pages]),
            "stored_size": ("BIGINT", [len(_stored(p).archived) for p in pages]),
        }
    )


def _stored(page: PendingPage) -> PageBytes:
    assert page.stored is not None, "only new pages get a row and an archive"
    return page.stored


def rejects_rows(pages: list[PendingPage]) -> Rows:
    """The quarantined entries of the pages, with where they were found."""
    found = [(page, reject) for page in pages for reject in page.parsed.rejects]
    return Rows(
        {
            "page_id": ("BIGINT", [page.page_id for page, _ in found]),
            "location": ("VARCHAR", [page.raw.location for page, _ in found]),
            "position": ("INTEGER", [r.position for _, r in found]),
            "reason": ("VARCHAR", [r.reason for _, r in found]),
            "excerpt": ("VARCHAR", [r.excerpt[:EXCERPT_CHARS] for _, r in found]),
            "run_id": ("BIGINT", [page.run_id for page, _ in found]),
            "seen_at": ("TIMESTAMPTZ", [page.seen_at for page, _ in found]),
        }
    )


def reparsed_rows(pages: list[PendingPage]) -> Rows:
    """What `reparse` updates in each page's row."""
    return Rows(
        {
            "page_id": ("BIGINT", [p.page_id for p in pages]),
            "fmt": ("VARCHAR", [p.parsed.fmt for p in pages]),
            "n_entries": ("INTEGER", [len(p.papers) for p in pages]),
            "n_rejected": ("INTEGER", [len(p.parsed.rejects) for p in pages]),
        }
    )


def settled_date(raw: RawPage, parsed: ParsedPage) -> RawPage:
    """A page's digest date is what it says itself (a text page's header), else what was asked."""
    if parsed.digest_date is None or parsed.digest_date == raw.digest_date:
        return raw
    return replace(raw, digest_date=parsed.digest_date)


def page_key(raw: RawPage, sha: str) -> tuple[str, date | None]:
    """A page's identity for idempotent loads: its bytes and its digest date."""
    return sha, raw.digest_date
