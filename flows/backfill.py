"""Prefect flows for ad-hoc backfills, and the deployments `paperdigest serve` registers.

A backfill fetches batches of consecutive days concurrently (a task per batch, on threads or a
Dask cluster with `--dask`) inside the client's process-wide rate limit, and parses them there.
Every warehouse write stays in the flow's thread: a batch's pages and the days it completes are
loaded in one transaction. A batch is bounded by days and by bytes: a task that has fetched
MAX_BATCH_BYTES hands back what it has, and the rest of its days go back in the queue. It
resumes: days already complete are skipped unless `refresh`. A failed day never stops the
others, and a day whose fetch failed is tried again.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import queue
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flows import daily, pipeline
from flows.config import Settings, load_settings, zone
from flows.fetch import FetchSettings, HFClient
from flows.heartbeats import flow_run_heartbeats
from flows.pipeline import DayResult, FetchedDay
from flows.warehouse import Warehouse, WarehouseError

# The most days one fetch task takes. A task costs Prefect 50-90 ms of bookkeeping on a busy
# machine (a three-year backfill in per-day tasks spent over a minute there), and each batch is
# one commit; two-month batches make a three-year backfill 18 tasks and 18 commits.
MAX_BATCH_DAYS = 62
# DuckDB's memory while a backfill loads (see Warehouse.memory_capped): a three-year backfill
# peaked ~150 MB higher uncapped and ~50 MB higher at 128 MiB, and was no faster. 64 MiB still
# loads a month into a ten-year warehouse (its key indexes must fit).
LOAD_MEMORY_MB = 64
# The most page bytes (as received) one fetch task holds before it hands its days back. Two
# months of ordinary days are 6-10 MB of API answers or ~19 MB of HTML pages, so this does not
# split them (a split costs a task and a transaction); it bounds the memory a backfill holds in
# flight (batches_in_flight of them) when the pages are large, as trending pages of 1.5 MB are:
# 62 of those would be 93 MB a batch.
MAX_BATCH_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class BackfillReport:
    """Every day's result, in date order."""

    days: list[DayResult] = field(default_factory=list)

    @property
    def failed(self) -> list[DayResult]:
        """The days that could not be fetched or loaded."""
        return [d for d in self.days if d.status == "failed"]

    def counts(self) -> dict[str, int]:
        """Totals for the run row and the artifact."""
        by = {s: sum(d.status == s for d in self.days) for s in ("loaded", "skipped", "failed")}
        return by | {
            "pages": sum(d.pages for d in self.days),
            "entries": sum(d.entries for d in self.days),
            "new_papers": sum(d.new_papers for d in self.days),
        }


@cache
def _process_client(settings: FetchSettings) -> HFClient:
    """One client per process: its session and rate limit are shared by the worker threads."""
    return HFClient(settings)


@task(cache_policy=NO_CACHE)
def fetch_backfill_days(settings: FetchSettings, days: list[date], source: str) -> list[FetchedDay]:
    """Fetch and parse a batch of days (in a worker thread, or on a Dask worker); it may
    return only the first of them, once it holds MAX_BATCH_BYTES."""
    return pipeline.fetch_days(_process_client(settings), days, source, MAX_BATCH_BYTES)


def batches_of(days: list[date], workers: int) -> list[list[date]]:
    """Consecutive days in batches: a few per worker, so the workers stay busy to the end,
    and at most MAX_BATCH_DAYS each, so progress and resumption stay fine-grained."""
    size = max(1, min(MAX_BATCH_DAYS, math.ceil(len(days) / (max(1, workers) * 4))))
    return [days[n : n + size] for n in range(0, len(days), size)]


def batches_in_flight(workers: int) -> int:
    """How many batches to have submitted at once: one per worker and one waiting, so no
    worker idles while the flow loads a batch. Memory holds these, not the whole range."""
    return max(1, workers) + 1


def requeue_unfetched(
    waiting: deque[list[date]], batch: list[date], fetched: list[FetchedDay]
) -> None:
    """Put back, first in line, the days of `batch` a task left unfetched (it stopped at
    MAX_BATCH_BYTES; its days so far are a prefix of the batch)."""
    if len(fetched) < len(batch):
        waiting.appendleft(batch[len(fetched) :])


