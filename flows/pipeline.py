"""The stages wired together as plain functions: what a run does, without Prefect.

The Prefect flows (`flows.daily`, `flows.backfill`) wrap these steps in tasks; tests and
benchmarks can call them directly. Each step takes and returns the dataclasses of
`flows.models`; the warehouse is always written from the caller's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flows.models import PageFormatError, PageLoad, ParsedPage, RawPage
from flows.parse import detect_format, parse_page
from flows.warehouse import Warehouse

log = logging.getLogger(__name__)

SAVED_PAGE_SUFFIXES = {".txt", ".json", ".html", ".htm"}
MAX_PAGE_BYTES = 64 * 1024 * 1024  # a saved page larger than this is refused unread


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What happened to one page of a run: loaded, already loaded, or refused (with why)."""

    location: str
    digest_date: date | None
    load: PageLoad | None = None
    error: str | None = None  # one line: "<input>: <reason>"

    @property
    def ok(self) -> bool:
        """True when the page is in the warehouse (now or from an earlier run)."""
        return self.load is not None


@dataclass(slots=True)
class RunTotals:
    """Counts a run reports in its summary line, its artifact and its `runs` row."""

    pages: int = 0
    pages_skipped: int = 0
    entries: int = 0
    rejected: int = 0
    new_papers: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, outcome: PageOutcome) -> None:
        """Count one page outcome."""
        if outcome.error:
            self.failures.append(outcome.error)
            return
        assert outcome.load is not None
        self.pages += 1
        self.pages_skipped += outcome.load.skipped
        self.entries += outcome.load.n_entries
        self.rejected += outcome.load.n_rejected
        self.new_papers += outcome.load.n_new_papers

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON (the `runs.counts` column)."""
        return {
            "pages": self.pages,
            "pages_skipped": self.pages_skipped,
            "entries": self.entries,
            "rejected": self.rejected,
            "new_papers": self.new_papers,
            "failures": len(self.failures),
        }


# ---- fetch side: which days, which files --------------------------------------------------


def days_to_fetch(wh: Warehouse, today: date, refetch_days: int, gap_days: int) -> list[date]:
    """Today, the last `refetch_days` days (gains, late arrivals), and gaps of `gap_days`."""
    recent = [today - timedelta(d) for d in range(refetch_days + 1)]
    start = today - timedelta(gap_days)
    gaps = wh.gaps(start, today - timedelta(refetch_days + 1), min_entries=0) if gap_days else []
    return sorted(set(recent) | set(gaps), reverse=True)


def saved_page_paths(paths: Iterable[Path]) -> list[Path]:
    """Files to import: each file given, and the saved pages inside each folder given, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SAVED_PAGE_SUFFIXES
            )
        else:
            found.append(path)
    return found


def read_saved_page(path: Path, digest_date: date | None = None) -> RawPage:
    """A saved page as a RawPage (OSError and oversize become PageFormatError).

    `digest_date` (the `--date` flag) dates text pages, which do not say their year; API and
    HTML pages carry their own date and take it only when they do not.
    """
    try:
        size = path.stat().st_size
        if size > MAX_PAGE_BYTES:
            raise PageFormatError(str(path), f"file too large ({size:,} bytes)")
        body = path.read_bytes()
    except OSError as exc:
        raise PageFormatError(str(path), exc.strerror or type(exc).__name__) from exc
    try:
        source = detect_format(body, name=str(path))
    except PageFormatError:
        source = "text"  # the parse step reports the real reason with the page
    if source != "text" and digest_date is not None and _says_its_date(body, path):
        digest_date = None
    return RawPage(source, str(path), body, digest_date, datetime.now(UTC))


def _says_its_date(body: bytes, path: Path) -> bool:
    try:
        return parse_page(body, name=str(path)).digest_date is not None
    except PageFormatError:
        return False


# ---- load side ----------------------------------------------------------------------------


def parse_raw(raw: RawPage, today: date | None = None) -> ParsedPage:
    """Parse one raw page with the date it was asked for (pure; raises PageFormatError)."""
    return parse_page(raw.body, name=raw.location, digest_date=raw.digest_date, today=today)


def ingest_page(wh: Warehouse, raw: RawPage, run_id: int, today: date | None = None) -> PageOutcome:
    """Parse and load one page; a page that does not parse is quarantined, never raised."""
    if raw.not_modified:
        return PageOutcome(raw.location, raw.digest_date, PageLoad(0, raw.location, True))
    try:
        parsed = parse_raw(raw, today)
    except PageFormatError as exc:
        wh.save_refused_page(raw, exc.reason, run_id)
        log.warning("refused %s", exc)
        return PageOutcome(raw.location, raw.digest_date, error=str(exc))
    load = wh.save_page(raw, parsed, run_id)
    if parsed.rejects:
        log.warning("%s: %d entries quarantined", raw.location, len(parsed.rejects))
    return PageOutcome(raw.location, raw.digest_date or parsed.digest_date, load)


def ingest_pages(
    wh: Warehouse, pages: Iterable[RawPage], run_id: int, today: date | None = None
) -> list[PageOutcome]:
    """Load several pages, one transaction each: a bad page never stops the others."""
    return [ingest_page(wh, raw, run_id, today) for raw in pages]


def reparse_archive(wh: Warehouse, today: date | None = None) -> tuple[int, int]:
    """Rebuild every derived table from the archived page bytes (after a parser fix)."""
    return wh.rebuild_derived(lambda raw: parse_raw(raw, today))


def summary_line(totals: RunTotals, n_papers: int, destination: str | None) -> str:
    """The one line a run ends with, e.g. `3 pages, 409 entries, 391 papers (391 new) → …`."""
    line = (
        f"{totals.pages} pages, {totals.entries} entries, {n_papers} papers "
        f"({totals.new_papers} new)"
    )
    if totals.rejected:
        line += f", {totals.rejected} quarantined"
    if totals.failures:
        line += f", {len(totals.failures)} failed"
    if destination:
        line += f" → {destination}"
    return line
