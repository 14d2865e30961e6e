"""A warehouse made from the bundled pages and the recorded API days, and the site built from it.

What daily runs would leave, without Prefect: an import of the three saved seed pages, a daily
run loading the five recorded API days (its digest mailed), and a next day's run re-fetching
2026-08-14 with more upvotes (its digest mailed: trending papers with the diff's reasons).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from flows import pipeline
from flows.diff import compute_diff, since_last_delivery
from flows.site import PublishReport, SiteSettings, publish_site
from flows.warehouse import Warehouse

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = FIXTURES / "seeds"
API_DAYS = sorted((FIXTURES / "hf-api").glob("daily_papers_*.json"))
SEED_DAY = date(2025, 11, 3)
FIRST_DIGEST = date(2026, 8, 14)
SECOND_DIGEST = date(2026, 8, 15)
GAINS = (40, 25, 12, 9, 7)  # upvotes the first papers of 2026-08-14 gain by the next run


def build_warehouse(db: Path, work: Path) -> None:
    """The warehouse described in the module docstring, at `db`."""
    build_first_digest(db)
    add_second_digest(db, work)


def build_first_digest(db: Path) -> None:
    """The warehouse up to the first mailed digest: the seed pages and the recorded API days."""
    with Warehouse.open(db) as wh:
        run = wh.start_run("import", {})
        pipeline.ingest_files(wh, pipeline.saved_page_paths([SEEDS]), run, SEED_DAY, SEED_DAY)
        wh.finish_run(run, "ok", {})
        _daily_run(wh, API_DAYS, FIRST_DIGEST)


def add_second_digest(db: Path, work: Path) -> None:
    """The next day's run: 2026-08-14 re-fetched with more upvotes, its digest mailed."""
    with Warehouse.open(db) as wh:
        _daily_run(wh, [_refetched(work)], SECOND_DIGEST)


def publish(db: Path, out: Path, site_url: str | None = None) -> PublishReport:
    """Publish the site of the warehouse at `db` into `out`."""
    with Warehouse.open(db) as wh:
        return publish_site(wh, SiteSettings(out, site_url))


def _daily_run(wh: Warehouse, files: list[Path], day: date) -> None:
    run = wh.start_run("daily", {"date": day.isoformat()})
    outcomes = pipeline.ingest_files(wh, files, run, None, day)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    wh.finish_run(run, "ok", {})
    digest = compute_diff(wh, run_id=run, digest_date=day, since_run=since_last_delivery(wh, run))
    items = pipeline.digest_items(digest)
    wh.record_digest(day.isoformat(), day, run, items, 1, delivered_at=datetime.now(UTC))


def _refetched(work: Path) -> Path:
    """The 2026-08-14 API answer as a later fetch sees it: the first papers gained upvotes."""
    source = FIXTURES / "hf-api" / "daily_papers_2026-08-14.json"
    items = json.loads(source.read_text(encoding="utf-8"))
    for item, gain in zip(items, GAINS, strict=False):
        item["paper"]["upvotes"] += gain
    work.mkdir(parents=True, exist_ok=True)
    path = work / "daily_papers_2026-08-14.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path
