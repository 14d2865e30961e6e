"""The backfill as plain functions, without Prefect: the pipeline's own time.

It does what `flows.backfill.backfill` does for days not yet complete (fetch on 4 threads
sharing one client, parse and load each page in one transaction in this thread, mark the day
complete, record the run), with a thread pool instead of Prefect tasks. The client-side rate
limit is lifted as for the benchmarked command.

    python -m bench.plain_backfill TIMINGS.json DB START END api|html
"""

from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

from bench.unthrottled_cli import LIFTED_LIMIT  # noqa: E402
from flows import pipeline  # noqa: E402
from flows.fetch import FetchError, FetchSettings, HFClient  # noqa: E402
from flows.pipeline import RunTotals  # noqa: E402
from flows.warehouse import Warehouse  # noqa: E402

WORKERS = 4  # `paperdigest backfill`'s default --workers


def run_backfill(db: Path, start: date, end: date, source: str) -> dict[str, int]:
    """Fetch and load every day of [start, end]; returns loaded/failed/entries counts."""
    days = [start + timedelta(n) for n in range((end - start).days + 1)]
    counts = {"loaded": 0, "failed": 0, "entries": 0}
    settings = FetchSettings.from_env(api_per_5min=LIFTED_LIMIT, pages_per_5min=LIFTED_LIMIT)
    with Warehouse.open(db) as wh:
        run_id = wh.start_run("backfill", {"start": str(start), "end": str(end), "source": source})
        done = wh.complete_days(start, end, source)
        with HFClient(settings) as client, ThreadPoolExecutor(WORKERS) as pool:
            futures = {pool.submit(client.fetch_day, d, source): d for d in days if d not in done}
            for future in as_completed(futures):
                load_day(wh, run_id, futures[future], future, source, counts)
        wh.finish_run(run_id, "partial" if counts["failed"] else "ok", counts)
    return counts


def load_day(
    wh: Warehouse, run_id: int, day: date, future: object, source: str, counts: dict[str, int]
) -> None:
    """Load one fetched day's pages and mark it complete (a failed day is only counted)."""
    try:
        pages = future.result()  # type: ignore[attr-defined]
    except FetchError:
        counts["failed"] += 1
        return
    totals = RunTotals()
    for outcome in pipeline.ingest_pages(wh, pages, run_id, day):
        totals.add(outcome)
    if totals.failures:
        counts["failed"] += 1
        return
    wh.mark_day_complete(day, source, run_id, len(pages), totals.entries)
    counts["loaded"] += 1
    counts["entries"] += totals.entries


def main(argv: list[str]) -> int:
    """Run once; write the timings and this process's peak RSS to TIMINGS.json."""
    timings_path, db, start, end, source = argv
    began = time.perf_counter()
    counts = run_backfill(Path(db), date.fromisoformat(start), date.fromisoformat(end), source)
    timings = counts | {
        "command_s": time.perf_counter() - began,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(timings_path).write_text(json.dumps(timings))
    return 0 if not counts["failed"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