def days_between(start: date, end: date) -> list[date]:
    """Every date from start to end inclusive."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    return [start + timedelta(n) for n in range((end - start).days + 1)]


@flow(name="backfill", log_prints=True)
def backfill(
    start: str,
    end: str,
    source: str = "api",
    refresh: bool = False,
    workers: int = 4,
    db: str | None = None,
    progress: bool = False,
    wait: float | None = None,
    publish: bool = True,
) -> dict[str, Any]:
    """Fetch and load a date range, then publish the archive site (unless `publish` is off);
    sends no email."""
    settings = load_settings(source=source, db=daily._path(db), lock_wait=wait)
    days = days_between(date.fromisoformat(start), date.fromisoformat(end))
    try:
        with flow_run_heartbeats(), Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
            run_id = wh.start_run("backfill", {"start": start, "end": end, "source": source})
            try:
                with wh.memory_capped(LOAD_MEMORY_MB):
                    report = _backfill_days(wh, run_id, days, settings, refresh, workers, progress)
            except WarehouseError as exc:
                with contextlib.suppress(WarehouseError):
                    wh.finish_run(run_id, "failed", {}, error=str(exc))
                raise
            counts = report.counts()
            wh.finish_run(run_id, "partial" if report.failed else "ok", counts)
            # the last step: the archive shows the new days
            site = daily.publish(wh, settings) if publish else None
    except WarehouseError as exc:
        return daily.failed_result(str(exc))
    failures = [f"{d.day}: {d.error}" for d in report.failed]
    failures += [site.line()] if site and site.error else []
    site_counts = daily.site_counts(site) if site else {}
    daily._publish_artifact("backfill", days[-1], counts | site_counts, failures)
    status = "partial" if report.failed or (site and site.error) else "ok"
    return {
        "run_id": run_id,
        "counts": counts,
        "days": report.days,
        "status": status,
        "site": site.line() if site else None,
    }


def _backfill_days(
    wh: Warehouse,
    run_id: int,
    days: list[date],
    settings: Settings,
    refresh: bool,
    workers: int,
    show_progress: bool,
) -> BackfillReport:
    """Fetch and load the days not yet complete. Days whose fetch failed are tried again, in
    up to `task_retries` more rounds `task_retry_delay` seconds apart."""
    done = set() if refresh else wh.complete_days(days[0], days[-1], settings.source)
    report = BackfillReport([DayResult(d, "skipped") for d in days if d in done])
    todo = [d for d in days if d not in done]
    with _progress(len(todo), show_progress) as progress:

        def finished(results: list[DayResult]) -> None:
            report.days.extend(results)
            progress.advance(results)

        for round_ in range(settings.task_retries + 1):
            if round_:
                time.sleep(settings.task_retry_delay)
            retry = round_ < settings.task_retries
            todo = _fetch_and_load(wh, run_id, todo, settings.source, workers, finished, retry)
            if not todo:
                break
    report.days.sort(key=lambda d: d.day)
    return report


def _fetch_and_load(
    wh: Warehouse,
    run_id: int,
    days: list[date],
    source: str,
    workers: int,
    finished: Callable[[list[DayResult]], None],
    retry: bool,
) -> list[date]:
    """One round: batches of days fetched by tasks, each batch loaded (one transaction) as it
    arrives. Returns the days whose fetch failed when they are to be tried again (`retry`);
    every other day's result goes to `finished`."""
    settings = FetchSettings.from_env()
    waiting = deque(batches_of(days, workers))
    in_flight: dict[Any, list[date]] = {}  # future → its days
    done: queue.SimpleQueue = queue.SimpleQueue()
    again: list[date] = []
    while waiting or in_flight:
        while waiting and len(in_flight) < batches_in_flight(workers):
            future = fetch_backfill_days.submit(settings, waiting[0], source)
            in_flight[future] = waiting.popleft()
            future.add_done_callback(done.put)
        future = done.get()
        batch = in_flight.pop(future)
        fetched = _fetched(future, batch)
        requeue_unfetched(waiting, batch, fetched)
        results = pipeline.load_days(wh, fetched, run_id, source)
        failed_fetch = {d.day for d in fetched if d.error} if retry else set()
        again += sorted(failed_fetch)
        finished([r for r in results if r.day not in failed_fetch])
    return again


