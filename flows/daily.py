"""Prefect flows: the daily digest and the import of saved pages.

Tasks are coarse (a day's pages, a batch of loads, the diff, the delivery), never one per paper;
only fetch tasks retry (I/O); side-effecting tasks use NO_CACHE; every warehouse write happens in
the flow's own thread, since a DuckDB connection is not thread-safe.

Round trips and overhead per task are kept low (issue 16, item 4): tasks carry no tags, since a
tag makes Prefect lease a concurrency slot from the server for every run even when no limit
exists; and arguments are passed `quote`d, since Prefect otherwise walks every page, paper and
setting in them looking for futures (none is ever passed).
"""

from __future__ import annotations

import contextlib
from datetime import date, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows import pipeline
from flows.capture import parse_as_of
from flows.config import Settings, load_settings
from flows.diff import DiffSettings, compute_diff, since_last_delivery
from flows.fetch import FetchError, FetchSettings, HFClient
from flows.heartbeats import flow_run_heartbeats
from flows.models import Digest, RawPage
from flows.pipeline import DeliveryOutcome, PageOutcome, RunTotals, deliver_run_digest
from flows.site import PublishReport, publish_after_run
from flows.warehouse import Warehouse, WarehouseError


@task(retries=2, retry_delay_seconds=30, cache_policy=NO_CACHE)
def fetch_day(client: HFClient, day: date, source: str) -> list[RawPage]:
    """Fetch one digest day (all its API pages, or its HTML page)."""
    return client.fetch_day(day, source)


@task(cache_policy=NO_CACHE)
def load_pages(wh: Warehouse, pages: list[RawPage], run_id: int, today: date) -> list[PageOutcome]:
    """Parse the pages fetched for every day of the run and load them in one transaction."""
    return pipeline.ingest_pages(wh, pages, run_id, today)


@task(cache_policy=NO_CACHE)
def load_files(
    wh: Warehouse,
    files: list[Path],
    run_id: int,
    day: date | None,
    today: date,
    as_of: datetime | None = None,
) -> list[PageOutcome]:
    """Read and load saved pages, one at a time, one transaction each."""
    return pipeline.ingest_files(wh, files, run_id, day, today, as_of)


@task(cache_policy=NO_CACHE)
def diff_run(wh: Warehouse, run_id: int, day: date, settings: Settings) -> Digest:
    """The digest of this run against history."""
    diff_settings = DiffSettings(window_days=settings.window_days, min_gain=settings.min_gain)
    since = since_last_delivery(wh, run_id)
    return compute_diff(wh, run_id=run_id, digest_date=day, since_run=since, settings=diff_settings)


@task(cache_policy=NO_CACHE)
def deliver(
    wh: Warehouse, digest: Digest, run_id: int, settings: Settings, resend: bool
) -> DeliveryOutcome:
    """Render and deliver the digest to every due recipient, exactly once each."""
    return deliver_run_digest(wh, digest, run_id, settings, resend=resend)


@task(cache_policy=NO_CACHE)
def publish(wh: Warehouse, settings: Settings) -> PublishReport:
    """Publish the archive site and feeds: only the pages whose inputs changed are rendered."""
    report = publish_after_run(wh, settings)
    get_run_logger().info(report.line())
    return report


@flow(name="daily-digest", log_prints=True)
def daily_digest(
    date: str | None = None,
    offline_dir: str | None = None,
    source: str | None = None,
    db: str | None = None,
    outbox: str | None = None,
    resend: bool = False,
    wait: float | None = None,
    as_of: str | None = None,
) -> dict[str, object]:
    """Fetch today (and re-fetch recent days) → load → diff → render → deliver.

    `as_of` (ISO time, offline runs only) is when the saved pages were captured.

    A warehouse that cannot be opened or written (busy, full disk) ends the run with status
    "failed" and a one-line `error`, not an exception, so no traceback reaches the user.
    """
    settings = load_settings(source=source, db=_path(db), outbox=_path(outbox), lock_wait=wait)
    day = _day(date, settings)
    try:
        with flow_run_heartbeats(), Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
            return _daily_run(wh, day, settings, offline_dir, resend, _maybe_time(as_of))
    except WarehouseError as exc:
        return failed_result(str(exc))


def _daily_run(
    wh: Warehouse,
    day: date,
    settings: Settings,
    offline_dir: str | None,
    resend: bool,
    as_of: datetime | None = None,
) -> dict[str, object]:
    logger = get_run_logger()
    params = {"date": day.isoformat(), "offline_dir": offline_dir}
    run_id = wh.start_run("daily", params | ({"as_of": as_of.isoformat()} if as_of else {}))
    totals = RunTotals()
    for outcome in _gather_pages(wh, run_id, day, settings, offline_dir, as_of):
        totals.add(outcome)
    if totals.fatal:
        return _stop_run(wh, run_id, totals)
    digest = diff_run(quote(wh), run_id, day, quote(settings))
    alarm = pipeline.deadman_warning(wh, day, settings.deadman_weekdays)
    if alarm:
        logger.error("DEAD-MAN'S SWITCH: %s", alarm)
        pipeline.alert_operator(settings, alarm)
    delivery = deliver(quote(wh), quote(digest), run_id, quote(settings), resend)
    site = publish(quote(wh), quote(settings))
    n_papers = wh.papers_on_pages(totals.page_ids)
    counts = _run_counts(totals, digest, delivery, n_papers) | site_counts(site)
    status = "ok" if not (totals.failures or delivery.failed or site.error) else "partial"
    wh.finish_run(run_id, status, counts)
    line = pipeline.summary_line(totals, n_papers, delivery.destination, delivery.note)
    line += site_suffix(site)
    problems = totals.failures + delivery.failure_lines() + ([f"ALARM: {alarm}"] if alarm else [])
    problems += [site.line()] if site.error else []
    _publish_artifact("daily-digest", day, counts, problems)
    logger.info(line)
    return counts | {"summary": line, "status": status, "run_id": run_id}


