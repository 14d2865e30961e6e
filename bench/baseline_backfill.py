"""The backfill baseline: the least program that does the same work, without paperdigest.

Plain `requests` with the same concurrency as `paperdigest backfill` (4 threads, one pooled
session), `json.loads` of each API page or of the HTML page's DailyPapers props, the same
fields picked per paper, then one Arrow bulk insert into DuckDB. No Prefect, no validation,
no page archive, no idempotency, no batch transactions: the floor the real thing is judged
against.

    python -m bench.baseline_backfill BASE_URL START END api|html DB TIMINGS.json
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import requests
from requests.adapters import HTTPAdapter

WORKERS = 4  # `paperdigest backfill`'s default --workers
PAGE_LIMIT = 100
_PROPS = re.compile(r'data-target="DailyPapers" data-props="([^"]*)"')
_ENTITIES = (("&quot;", '"'), ("&#39;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
SCHEMA = """
CREATE OR REPLACE TABLE papers (paper_id VARCHAR PRIMARY KEY, title VARCHAR, abstract VARCHAR,
    authors VARCHAR[], published_on DATE, github_url VARCHAR, ai_summary VARCHAR,
    ai_keywords VARCHAR[]);
CREATE OR REPLACE TABLE sightings (paper_id VARCHAR, digest_date DATE, rank INTEGER,
    upvotes INTEGER, comments INTEGER, github_stars INTEGER);
"""


def fetch_items(session: requests.Session, base_url: str, day: date, source: str) -> list[dict]:
    """Every item of one day, from the API (paging while pages are full) or the day page."""
    if source == "html":
        response = session.get(f"{base_url}/papers/date/{day}", timeout=30)
        response.raise_for_status()
        props = _PROPS.search(response.text).group(1)
        for entity, char in _ENTITIES:
            props = props.replace(entity, char)
        return json.loads(props)["dailyPapers"]
    items: list[dict] = []
    for page in range(50):
        url = f"{base_url}/api/daily_papers?date={day}&limit={PAGE_LIMIT}&p={page}"
        response = session.get(url, timeout=30)
        response.raise_for_status()
        batch = json.loads(response.content)
        items += batch
        if len(batch) < PAGE_LIMIT:
            break
    return items


def rows_of(day: date, items: list[dict]) -> list[dict]:
    """The fields paperdigest keeps, one dict per paper, ranked in page order."""
    rows = []
    for rank, item in enumerate(items, 1):
        paper = item["paper"]
        rows.append(
            {
                "paper_id": paper["id"],
                "title": " ".join(paper["title"].split()),
                "abstract": " ".join(paper["summary"].split()),
                "authors": [a["name"] for a in paper.get("authors", [])],
                "published_on": date.fromisoformat(paper["publishedAt"][:10]),
                "github_url": paper.get("githubRepo"),
                "ai_summary": paper.get("ai_summary"),
                "ai_keywords": paper.get("ai_keywords", []),
                "digest_date": day,
                "rank": rank,
                "upvotes": paper.get("upvotes"),
                "comments": item.get("numComments"),
                "github_stars": paper.get("githubStars"),
            }
        )
    return rows


def fetch_all(base_url: str, days: list[date], source: str) -> list[dict]:
    """Fetch and pick the rows of every day with WORKERS threads sharing one session."""
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(pool_maxsize=WORKERS))
        with ThreadPoolExecutor(WORKERS) as pool:
            days_items = pool.map(lambda d: (d, fetch_items(session, base_url, d, source)), days)
            return [row for day, items in days_items for row in rows_of(day, items)]


def bulk_insert(db: Path, rows: list[dict]) -> None:
    """One Arrow table, one INSERT per table."""
    batch = pa.Table.from_pylist(rows)  # noqa: F841 (read by DuckDB's replacement scan)
    con = duckdb.connect(str(db))
    try:
        con.execute(SCHEMA)
        con.execute(
            "INSERT INTO papers SELECT DISTINCT ON (paper_id) paper_id, title, abstract, authors, "
            "published_on, github_url, ai_summary, ai_keywords FROM batch"
        )
        con.execute(
            "INSERT INTO sightings SELECT paper_id, digest_date, rank, upvotes, comments, "
            "github_stars FROM batch"
        )
    finally:
        con.close()


def main(argv: list[str]) -> int:
    """Fetch and load the days; write the timings and this process's peak RSS."""
    base_url, start, end, source, db, timings_path = argv
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    days = [first + timedelta(n) for n in range((last - first).days + 1)]
    began = time.perf_counter()
    rows = fetch_all(base_url, days, source)
    fetched = time.perf_counter()
    bulk_insert(Path(db), rows)
    timings = {
        "command_s": time.perf_counter() - began,
        "fetch_parse_s": fetched - began,
        "papers": len(rows),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(timings_path).write_text(json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