def _fetched(future: Any, days: list[date]) -> list[FetchedDay]:
    """A batch task's days, or (the task crashed) each day failed with the task's reason."""
    try:
        return future.result()
    except Exception as exc:  # a crashed task fails its days, not the backfill
        exc.__traceback__ = None  # Prefect keeps the exception; do not pin the flow's frames
        return [FetchedDay(d, error=f"{type(exc).__name__}: {exc}") for d in days]


class _progress:
    """A rich progress bar with ETA on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.bar = (
            Progress(
                TextColumn("backfill"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} days"),
                TimeRemainingColumn(),
                TextColumn("{task.description}"),
                transient=False,
            )
            if enabled
            else None
        )
        self.done = 0

    def __enter__(self) -> _progress:
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self

    def advance(self, results: list[DayResult]) -> None:
        """Count a batch of days as done (one log line per batch when there is no terminal)."""
        self.done += len(results)
        failed = [r for r in results if r.status == "failed"]
        span = f"{results[0].day}..{results[-1].day}" if results else ""
        if self.bar:
            self.bar.update(self.task, advance=len(results), description=span)
        elif results:
            get_run_logger().info(
                "%d/%d days; %s: %d loaded, %d failed%s",
                self.done,
                self.total,
                span,
                len(results) - len(failed),
                len(failed),
                "".join(f"; {r.day}: {r.error}" for r in failed),
            )

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()


def run_backfill_cli(args: argparse.Namespace, settings: Settings) -> int:
    """`paperdigest backfill`: run the flow, print a summary table, exit 1 naming failed days."""
    chosen = backfill.with_options(task_runner=_task_runner(args.workers, args.dask))
    result = chosen(
        start=args.start.isoformat(),
        end=args.end.isoformat(),
        source=args.source or settings.source,
        refresh=args.refresh,
        workers=args.workers,
        db=str(settings.db),
        progress=sys.stderr.isatty(),
        wait=settings.lock_wait,
        publish=args.publish,
    )
    if result["status"] == "failed":
        print(f"paperdigest: {result['error']}", file=sys.stderr)
        return 1
    print_backfill_summary(result["days"], result["counts"])
    if result.get("site"):
        print(result["site"])
    failed = [d for d in result["days"] if d.status == "failed"]
    for d in failed:
        print(f"paperdigest: {d.day} failed: {d.error}", file=sys.stderr)
    if args.email and not failed:
        daily.daily_digest(date=args.end.isoformat(), db=str(settings.db), offline_dir=None)
    return 1 if failed else 0


def print_backfill_summary(days: list[DayResult], counts: dict[str, int]) -> None:
    """The table a backfill ends with."""
    table = Table(title="backfill")
    for name in ("days", "loaded", "skipped", "failed", "pages", "entries", "new papers"):
        table.add_column(name, justify="right")
    table.add_row(
        str(len(days)),
        *(str(counts[k]) for k in ("loaded", "skipped", "failed", "pages", "entries")),
        str(counts["new_papers"]),
    )
    Console().print(table)


def _task_runner(workers: int, dask_address: str | None) -> Any:
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=max(1, workers))


def build_deployments(settings: Settings, cron: str | None = None, timezone: str | None = None):
    """The `daily` (cron, in a timezone) and `backfill` (ad hoc) deployments."""
    from prefect.schedules import Cron

    cron = cron or settings.cron
    timezone = timezone or settings.timezone
    zone(timezone)  # refuse an invalid timezone before Prefect sees it
    daily_deployment = daily.daily_digest.to_deployment(
        name="daily",
        schedules=[Cron(cron, timezone=timezone)],
        description="The daily digest: fetch, load, diff, render, deliver.",
    )
    backfill_deployment = backfill.to_deployment(
        name="backfill", description="Fetch and load a date range (ad hoc)."
    )
    return daily_deployment, backfill_deployment


def serve_deployments(args: argparse.Namespace, settings: Settings) -> int:
    """`paperdigest serve`: register the deployments and serve them until interrupted."""
    deployments = build_deployments(settings, args.cron, args.timezone)
    for dep in deployments:
        schedules = ", ".join(
            f"{s.schedule.cron} ({s.schedule.timezone})" for s in dep.schedules or []
        )
        print(f"deployment {dep.flow_name}/{dep.name}: {schedules or 'ad hoc'}")
    if args.dry_run:
        return 0
    from prefect import serve

    serve(*deployments, pause_on_shutdown=False)
    return 0
