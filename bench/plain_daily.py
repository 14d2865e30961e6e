"""The daily run as plain functions, without Prefect: the pipeline's own time.

It does what `flows.daily.daily_digest` does, step for step (fetch today, the re-fetch window
and gaps on the same thread-pool width, load, diff, dead-man's check, render and deliver,
record the run), calling `flows.pipeline` directly instead of through Prefect tasks.

    python -m bench.plain_daily TIMINGS.json DB OUTBOX YYYY-MM-DD
"""

from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

from flows import pipeline  # noqa: E402
from flows.config import Settings, load_settings  # noqa: E402
from flows.diff import DiffSettings, compute_diff  # noqa: E402
from flows.fetch import FetchError, FetchSettings, HFClient  # noqa: E402
from flows.pipeline import PageOutcome, RunTotals  # noqa: E402
from flows.warehouse import Warehouse  # noqa: E402


def run_daily(db: Path, outbox: Path, day: date) -> dict[str, float | str]:
    """One daily run; returns the seconds of each step and the summary line."""
    settings = load_settings(db=db, outbox=outbox)
    steps: dict[str, float] = {}
    began = time.perf_counter()
    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        run_id = wh.start_run("daily", {"date": day.isoformat(), "offline_dir": None})
        totals = RunTotals()
        mark = time.perf_counter()
        for outcome in fetch_and_load(wh, run_id, day, settings):
            totals.add(outcome)
        steps["fetch_load_s"], mark = time.perf_counter() - mark, time.perf_counter()
        diff_settings = DiffSettings(window_days=settings.window_days, min_gain=settings.min_gain)
        digest = compute_diff(wh, run_id=run_id, digest_date=day, settings=diff_settings)
        pipeline.deadman_warning(wh, day, settings.deadman_weekdays)
        steps["diff_s"], mark = time.perf_counter() - mark, time.perf_counter()
        delivery = pipeline.deliver_run_digest(wh, digest, run_id, settings)
        steps["deliver_s"] = time.perf_counter() - mark
        n_papers = wh.papers_on_pages(totals.page_ids)
        ok = not (totals.failures or delivery.failed)
        wh.finish_run(run_id, "ok" if ok else "partial", totals.as_dict())
    line = pipeline.summary_line(totals, n_papers, delivery.destination, delivery.note)
    return steps | {"pipeline_s": time.perf_counter() - began, "summary": line}


def fetch_and_load(wh: Warehouse, run_id: int, day: date, settings: Settings) -> list:
    """Fetch the days the flow would, concurrently, and load them in this thread."""
    days = pipeline.days_to_fetch(wh, day, settings.refetch_days, settings.gap_days)
    outcomes: list[PageOutcome] = []
    with (
        HFClient(FetchSettings.from_env(), validators=wh.validator_lookup()) as client,
        ThreadPoolExecutor() as pool,  # the width of Prefect's default ThreadPoolTaskRunner
    ):
        futures = {d: pool.submit(client.fetch_day, d, settings.source) for d in days}
        for d, future in futures.items():
            try:
                pages = future.result()
            except FetchError as exc:
                outcomes.append(PageOutcome(str(d), d, error=str(exc)))
                continue
            outcomes += pipeline.ingest_pages(wh, pages, run_id, day)
    return outcomes


def main(argv: list[str]) -> int:
    """Run once; write the step timings and this process's peak RSS to TIMINGS.json."""
    timings_path, db, outbox, day = argv
    timings = run_daily(Path(db), Path(outbox), date.fromisoformat(day))
    timings["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(timings_path).write_text(json.dumps(timings))
    print(timings["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
