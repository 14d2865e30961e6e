"""Synthetic warehouses with years of history, for the load and diff benchmarks.

A history is what the daily flow would have left after running every weekday: run i, at
07:00 UTC on weekday d, loaded the page of d (its new papers, see `bench.synthetic`) and re-loaded
the pages of the 7 days before it (the same papers with more upvotes; a weekend's empty page is
stored once), and its digest went out at 07:05 with d's papers as new and 10 trending ones.

Writing 10 years through `Warehouse.save_page` (8 pages a run, 2,600 runs) would take longer
than all the benchmarks together, so the same rows are written with one bulk INSERT per table.
The papers, ids, titles and upvotes are exactly those the synthetic server would send; only the
page archive holds a short placeholder per page instead of the compressed JSON (no benchmark
reads the archive back).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench import synthetic
from bench.harness import Context
from flows.models import Paper
from flows.pagebatch import fields_hash, first_fields
from flows.parse import title_key
from flows.parse.api import parse_api
from flows.parse.clean import clean_title
from flows.warehouse import Warehouse

LAST_DAY = date(2025, 11, 14)  # a Friday: every history ends with a full week
REFETCH_DAYS = 7
RUN_HOUR = time(7, 0, tzinfo=UTC)
MAILED_AFTER = timedelta(minutes=5)
TRENDING_PER_DIGEST = 10
PLACEHOLDER = zlib.compress(b"[]")


@dataclass(frozen=True, slots=True)
class History:
    """A built warehouse: where it is, and the run and time a diff of its last day needs."""

    path: Path
    first_day: date
    last_day: date
    last_run_id: int
    last_run_at: datetime
    papers: int
    sightings: int


@dataclass(frozen=True, slots=True)
class _Page:
    page_id: int
    run_id: int
    day: date
    epoch: int  # visits of this day before this one
    seen_at: datetime


def history_for(ctx: Context, n_days: int) -> History:
    """The history of `n_days` days to LAST_DAY in this run's work folder (built once)."""
    path = ctx.folder("history") / f"{n_days}d.duckdb"
    record = path.with_suffix(".json")
    if path.exists() and record.exists():
        return _history_from_json(path, json.loads(record.read_text()))
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    history = build_history(path, LAST_DAY, n_days)
    record.write_text(json.dumps(_history_to_json(history)))
    return history


def _history_to_json(history: History) -> dict:
    return {
        "first_day": history.first_day.isoformat(),
        "last_day": history.last_day.isoformat(),
        "last_run_id": history.last_run_id,
        "last_run_at": history.last_run_at.isoformat(),
        "papers": history.papers,
        "sightings": history.sightings,
    }


def _history_from_json(path: Path, record: dict) -> History:
    return History(
        path,
        date.fromisoformat(record["first_day"]),
        date.fromisoformat(record["last_day"]),
        record["last_run_id"],
        datetime.fromisoformat(record["last_run_at"]),
        record["papers"],
        record["sightings"],
    )


def run_time(day: date) -> datetime:
    """When the daily run of `day` fetched its pages."""
    return datetime.combine(day, RUN_HOUR)


def build_history(path: Path, last_day: date, n_days: int) -> History:
    """A warehouse at `path` holding the daily runs of the `n_days` calendar days to last_day."""
    first_day = last_day - timedelta(n_days - 1)
    run_days = [d for d in _days(first_day, last_day) if d.weekday() < 5]
    pages = _pages(run_days)
    with Warehouse.open(path) as wh:
        _insert(wh, "runs", _runs_table(run_days), RUNS_SQL)
        _insert(wh, "pages", _pages_table(pages), PAGES_SQL)
        _insert(wh, "sightings", _sightings_table(pages), SIGHTINGS_SQL)
        _insert(wh, "papers", _papers_table(pages), PAPERS_SQL)
        _insert(wh, "digest_items", _digest_items_table(run_days), DIGESTS_SQL)
        _restart_sequences(wh, len(run_days), len(pages))
        papers, sightings = wh.con.execute(
            "SELECT (SELECT count(*) FROM papers), (SELECT count(*) FROM sightings)"
        ).fetchall()[0]
    return History(
        path, first_day, last_day, len(run_days), run_time(run_days[-1]), papers, sightings
    )


# ---- the rows of each table -----------------------------------------------------------------


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


def _pages(run_days: list[date]) -> list[_Page]:
    """Every page every run loaded: its own day and the 7 before (weekends only once)."""
    pages: list[_Page] = []
    visits: dict[date, int] = {}
    for run_id, run_day in enumerate(run_days, 1):
        for back in range(REFETCH_DAYS + 1):
            day = run_day - timedelta(back)
            if day < run_days[0] or (day.weekday() >= 5 and day in visits):
                continue
            epoch = visits.get(day, 0)
            visits[day] = epoch + 1
            pages.append(_Page(len(pages) + 1, run_id, day, epoch, run_time(run_day)))
    return pages


