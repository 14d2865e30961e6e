"""Prefect flows for ad-hoc backfills, and the deployments `paperdigest serve` registers.

A backfill fetches days concurrently (threads, or a Dask cluster with `--dask`) inside the
client's process-wide rate limit; every warehouse write stays in the flow's thread. It resumes:
days already complete are skipped unless `refresh`. A failed day never stops the others.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flows import daily, pipeline
from flows.config import Settings, load_settings, zone
from flows.fetch import FetchError, FetchSettings, HFClient
from flows.models import RawPage
from flows.pipeline import RunTotals
from flows.warehouse import Warehouse, WarehouseError


@dataclass(slots=True)
class DayResult:
    """How one day of a backfill went."""

    day: date
    status: str  # loaded | skipped | failed
    pages: int = 0
    entries: int = 0
    new_papers: int = 0
    error: str = ""


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


@task(retries=2, retry_delay_seconds=30, cache_policy=NO_CACHE, tags=["io"])
def fetch_backfill_day(settings: FetchSettings, day: date, source: str) -> list[RawPage]:
    """Fetch one day (runs in a worker thread, or on a Dask worker)."""
    return _process_client(settings).fetch_day(day, source)


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
) -> dict[str, Any]:
    """Fetch and load a date range; sends no email."""
    settings = load_settings(source=source, db=daily._path(db), lock_wait=wait)
    days = days_between(date.fromisoformat(start), date.fromisoformat(end))
    try:
        with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
            run_id = wh.start_run("backfill", {"start": start, "end": end, "source": source})
            report = _backfill_days(wh, run_id, days, settings, refresh, progress)
            counts = report.counts()
            wh.finish_run(run_id, "partial" if report.failed else "ok", counts)
    except WarehouseError as exc:
        return daily.failed_result(str(exc))
    failures = [f"{d.day}: {d.error}" for d in report.failed]
    daily._publish_artifact("backfill", days[-1], counts, failures)
    status = "partial" if report.failed else "ok"
    return {"run_id": run_id, "counts": counts, "days": report.days, "status": status}


def _backfill_days(
    wh: Warehouse,
    run_id: int,
    days: list[date],
    settings: Settings,
    refresh: bool,
    show_progress: bool,
) -> BackfillReport:
    done = set() if refresh else wh.complete_days(days[0], days[-1], settings.source)
    report = BackfillReport([DayResult(d, "skipped") for d in days if d in done])
    todo = [d for d in days if d not in done]
    fetch_settings = FetchSettings.from_env()
    fetch = fetch_backfill_day.with_options(
        retries=settings.task_retries, retry_delay_seconds=settings.task_retry_delay
    )
    futures = {fetch.submit(fetch_settings, d, settings.source): d for d in todo}
    with _progress(len(todo), show_progress) as advance:
        for future in as_completed(list(futures)):
            day = futures[future]
            report.days.append(_load_day(wh, run_id, day, future, settings.source))
            advance(day, report.days[-1])
    report.days.sort(key=lambda d: d.day)
    return report


def _load_day(wh: Warehouse, run_id: int, day: date, future: Any, source: str) -> DayResult:
    try:
        pages = future.result()
    except Exception as exc:  # a crashed task is a failed day, not a failed backfill
        exc.__traceback__ = None  # Prefect keeps the exception; do not pin the flow's frames
        reason = str(exc) if isinstance(exc, FetchError) else f"{type(exc).__name__}: {exc}"
        return DayResult(day, "failed", error=reason)
    totals = RunTotals()
    for outcome in pipeline.ingest_pages(wh, pages, run_id, day):
        totals.add(outcome)
    if totals.failures:
        return DayResult(day, "failed", totals.pages, totals.entries, error=totals.failures[0])
    wh.mark_day_complete(day, source, run_id, len(pages), totals.entries)
    return DayResult(day, "loaded", totals.pages, totals.entries, totals.new_papers)


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

    def __enter__(self) -> Any:
        if self.bar:
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self.advance

    def advance(self, day: date, result: DayResult) -> None:
        self.done += 1
        if self.bar:
            self.bar.update(self.task, advance=1, description=f"{day} {result.status}")
        else:
            get_run_logger().info(
                "%d/%d %s %s %s", self.done, self.total, day, result.status, result.error
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
    )
    if result["status"] == "failed":
        print(f"paperdigest: {result['error']}", file=sys.stderr)
        return 1
    print_backfill_summary(result["days"], result["counts"])
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
    from flows.cli import prepare_prefect_env

    prepare_prefect_env()
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
