"""The backfill as plain functions, without Prefect: the pipeline's own time.

It does what `flows.backfill.backfill` does for days not yet complete (fetch and parse the
same batches of days, bounded by days and by bytes, on 4 threads sharing one client, load each
batch in one transaction in this thread with DuckDB's memory capped and mark its days complete,
record the run), with a thread pool instead of Prefect tasks. The client-side rate limit is
lifted as for the benchmarked command, by the caller's PAPERDIGEST_RATE_LIMIT=off.

    python -m bench.plain_backfill TIMINGS.json DB START END api|html
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

from flows import pipeline  # noqa: E402
from flows.backfill import (  # noqa: E402
    LOAD_MEMORY_MB,
    MAX_BATCH_BYTES,
    batches_in_flight,
    batches_of,
    requeue_unfetched,
)
from flows.fetch import FetchSettings, HFClient  # noqa: E402
from flows.warehouse import Warehouse  # noqa: E402

WORKERS = 4  # `paperdigest backfill`'s default --workers


def run_backfill(db: Path, start: date, end: date, source: str) -> dict[str, int]:
    """Fetch and load every day of [start, end]; returns loaded/failed/entries counts."""
    days = [start + timedelta(n) for n in range((end - start).days + 1)]
    counts = {"loaded": 0, "failed": 0, "entries": 0}
    settings = FetchSettings.from_env()  # PAPERDIGEST_RATE_LIMIT=off from the caller
    with Warehouse.open(db) as wh:
        run_id = wh.start_run("backfill", {"start": str(start), "end": str(end), "source": source})
        done = wh.complete_days(start, end, source)
        todo = [d for d in days if d not in done]
        with (
            wh.memory_capped(LOAD_MEMORY_MB),
            HFClient(settings) as client,
            ThreadPoolExecutor(WORKERS) as pool,
        ):
            waiting, in_flight = deque(batches_of(todo, WORKERS)), {}
            while waiting or in_flight:  # the flow's bounded window of batches in flight
                while waiting and len(in_flight) < batches_in_flight(WORKERS):
                    batch = waiting.popleft()
                    args = (client, batch, source, MAX_BATCH_BYTES)
                    in_flight[pool.submit(pipeline.fetch_days, *args)] = batch
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch, fetched = in_flight.pop(future), future.result()
                    requeue_unfetched(waiting, batch, fetched)
                    for result in pipeline.load_days(wh, fetched, run_id, source):
                        counts[result.status] += 1
                        counts["entries"] += result.entries
        wh.finish_run(run_id, "partial" if counts["failed"] else "ok", counts)
    return counts


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