def _runs_table(run_days: list[date]) -> pa.Table:
    return pa.table(
        {
            "run_id": list(range(1, len(run_days) + 1)),
            "started_at": [run_time(d) for d in run_days],
            "params": [json.dumps({"date": d.isoformat()}) for d in run_days],
        }
    )


def _pages_table(pages: list[_Page]) -> pa.Table:
    return pa.table(
        {
            "page_id": [p.page_id for p in pages],
            "run_id": [p.run_id for p in pages],
            "digest_date": pa.array([p.day for p in pages], pa.date32()),
            "fetched_at": [p.seen_at for p in pages],
            "n_entries": [synthetic.papers_on(p.day) for p in pages],
        }
    )


def _sightings_table(pages: list[_Page]) -> pa.Table:
    columns: dict[str, list] = {k: [] for k in ("page_id", "position", "paper_id", "upvotes")}
    for page in pages:
        for position in range(synthetic.papers_on(page.day)):
            columns["page_id"].append(page.page_id)
            columns["position"].append(position)
            columns["paper_id"].append(synthetic.paper_id(page.day, position))
            columns["upvotes"].append(synthetic.upvotes(page.day, position, page.epoch))
    return pa.table(columns)


def _papers_table(pages: list[_Page]) -> pa.Table:
    days = sorted({p.day for p in pages})
    papers = [history_paper(day, j) for day in days for j in range(synthetic.papers_on(day))]
    return papers_table(papers, None)


def history_paper(day: date, position: int, epoch: int = 0) -> Paper:
    """The paper at `position` of `day`'s list, as parsing the synthetic API page gives it."""
    template = _template_papers()[synthetic.template_index(day, position)]
    paper_id = synthetic.paper_id(day, position)
    return replace(
        template,
        paper_id=paper_id,
        arxiv_id=paper_id,
        title=clean_title(synthetic.title(day, position)) or paper_id,
        rank=position + 1,
        published_on=day - timedelta(1),
        digest_date=day,
        upvotes=synthetic.upvotes(day, position, epoch),
        comments=position % 7,
    )


@cache
def _template_papers() -> tuple[Paper, ...]:
    templates = []
    for item in synthetic.item_pool():
        parsed = parse_api([json.loads(item)], digest_date=date(2025, 1, 1))
        templates.append(parsed.papers[0])
    return tuple(templates)


def _digest_items_table(run_days: list[date]) -> pa.Table:
    """What each run's digest mailed: the day's papers as new, 10 of the day before trending."""
    columns: dict[str, list] = {k: [] for k in ("digest_key", "paper_id", "section", "upvotes")}
    for previous, day in zip([None, *run_days], run_days, strict=False):
        mailed = [(day, j, "new", 0) for j in range(synthetic.papers_on(day))]
        if previous is not None:
            mailed += [(previous, j, "trending", 1) for j in range(TRENDING_PER_DIGEST)]
        for paper_day, position, section, epoch in mailed:
            columns["digest_key"].append(day.isoformat())
            columns["paper_id"].append(synthetic.paper_id(paper_day, position))
            columns["section"].append(section)
            columns["upvotes"].append(synthetic.upvotes(paper_day, position, epoch))
    return pa.table(columns)


# ---- bulk inserts ---------------------------------------------------------------------------