@flow(name="import-pages", log_prints=True)
def import_pages(
    paths: list[str],
    date: str | None = None,
    db: str | None = None,
    wait: float | None = None,
    as_of: str | None = None,
) -> dict[str, object]:
    """Load saved pages (text, API JSON or HTML) into the warehouse; no email.

    `as_of` (ISO time) is when the pages were saved; without it each page's capture time is
    settled from the page itself (`flows.capture.settle_capture`).
    """
    settings = load_settings(db=_path(db), lock_wait=wait)
    day = _maybe_day(date)
    saved_at = _maybe_time(as_of)
    files = pipeline.saved_page_paths(Path(p) for p in paths)
    try:
        with flow_run_heartbeats(), Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
            params = {"paths": paths, "date": date} | ({"as_of": as_of} if as_of else {})
            run_id = wh.start_run("import", params)
            totals = RunTotals()
            today = day or settings.today()
            for outcome in load_files(quote(wh), quote(files), run_id, day, today, saved_at):
                totals.add(outcome)
            if totals.fatal:
                return _stop_run(wh, run_id, totals)
            n_papers = wh.papers_on_pages(totals.page_ids)
            counts = totals.as_dict() | {"papers": n_papers}
            wh.finish_run(run_id, "partial" if totals.failures else "ok", counts)
    except WarehouseError as exc:
        return failed_result(str(exc))
    line = pipeline.summary_line(totals, n_papers, None)
    _publish_artifact("import-pages", day, counts, totals.failures)
    status = "partial" if totals.failures else "ok"
    return counts | {
        "summary": line,
        "failures": totals.failures,
        "run_id": run_id,
        "status": status,
    }


def site_counts(site: PublishReport) -> dict[str, object]:
    """The publish step's counts for the run row and the artifact."""
    return {"site_files": site.files, "site_written": len(site.written)}


def site_suffix(site: PublishReport) -> str:
    """What a run's summary line says about the site: where its index is, or why it is not."""
    if site.error:
        return f"; {site.line()}"
    return f"; site → {pipeline.shown_path(site.index)}"


def failed_result(error: str) -> dict[str, object]:
    """What a flow returns when the warehouse failed it: status "failed" and one line."""
    get_run_logger().info("run failed: %s", error)  # the caller prints the one line
    return {"status": "failed", "error": error, "summary": error, "failures": [error]}


def _stop_run(wh: Warehouse, run_id: int, totals: RunTotals) -> dict[str, object]:
    """End a run the warehouse could not finish: record it if the file still takes writes."""
    with contextlib.suppress(WarehouseError):
        wh.finish_run(run_id, "failed", totals.as_dict(), error=totals.fatal)
    return failed_result(totals.fatal or "the warehouse failed")


def _gather_pages(
    wh: Warehouse,
    run_id: int,
    day: date,
    settings: Settings,
    offline_dir: str | None,
    as_of: datetime | None = None,
) -> list[PageOutcome]:
    """Offline: the saved pages of a folder. Online: today, recent days and gaps, fetched."""
    if offline_dir:
        files = pipeline.saved_page_paths([Path(offline_dir)])
        return load_files(quote(wh), quote(files), run_id, day, day, as_of)
    days = pipeline.days_to_fetch(wh, day, settings.refetch_days, settings.gap_days)
    failed: list[PageOutcome] = []
    fetched: list[RawPage] = []
    fetch_settings = FetchSettings.from_env()
    with HFClient(fetch_settings, validators=wh.validator_lookup()) as client:
        fetch = fetch_day.with_options(
            retries=settings.task_retries, retry_delay_seconds=settings.task_retry_delay
        )
        futures = {d: fetch.submit(quote(client), d, settings.source) for d in days}
        for d, future in futures.items():
            try:
                fetched += future.result()
            except FetchError as exc:
                exc.__traceback__ = None  # Prefect keeps the exception; do not pin our frames
                failed.append(PageOutcome(str(d), d, error=str(exc)))
    # One load task for every fetched day (a few pages; one task run, not one per day).
    loaded = load_pages(quote(wh), quote(fetched), run_id, day) if fetched else []
    return failed + loaded


def _run_counts(
    totals: RunTotals, digest: Digest, delivery: DeliveryOutcome, n_papers: int
) -> dict[str, object]:
    return totals.as_dict() | {
        "papers": n_papers,
        "new": len(digest.new),
        "trending": len(digest.trending),
        "late": len(digest.late),
        "changes": len(digest.changes),
        "gaps": len(digest.gaps),
        "recipients": delivery.recipients,
        "sent": delivery.sent,
        "already_sent": delivery.already_sent,
        "send_failures": len(delivery.failed),
        "email_bytes": delivery.largest_email_bytes,
        "email": delivery.note,
    }


def _publish_artifact(
    flow_name: str, day: date | None, counts: dict[str, object], failures: list[str]
) -> None:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    lines = "\n".join(f"- {f}" for f in failures[:50]) or "none"
    markdown = (
        f"# {flow_name} {day or ''}\n\n| what | count |\n|---|---|\n{rows}\n\n"
        f"## Failures\n{lines}\n"
    )
    create_markdown_artifact(markdown=markdown, key=flow_name, description=f"{flow_name} summary")


def _day(value: str | None, settings: Settings) -> date:
    return _maybe_day(value) or settings.today()


def _maybe_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _maybe_time(value: str | None) -> datetime | None:
    return parse_as_of(value) if value else None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
