"""Diff a run against history: new papers, trending ones with reasons, late arrivals, changes.

The selection is SQL (`warehouse/queries/diff.sql`) over the `sightings` history inside a
window; this module only picks the parameters and shapes the rows into a `Digest`, writing
the reason a person reads for each paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flows.models import Change, Digest, DigestPaper
from flows.warehouse import Warehouse


@dataclass(frozen=True, slots=True)
class DiffSettings:
    """Knobs of the diff; the defaults are what the daily digest uses."""

    window_days: int = 7
    min_gain: int = 5  # upvotes: below this a paper is not trending
    trending_limit: int = 10
    stars_jump: int = 100  # GitHub stars gained between two sightings worth a line


def compute_diff(
    wh: Warehouse,
    *,
    run_id: int,
    digest_date: date,
    as_of: datetime | None = None,
    since_run: int | None = None,
    settings: DiffSettings = DiffSettings(),
) -> Digest:
    """The digest of `run_id`: what is new since `since_run` (default: the run before it).

    `as_of` (default: the newest capture time of the run's pages) is the moment described:
    ages and gains are measured between capture times, never against the wall clock.
    """
    as_of = as_of or wh.captured_through(run_id) or datetime.now(UTC)
    window_start = as_of - timedelta(days=settings.window_days)
    rows = wh.run_query(
        "diff",
        {
            "run_id": run_id,
            "since_run": run_id - 1 if since_run is None else since_run,
            "window_start": window_start,
            "as_of": as_of,
            "min_gain": settings.min_gain,
            "trending_limit": settings.trending_limit,
            "stars_jump": settings.stars_jump,
        },
    )
    sections: dict[str, list[DigestPaper]] = {"trending": [], "new": [], "late": []}
    changes = []
    for row in rows:
        if row["section"]:
            sections[row["section"]].append(digest_paper(row))
        if row["change"]:
            changes.append(change_line(row))
    gap_start = max(window_start.date(), _first_digest_date(wh) or window_start.date())
    return Digest(
        digest_date=digest_date,
        data_through=_data_through(rows, digest_date),
        new=tuple(sections["new"]),
        trending=tuple(sections["trending"]),
        late=tuple(sections["late"]),
        changes=tuple(changes),
        gaps=tuple(wh.gaps(gap_start, digest_date)) if gap_start <= digest_date else (),
        as_of=as_of,
    )


def resolve_since(wh: Warehouse, value: str) -> int:
    """`--since RUN|DATE` → the last run id before which nothing counts as new."""
    if value.isdigit():
        return int(value)
    day = date.fromisoformat(value)
    start = datetime.combine(day, time.min, tzinfo=UTC)
    row = wh.fetch_dicts(
        "SELECT coalesce(max(run_id), 0) AS run_id FROM runs WHERE started_at < $start",
        {"start": start},
    )
    return row[0]["run_id"]


def since_last_delivery(wh: Warehouse, run_id: int) -> int:
    """The run after which papers count as new for `run_id`'s digest.

    That is the last run whose digest went out, so nothing is lost when a send failed or a run
    died before recording its digest; before any digest, the run before the first daily run
    (a backfill or import that came first is history, not news).
    """
    row = wh.fetch_dicts(
        "SELECT (SELECT max(run_id) FROM digests WHERE run_id < $r) AS delivered, "
        "(SELECT min(run_id) FROM runs WHERE flow = 'daily') AS first_daily",
        {"r": run_id},
    )[0]
    if row["delivered"] is not None:
        return row["delivered"]
    return (row["first_daily"] or run_id) - 1


def latest_run(wh: Warehouse) -> int | None:
    """The newest run that loaded at least one page."""
    row = wh.fetch_dicts("SELECT max(run_id) AS run_id FROM pages")
    return row[0]["run_id"]


def digest_paper(row: dict[str, Any]) -> DigestPaper:
    """One diff row as the digest shows it, with its reason."""
    return DigestPaper(
        paper_id=row["paper_id"],
        title=row["title"],
        abstract=row["abstract"],
        arxiv_id=row["arxiv_id"],
        authors=tuple(row["authors"] or ()),
        n_authors=row["n_authors"],
        digest_date=row["digest_date"],
        rank=row["rank"],
        upvotes=row["upvotes"],
        upvote_gain=row["gain"],
        comments=row["comments"],
        github_url=row["github_url"],
        github_stars=row["github_stars"],
        project_url=row["project_url"],
        ai_summary=row["ai_summary"],
        ai_keywords=tuple(row["ai_keywords"] or ()),
        organization=row["organization"],
        published_on=row["published_on"],
        reason=reason_for(row),
    )


def reason_for(row: dict[str, Any]) -> str:
    """Why a paper is in its section, in words: `+42 upvotes since Mon 09:00, #9 → #2 on Nov 3`."""
    section = row["section"]
    if section == "trending" and row["prev_upvotes"] is not None:
        return _gain_reason(row)
    if section == "trending" and row["capture_estimated"]:
        return (
            f"{row['upvotes']} upvotes on the {_day(row['digest_date'])} list "
            "(first sighting; capture time estimated, so no age is given)"
        )
    if section == "trending":
        return (
            f"{row['upvotes']} upvotes in its first {_hours(row['hours'])} "
            "(first sighting: ranked by upvotes for its age, no earlier figure to compare)"
        )
    if section == "late":
        reason = (
            f"added to the {_day(row['first_digest_date'])} list after that day's email went out"
        )
        return reason + (" (capture time estimated)" if row["capture_estimated"] else "")
    return f"new on the {_day(row['digest_date'])} list" if row["digest_date"] else "new"


def _gain_reason(row: dict[str, Any]) -> str:
    if row["prev_capture_estimated"]:
        reason = f"+{row['gain']} upvotes since an earlier capture (its time is estimated)"
    else:
        since = row["prev_captured_at"].astimezone(UTC).strftime("%a %H:%M")
        reason = f"+{row['gain']} upvotes since {since}"
    if row["prev_rank"] is not None and row["prev_digest_date"] == row["digest_date"]:
        reason += f", #{row['prev_rank']} → #{row['rank']} on {_day(row['digest_date'])}"
    if row["mailed_upvotes"] is not None:
        reason += f" (+{row['upvotes'] - row['mailed_upvotes']} since last mailed)"
    return reason


def change_line(row: dict[str, Any]) -> Change:
    """A change worth a line: code released, or a jump in GitHub stars."""
    if row["change"] == "code_released":
        detail = f"code released: {row['github_url']}"
    else:
        gained = row["github_stars"] - row["prev_github_stars"]
        detail = f"+{gained} GitHub stars (now {row['github_stars']})"
    return Change(row["paper_id"], row["title"], row["change"], detail)


def _data_through(rows: list[dict[str, Any]], fallback: date) -> date:
    dates = [r["digest_date"] for r in rows if r["digest_date"] is not None]
    return max(dates, default=fallback)


def _first_digest_date(wh: Warehouse) -> date | None:
    return wh.fetch_dicts("SELECT min(digest_date) AS d FROM pages")[0]["d"]


def _day(day: date | None) -> str:
    return f"{day:%b} {day.day}" if day else "undated"


def _hours(hours: float) -> str:
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"
