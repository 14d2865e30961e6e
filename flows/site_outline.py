"""The site's outline: every day page and the papers it shows, each with a fingerprint of what
its page is rendered from, read in one query (`warehouse/queries/site_outline.sql`).

An incremental publish compares the fingerprints with those of the last publish, and reads the
texts and figures of only the days and papers whose pages must be rendered again: a daily run
on years of history reads what that run changed, not the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from flows.warehouse import Warehouse


@dataclass(frozen=True, slots=True)
class OutlinePaper:
    """A paper with a page: its fingerprint, and what the search index lists of it."""

    paper_id: str
    fingerprint: int  # the paper row, its sightings (and whether their day has a page), mailings
    title: str
    digest_date: date | None  # the date of its latest sighting


@dataclass(frozen=True, slots=True)
class OutlineDay:
    """A digest date with a page, and the papers the page shows."""

    day: date
    changed_at: datetime  # when its data last changed (the feed's first `updated`)
    mailed: bool  # a daily digest was mailed for it: the page shows that digest
    fingerprint: int  # its digest or list, and the fingerprints of its papers
    paper_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SiteOutline:
    """Every day page (newest first) and every paper with a page, by id."""

    days: tuple[OutlineDay, ...]
    papers: dict[str, OutlinePaper]


def read_site_outline(wh: Warehouse) -> SiteOutline:
    """The site's outline from the warehouse, in one query."""
    days, papers = [], {}
    for day, changed_at, mailed, fingerprint, shown in wh.site_outline():
        for paper_id, paper_fingerprint, title, digest_date in shown:
            papers[paper_id] = OutlinePaper(paper_id, paper_fingerprint, title, digest_date)
        ids = tuple(paper_id for paper_id, *_ in shown)
        days.append(OutlineDay(day, changed_at, mailed, fingerprint, ids))
    return SiteOutline(tuple(days), papers)
