"""HF JSON API pages (/api/daily_papers?date=…): a bare array of items, paper fields under "paper".

Schema traps handled here: there is no top-level upvotes; the top-level publishedAt changed
meaning in March 2025, so the digest day comes from the request or paper.submittedOnDailyAt
and the arXiv date from paper.publishedAt; optional keys are absent, and unknown keys are
ignored. The HTML page's props carry the same item shape, so html.py reuses entry_from_item.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from functools import partial

from flows.capture import stated_time
from flows.models import ParsedPage, Reject
from flows.parse.clean import RawEntry, as_date, assemble_page, excerpt_of


def parse_api(items: list[object], *, digest_date: date | None) -> ParsedPage:
    """Parse a decoded API array; digest_date is the request date when the caller knows it."""
    entries = [
        entry_from_item(item, position, digest_date) for position, item in enumerate(items, 1)
    ]
    page = assemble_page("api", digest_date or shared_digest_date(items), entries)
    return replace(page, stated_at=stated_time([item_times(item) for item in items]))


def item_times(item: object) -> str | None:
    """The latest of an item's submittedOnDailyAt / publishedAt timestamps (ISO strings)."""
    paper = item.get("paper") if isinstance(item, dict) else None
    values = [item.get("publishedAt")] if isinstance(item, dict) else []
    if isinstance(paper, dict):
        values += [paper.get("submittedOnDailyAt"), paper.get("publishedAt")]
    stated = stated_time(values)
    return stated.isoformat() if stated else None


def entry_from_item(item: object, position: int, page_date: date | None) -> RawEntry | Reject:
    """Find one item's fields; page_date (when known) wins over the item's own digest day."""
    if not isinstance(item, dict):
        return Reject(position, "API item is not an object", excerpt_of(item))
    paper = item.get("paper")
    if not isinstance(paper, dict):
        return Reject(position, "API item has no paper object", excerpt_of(item))
    return RawEntry(
        position=position,
        source=partial(_without_authors, paper),
        # paper.title is the arXiv title; the top-level copy is sometimes the raw TeX source.
        title=_first_str(paper.get("title"), item.get("title")),
        abstract=_first_str(paper.get("summary"), item.get("summary")),
        arxiv_id=paper.get("id"),
        authors=paper.get("authors"),
        published_on=paper.get("publishedAt"),
        digest_date=page_date or paper.get("submittedOnDailyAt"),
        upvotes=paper.get("upvotes"),
        comments=item.get("numComments"),
        github_url=paper.get("githubRepo"),
        github_stars=paper.get("githubStars"),
        project_url=paper.get("projectPage"),
        ai_summary=paper.get("ai_summary"),
        ai_keywords=paper.get("ai_keywords"),
        organization=paper.get("organization") or item.get("organization"),
    )


def shared_digest_date(items: list[object]) -> date | None:
    """The one submittedOnDailyAt day all items share, or None when absent or mixed."""
    days = {as_date(_submitted_on(item)) for item in items}
    days.discard(None)
    return days.pop() if len(days) == 1 else None


def _submitted_on(item: object) -> object:
    paper = item.get("paper") if isinstance(item, dict) else None
    return paper.get("submittedOnDailyAt") if isinstance(paper, dict) else None


def _first_str(*values: object) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value
    return None


def _without_authors(paper: dict[str, object]) -> dict[str, object]:
    # Author lists run to hundreds of objects; the excerpt should show id, title and abstract.
    return {key: value for key, value in paper.items() if key != "authors"}