RUNS_SQL = """
INSERT INTO runs
SELECT run_id, 'daily', started_at, started_at + INTERVAL 1 MINUTE, 'ok', params::JSON, NULL, NULL
FROM batch
"""
PAGES_SQL = """
INSERT INTO pages
SELECT page_id, run_id, 'api', 'api',
       'http://127.0.0.1/api/daily_papers?date=' || digest_date || '&limit=100&p=0',
       digest_date, fetched_at, sha256(page_id::VARCHAR), 200, 'application/json', NULL, NULL,
       n_entries, 0, fetched_at, 'date-header', false
FROM batch ORDER BY page_id;
INSERT INTO page_archive_0 SELECT page_id, 'zlib', 2, $placeholder FROM batch ORDER BY page_id;
INSERT INTO day_loads
SELECT digest_date, 'api', run_id, fetched_at, 1, n_entries FROM batch ORDER BY page_id;
"""
SIGHTINGS_SQL = """
INSERT INTO sightings (run_id, page_id, paper_id, digest_date, rank, upvotes, comments, seen_at,
                       captured_at, capture_estimated)
SELECT p.run_id, b.page_id, b.paper_id, p.digest_date, b.position + 1, b.upvotes, b.position % 7,
       p.fetched_at, p.captured_at, false
FROM batch b JOIN pages p USING (page_id)
ORDER BY b.page_id, b.position
"""
PAPERS_SQL = """
INSERT INTO papers
SELECT b.paper_id, b.title_key, b.arxiv_id, b.title, b.abstract, b.authors, b.n_authors,
       b.published_on, b.github_url, b.project_url, b.ai_summary, b.ai_keywords, b.organization,
       s.first_seen_at, s.first_seen_run, b.digest_date, s.last_seen_at, s.first_seen_at,
       b.fields_hash
FROM batch b
JOIN (SELECT paper_id, min(seen_at) AS first_seen_at, min(run_id) AS first_seen_run,
             max(seen_at) AS last_seen_at
      FROM sightings GROUP BY paper_id) s USING (paper_id)
ORDER BY s.first_seen_run, b.paper_id;
UPDATE sightings s SET github_url = p.github_url FROM papers p WHERE p.paper_id = s.paper_id;
"""
DIGESTS_SQL = """
INSERT INTO digests
SELECT digest_key, CAST(digest_key AS DATE), r.run_id, r.started_at + INTERVAL 5 MINUTE,
       count(*), 1, r.started_at
FROM batch b JOIN runs r ON r.params->>'date' = b.digest_key
GROUP BY ALL;
INSERT INTO digest_items
SELECT b.digest_key, b.paper_id, b.section, b.upvotes, d.delivered_at
FROM batch b JOIN digests d USING (digest_key)
ORDER BY d.delivered_at, b.paper_id;
"""


def _insert(wh: Warehouse, name: str, batch: pa.Table, sql: str) -> None:
    """Run the `;`-separated statements of `sql` with `batch` registered, in one transaction."""
    wh.con.register("batch", batch)
    try:
        with wh.transaction():
            for statement in filter(str.strip, sql.split(";")):
                params = {"placeholder": PLACEHOLDER} if "$placeholder" in statement else {}
                wh.con.execute(statement, params)
    finally:
        wh.con.unregister("batch")


def _restart_sequences(wh: Warehouse, runs: int, pages: int) -> None:
    """Make the next run and page ids follow the history (DuckDB has no setval)."""
    for name, next_value in (("run_id_seq", runs + 1), ("page_id_seq", pages + 1)):
        wh.con.execute(f"DROP SEQUENCE {name}")
        wh.con.execute(f"CREATE SEQUENCE {name} START {next_value}")


def papers_table(papers: list[Paper], page_date: date | None) -> pa.Table:
    """An Arrow table of cleaned papers with their title keys, for bulk-written histories."""

    def col(name: str) -> list[Any]:
        return [getattr(p, name) for p in papers]

    return pa.table(
        {
            "paper_id": pa.array(col("paper_id"), pa.string()),
            "title_key": pa.array([title_key(p.title) for p in papers], pa.string()),
            "arxiv_id": pa.array(col("arxiv_id"), pa.string()),
            "title": pa.array(col("title"), pa.string()),
            "abstract": pa.array(col("abstract"), pa.string()),
            "authors": pa.array([list(p.authors) for p in papers], pa.list_(pa.string())),
            "n_authors": pa.array(
                [
                    p.n_authors if p.n_authors is not None else (len(p.authors) or None)
                    for p in papers
                ],
                pa.int32(),
            ),
            "published_on": pa.array(col("published_on"), pa.date32()),
            "github_url": pa.array(col("github_url"), pa.string()),
            "project_url": pa.array(col("project_url"), pa.string()),
            "ai_summary": pa.array(col("ai_summary"), pa.string()),
            "ai_keywords": pa.array([list(p.ai_keywords) for p in papers], pa.list_(pa.string())),
            "organization": pa.array(col("organization"), pa.string()),
            "digest_date": pa.array([p.digest_date or page_date for p in papers], pa.date32()),
            "rank": pa.array(col("rank"), pa.int32()),
            "upvotes": pa.array(col("upvotes"), pa.int32()),
            "comments": pa.array(col("comments"), pa.int32()),
            "github_stars": pa.array(col("github_stars"), pa.int32()),
            "fields_hash": pa.array([_fields_hash(p) for p in papers], pa.string()),
        }
    )


def _fields_hash(paper: Paper) -> str:
    """The fields hash a load records for the paper (see flows.pagebatch.fields_hash)."""
    return fields_hash(list(first_fields(paper).values()))


def main(argv: list[str]) -> int:
    """`python -m bench.history WORKDIR DAYS…`: build the histories a run needs, ahead of it."""
    ctx = Context(quick=False, workdir=Path(argv[0]))
    for n_days in argv[1:]:
        history = history_for(ctx, int(n_days))
        print(f"{n_days} days: {history.papers:,} papers, {history.sightings:,} sightings")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
