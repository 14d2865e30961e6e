"""The stages wired together as plain functions: what a run does, without Prefect.

The Prefect flows (`flows.daily`, `flows.backfill`) wrap these steps in tasks; tests and
benchmarks can call them directly. Each step takes and returns the dataclasses of
`flows.models`; the warehouse is always written from the caller's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from flows.capture import check_stated_capture
from flows.config import Settings
from flows.deliver import (
    DeliveryReport,
    SmtpSettings,
    deliver_digest,
    make_transport,
    outbox_stem,
    smtp_settings_from_block,
)
from flows.diff import DiffSettings, compute_diff, latest_run, resolve_since
from flows.fetch import FetchError, HFClient
from flows.models import Digest, PageFormatError, PageLoad, ParsedPage, RawPage, Recipient
from flows.pagebatch import PageBytes, page_bytes
from flows.parse import detect_format, parse_page
from flows.render import RenderSettings, render_digest, render_fitted, write_preview
from flows.subscribers import digest_key_for, due_recipients, load_subscribers, weekly_window
from flows.warehouse import Warehouse, WarehouseError

log = logging.getLogger(__name__)

SAVED_PAGE_SUFFIXES = {".txt", ".json", ".html", ".htm"}
# A saved page larger than this is refused unread: Hugging Face's largest page (trending) is
# about 1.5 MB, and refusing keeps memory bounded whatever lands in an import folder.
MAX_PAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What happened to one page of a run: loaded, already loaded, or refused (with why)."""

    location: str
    digest_date: date | None
    load: PageLoad | None = None
    error: str | None = None  # one line: "<input>: <reason>"
    fatal: bool = False  # the warehouse itself failed (full disk…): the run must stop

    @property
    def ok(self) -> bool:
        """True when the page is in the warehouse (now or from an earlier run)."""
        return self.load is not None


@dataclass(slots=True)
class RunTotals:
    """Counts a run reports in its summary line, its artifact and its `runs` row."""

    pages: int = 0
    pages_skipped: int = 0
    entries: int = 0
    rejected: int = 0
    new_papers: int = 0
    failures: list[str] = field(default_factory=list)
    page_ids: list[int] = field(default_factory=list)  # loaded now or earlier (skipped)
    fatal: str | None = None  # why the run had to stop (the warehouse could not be written)

    def add(self, outcome: PageOutcome) -> None:
        """Count one page outcome."""
        if outcome.fatal:
            self.fatal = outcome.error
            return
        if outcome.error:
            self.failures.append(outcome.error)
            return
        assert outcome.load is not None
        self.pages += 1
        self.pages_skipped += outcome.load.skipped
        self.entries += outcome.load.n_entries
        self.rejected += outcome.load.n_rejected
        self.new_papers += outcome.load.n_new_papers
        if outcome.load.page_id:
            self.page_ids.append(outcome.load.page_id)

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON (the `runs.counts` column)."""
        return {
            "pages": self.pages,
            "pages_skipped": self.pages_skipped,
            "entries": self.entries,
            "rejected": self.rejected,
            "new_papers": self.new_papers,
            "failures": len(self.failures),
        }


# ---- fetch side: which days, which files --------------------------------------------------


def days_to_fetch(wh: Warehouse, today: date, refetch_days: int, gap_days: int) -> list[date]:
    """Today, the last `refetch_days` days (gains, late arrivals), and gaps of `gap_days`.

    A gap is a day with no loaded page, or a weekday whose pages held no paper at all (Hugging
    Face lists papers every weekday, so an empty one is suspect: fetch it again).
    """
    recent = {today - timedelta(d) for d in range(refetch_days + 1)}
    gaps: set[date] = set()
    if gap_days > refetch_days:
        start, end = today - timedelta(gap_days), today - timedelta(refetch_days + 1)
        with_papers = wh.dates_with_pages(start, end, min_entries=1)
        gaps = set(wh.gaps(start, end))
        gaps |= {
            start + timedelta(n)
            for n in range((end - start).days + 1)
            if (start + timedelta(n)).weekday() < 5 and start + timedelta(n) not in with_papers
        }
    return sorted(recent | gaps, reverse=True)


def saved_page_paths(paths: Iterable[Path]) -> list[Path]:
    """Files to import: each file given, and the saved pages inside each folder given, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SAVED_PAGE_SUFFIXES
            )
        else:
            found.append(path)
    return found


def read_saved_page(
    path: Path, digest_date: date | None = None, as_of: datetime | None = None
) -> RawPage:
    """A saved page as a RawPage; an unreadable or oversized file raises PageFormatError.

    `digest_date` (the `--date` flag) dates text pages, which do not say their year; API and
    HTML pages carry their own date (`ingest_page` falls back to the flag when they do not).
    `as_of` (the `--as-of` flag) is when the page was saved; without it the load settles a
    capture time from the page (`flows.capture.settle_capture`).
    """
    try:
        size = path.stat().st_size
        if size > MAX_PAGE_BYTES:
            raise PageFormatError(
                str(path), f"file too large ({size:,} bytes; the limit is {MAX_PAGE_BYTES:,})"
            )
        body = path.read_bytes()
    except OSError as exc:
        raise PageFormatError(str(path), exc.strerror or type(exc).__name__) from None
    try:
        source = detect_format(body, name=str(path))
    except PageFormatError:
        source = "text"  # the parse step reports the real reason with the page
    dated = digest_date if source == "text" else None
    basis = "as-of" if as_of is not None else None
    return RawPage(
        source, str(path), body, dated, datetime.now(UTC), captured_at=as_of, capture_basis=basis
    )


# ---- load side ----------------------------------------------------------------------------


def parse_raw(raw: RawPage, today: date | None = None) -> ParsedPage:
    """Parse one raw page with the date it was asked for (pure; raises PageFormatError)."""
    return parse_page(
        raw.body, name=raw.location, digest_date=raw.digest_date, today=today, decoded=raw.decoded
    )


@dataclass(frozen=True, slots=True)
class ReadyPage:
    """A raw page with what parsing made of it: a ParsedPage, or why it was refused.

    A parsed page's `raw.body` is empty: its bytes are in `stored`, compressed.
    """

    raw: RawPage
    parsed: ParsedPage | None = None
    error: PageFormatError | None = None
    stored: PageBytes | None = None  # its hash and archive form, once parsed


def prepare_page(
    raw: RawPage, today: date | None = None, fallback_date: date | None = None
) -> ReadyPage:
    """Parse a page, and hash and compress it for the archive (pure: never raises for the
    page's content; a backfill runs it on its fetch threads).

    `fallback_date` dates a page that says no date of its own (an old API answer, say).
    """
    if raw.not_modified:
        return ReadyPage(raw)
    try:
        parsed = parse_raw(raw, today)
        if parsed.digest_date is None and fallback_date is not None:
            raw = replace(raw, digest_date=fallback_date)
            parsed = parse_raw(raw, today)
        check_stated_capture(raw, parsed)
    except PageFormatError as exc:
        return ReadyPage(replace(raw, decoded=None), error=exc)
    # The decoded JSON has served; it is several times the body's size, so it goes. So do the
    # bytes: `stored` keeps them compressed (a fifth of the size), and a backfill holds a few
    # hundred prepared pages in flight (55 MB of its peak memory for three years of API days).
    return ReadyPage(replace(raw, body=b"", decoded=None), parsed, stored=page_bytes(raw.body))


def load_ready_pages(wh: Warehouse, pages: list[ReadyPage], run_id: int) -> list[PageOutcome]:
    """Quarantine the refused pages and load the others in one transaction; one outcome per
    page, in order. A bad page never stops the others; a failing warehouse does: the outcomes
    then end with one fatal outcome, and none of the batch's pages is loaded."""
    outcomes: list[PageOutcome | None] = [None] * len(pages)
    parsed: list[int] = []
    for i, page in enumerate(pages):
        if page.error is not None:
            outcomes[i] = quarantine(wh, page.raw, page.error, run_id)
            if outcomes[i].fatal:
                return [o for o in outcomes if o is not None]
        elif page.parsed is None:  # 304 Not Modified: nothing new to load
            outcomes[i] = PageOutcome(
                page.raw.location, page.raw.digest_date, PageLoad(0, page.raw.location, True)
            )
        else:
            parsed.append(i)
    try:
        loads = wh.save_pages(
            [(pages[i].raw, pages[i].parsed) for i in parsed],
            run_id,
            [pages[i].stored for i in parsed],
        )
    except WarehouseError as exc:  # not the pages' fault: stop the run, say why in one line
        first = pages[parsed[0]].raw
        fatal = PageOutcome(first.location, first.digest_date, error=str(exc), fatal=True)
        return [o for o in outcomes if o is not None] + [fatal]
    for i, load in zip(parsed, loads, strict=True):
        outcomes[i] = _loaded(pages[i], load)
    return [o for o in outcomes if o is not None]


def _loaded(page: ReadyPage, load: PageLoad) -> PageOutcome:
    assert page.parsed is not None
    if page.parsed.rejects:
        log.warning("%s: %d entries quarantined", page.raw.location, len(page.parsed.rejects))
    return PageOutcome(page.raw.location, page.raw.digest_date or page.parsed.digest_date, load)


def ingest_page(
    wh: Warehouse,
    raw: RawPage,
    run_id: int,
    today: date | None = None,
    fallback_date: date | None = None,
) -> PageOutcome:
    """Parse and load one page; a page that does not parse is quarantined, never raised."""
    return load_ready_pages(wh, [prepare_page(raw, today, fallback_date)], run_id)[0]


def ingest_pages(
    wh: Warehouse, pages: Iterable[RawPage], run_id: int, today: date | None = None
) -> list[PageOutcome]:
    """Parse several pages and load them in one transaction (see `load_ready_pages`)."""
    return load_ready_pages(wh, [prepare_page(raw, today) for raw in pages], run_id)


def ingest_files(
    wh: Warehouse,
    paths: Iterable[Path],
    run_id: int,
    day: date | None,
    today: date,
    as_of: datetime | None = None,
) -> list[PageOutcome]:
    """Read and load saved pages one at a time (memory holds one page, not the folder).

    A file that cannot be read is quarantined with its real reason (missing, too large…).
    `as_of` is when the pages were saved (`--as-of`), if the user knows.
    """
    outcomes = []
    for path in paths:
        try:
            raw = read_saved_page(path, day, as_of)
        except PageFormatError as exc:
            unread = RawPage("text", str(path), b"", day, datetime.now(UTC))
            outcomes.append(quarantine(wh, unread, exc, run_id))
            continue
        outcomes.append(ingest_page(wh, raw, run_id, today, fallback_date=day))
        if outcomes[-1].fatal:
            break
    return outcomes


def quarantine(wh: Warehouse, raw: RawPage, error: PageFormatError, run_id: int) -> PageOutcome:
    """Record a refused input in `rejects` and report it in one line."""
    log.warning("refused %s", error)
    try:
        wh.save_refused_page(raw, error.reason, run_id)
    except WarehouseError as exc:
        return PageOutcome(raw.location, raw.digest_date, error=str(exc), fatal=True)
    return PageOutcome(raw.location, raw.digest_date, error=str(error))


# ---- backfill: days fetched in batches, each batch loaded in one transaction ---------------


@dataclass(slots=True)
class FetchedDay:
    """One day as a backfill's fetch step returns it: its pages, parsed, or why it failed."""

    day: date
    pages: list[ReadyPage] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class DayResult:
    """How one day of a backfill went."""

    day: date
    status: str  # loaded | skipped | failed
    pages: int = 0
    entries: int = 0
    new_papers: int = 0
    error: str = ""


def fetch_days(
    client: HFClient, days: list[date], source: str, max_bytes: int | None = None
) -> list[FetchedDay]:
    """Fetch and parse days one after another; a day that cannot be fetched says why.

    With `max_bytes`, it stops after the day that brings the bodies fetched to that many bytes:
    the days it returns are then a prefix of `days`, and the caller fetches the rest later.
    """
    fetched, received = [], 0
    for day in days:
        if fetched and max_bytes is not None and received >= max_bytes:
            break  # never before the first day: every call makes progress
        try:
            raws = client.fetch_day(day, source)
        except FetchError as exc:
            fetched.append(FetchedDay(day, error=str(exc)))
            continue
        received += sum(len(raw.body) for raw in raws)
        fetched.append(FetchedDay(day, [prepare_page(raw) for raw in raws]))
    return fetched


def load_days(
    wh: Warehouse, fetched: list[FetchedDay], run_id: int, source: str
) -> list[DayResult]:
    """Load fetched days in one transaction and mark complete each day whose every page
    loaded (a backfill resumes after them); one result per day, in order.

    Raises WarehouseError when the warehouse fails; then nothing of these days is written.
    """
    results = {d.day: DayResult(d.day, "failed", error=d.error) for d in fetched if d.error}
    fetched_ok = [d for d in fetched if not d.error]
    with wh.transaction():
        outcomes = load_ready_pages(wh, [p for d in fetched_ok for p in d.pages], run_id)
        if outcomes and outcomes[-1].fatal:
            raise WarehouseError(outcomes[-1].error or "")  # rolls the whole batch back
        per_page = iter(outcomes)
        complete = []
        for day in fetched_ok:
            totals = RunTotals()
            for _ in day.pages:
                totals.add(next(per_page))
            results[day.day] = _day_result(day.day, totals)
            if not totals.failures:
                complete.append((day.day, len(day.pages), totals.entries))
        wh.mark_days_complete(run_id, source, complete)
    return [results[d.day] for d in fetched]


def _day_result(day: date, totals: RunTotals) -> DayResult:
    if totals.failures:
        return DayResult(day, "failed", totals.pages, totals.entries, error=totals.failures[0])
    return DayResult(day, "loaded", totals.pages, totals.entries, totals.new_papers)


def reparse_archive(wh: Warehouse, today: date | None = None) -> tuple[int, int]:
    """Rebuild every derived table from the archived page bytes (after a parser fix)."""
    return wh.rebuild_derived(lambda raw: parse_raw(raw, today))


def summary_line(totals: RunTotals, n_papers: int, destination: str | None, note: str = "") -> str:
    """The one line a run ends with, e.g. `3 pages, 409 entries, 391 papers (391 new) → …`."""
    line = f"{totals.pages} pages"
    if totals.pages_skipped:
        line += f" ({totals.pages_skipped} already loaded)"
    line += f", {totals.entries} entries, {n_papers} papers ({totals.new_papers} new)"
    if totals.rejected:
        line += f", {totals.rejected} quarantined"
    if totals.failures:
        line += f", {len(totals.failures)} failed"
    if destination:
        line += f" → {destination}"
    if note and not destination:
        line += f"; email: {note}"
    return line


# ---- render and deliver -------------------------------------------------------------------


@dataclass(slots=True)
class DeliveryOutcome:
    """What delivering a run's digest did, for the summary line, artifact and runs row."""

    recipients: int = 0
    sent: int = 0
    already_sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    destination: str | None = None  # where to look: the outbox HTML, or "SMTP host"
    largest_email_bytes: int = 0
    note: str = ""  # what was done and why, e.g. "nothing new: sent a short note"

    def failure_lines(self) -> list[str]:
        """One line per recipient that failed."""
        return [f"{address}: {reason}" for address, reason in self.failed]


def load_recipients(settings: Settings) -> list[Recipient]:
    """Subscribers from the subscribers file, or the single `mail_to` reader when there is none."""
    path = settings.subscribers_path
    if path.exists():
        return load_subscribers(path)
    log.info("no subscribers file at %s: the digest goes to %s", path, settings.mail_to)
    return [Recipient(settings.mail_to)]


def deliver_run_digest(
    wh: Warehouse, digest: Digest, run_id: int, settings: Settings, *, resend: bool = False
) -> DeliveryOutcome:
    """Render and deliver a run's digest to every due recipient, exactly once each.

    Daily and weekday readers get the day's digest; weekly readers (on Mondays) get everything
    first seen in the past week, merged without repeats. Failures are reported, never raised.
    """
    smtp = smtp_settings(settings)
    render_settings = render_settings_for(settings)
    transport = make_transport(smtp, settings.outbox)
    due = due_recipients(load_recipients(settings), digest.digest_date)
    outcome = DeliveryOutcome(recipients=len(due))
    outcome.largest_email_bytes = render_fitted(digest, settings=render_settings).html_bytes
    batches = _digests_by_cadence(wh, digest, run_id, due, settings)
    for key, (batch_digest, recipients) in batches.items():
        report = deliver_digest(
            batch_digest,
            recipients,
            rankings=_rankings(wh, batch_digest, recipients, settings),
            ledger=wh,
            transport=transport,
            sender=smtp.mail_from,
            list_id=smtp.list_id,
            digest_key=key,
            render_settings=render_settings,
            resend=resend,
        )
        _count_report(outcome, report)
        # Recorded after new sends, and also when every send had gone out before a crash
        # stopped the run that sent them from recording the digest.
        if report.sent or (report.skipped_already_sent and not wh.digest_recorded(key)):
            items = digest_items(batch_digest)
            wh.record_digest(
                key,
                digest.digest_date,
                run_id,
                items,
                wh.count_sent(key),
                captured_at=batch_digest.as_of,
            )
        if report.sent:
            outcome.destination = _destination(smtp, settings, key, report.sent[0])
    outcome.note = _delivery_note(digest, outcome, settings)
    return outcome


def smtp_settings(settings: Settings) -> SmtpSettings:
    """SMTP from the Prefect block named in the settings, else from PAPERDIGEST_SMTP_* vars."""
    if settings.smtp_block:
        return smtp_settings_from_block(settings.smtp_block)
    return SmtpSettings.from_env()


def render_settings_for(settings: Settings) -> RenderSettings:
    """How the digest is rendered, from the run settings."""
    return RenderSettings(
        on_empty=settings.on_empty,
        unsubscribe_url=settings.unsubscribe_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        full_papers=settings.email_full_papers,
        archive_url=settings.site_url,
    )


def digest_items(digest: Digest) -> list[tuple[str, str, int | None]]:
    """(paper_id, section, upvotes) of every paper a digest carries, for `record_digest`."""
    sections = (("trending", digest.trending), ("late", digest.late), ("new", digest.new))
    return [(p.paper_id, name, p.upvotes) for name, papers in sections for p in papers]


def _digests_by_cadence(
    wh: Warehouse, digest: Digest, run_id: int, due: list[Recipient], settings: Settings
) -> dict[str, tuple[Digest, list[Recipient]]]:
    batches: dict[str, tuple[Digest, list[Recipient]]] = {}
    for recipient in due:
        key = digest_key_for(recipient, digest.digest_date)
        if key not in batches:
            batches[key] = (_digest_for_key(wh, digest, run_id, recipient, settings), [])
        batches[key][1].append(recipient)
    return batches


def _digest_for_key(
    wh: Warehouse, digest: Digest, run_id: int, recipient: Recipient, settings: Settings
) -> Digest:
    if recipient.cadence != "weekly":
        return digest
    start, _ = weekly_window(digest.digest_date)
    since = resolve_since(wh, start.isoformat())
    return compute_diff(
        wh,
        run_id=run_id,
        digest_date=digest.digest_date,
        since_run=since,
        settings=DiffSettings(window_days=max(settings.window_days, 8), min_gain=settings.min_gain),
    )


def _count_report(outcome: DeliveryOutcome, report: DeliveryReport) -> None:
    outcome.sent += len(report.sent)
    outcome.already_sent += len(report.skipped_already_sent)
    outcome.failed += report.failed


def _destination(smtp: SmtpSettings, settings: Settings, key: str, recipient: str) -> str:
    if smtp.configured:
        return f"SMTP {smtp.host}"
    return shown_path(settings.outbox / f"{outbox_stem(key, recipient)}.html")


def shown_path(path: Path) -> str:
    """A path as a summary line shows it: relative to the working folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _delivery_note(digest: Digest, outcome: DeliveryOutcome, settings: Settings) -> str:
    """What delivery did and why, in words: a run never succeeds silently."""
    parts = []
    if not outcome.recipients:
        parts.append("no recipient is due today")
    elif digest.is_empty and settings.on_empty == "skip":
        parts.append("nothing new: no email (on_empty=skip)")
    elif digest.is_empty and outcome.sent:
        parts.append("nothing new: sent a short note")
    if outcome.sent:
        parts.append(f"sent {outcome.sent}")
    if outcome.already_sent:
        parts.append(f"{outcome.already_sent} already sent earlier, not sent again")
    if outcome.failed:
        parts.append(f"{len(outcome.failed)} failed")
    return "; ".join(parts)


def deadman_warning(wh: Warehouse, today: date, weekdays: int) -> str | None:
    """A warning when no digest has gone out for `weekdays` weekdays (None when all is well)."""
    if weekdays <= 0:
        return None
    last = wh.last_delivery()
    if last is None:
        return None  # a new warehouse: nothing was ever due
    missed = _weekdays_between(last.date(), today)
    if missed < weekdays:
        return None
    return f"no digest has gone out for {missed} weekdays (last on {last:%Y-%m-%d %H:%M} UTC)"


def alert_operator(settings: Settings, text: str) -> None:
    """Mail an alert to the operator address, if one is configured (outbox without SMTP)."""
    if not settings.operator_email:
        return
    smtp = smtp_settings(settings)
    message = EmailMessage()
    message["From"] = smtp.mail_from
    message["To"] = settings.operator_email
    message["Subject"] = "paperdigest alert: " + " ".join(text.split())[:150]
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=smtp.domain)
    message.set_content(f"{text}\n\nCheck `paperdigest status` and the Prefect run logs.\n")
    transport = make_transport(smtp, settings.outbox)
    key = datetime.now(UTC).strftime("%Y-%m-%d#alert-%H%M%S")  # a valid outbox digest key
    try:
        transport.send(message, recipient=settings.operator_email, digest_key=key)
    except Exception as exc:  # the alarm is already logged loudly; a failed alert must not mask it
        log.error("could not mail the alert to %s: %s", settings.operator_email, exc)


def _weekdays_between(start: date, end: date) -> int:
    """Weekdays strictly after `start` up to and including `end`."""
    days = (end - start).days
    return sum((start + timedelta(n)).weekday() < 5 for n in range(1, days + 1))


def preview_digest(
    settings: Settings, day: date | None, out_dir: Path, address: str | None = None
) -> tuple[Path, Path]:
    """Render the latest run's digest (for `day`) to an HTML and a text file.

    With an address, as that subscriber gets it: their topics and, with a library, "For you".
    """
    reader = _subscriber(settings, address) if address else None
    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        run_id = latest_run(wh)
        if run_id is None:
            raise RuntimeError(f"warehouse {settings.db} has no runs yet: nothing to preview")
        day = (
            day
            or wh.fetch_dicts(
                "SELECT max(digest_date) AS d FROM pages WHERE run_id = $r", {"r": run_id}
            )[0]["d"]
            or settings.today()
        )
        digest = compute_diff(
            wh,
            run_id=run_id,
            digest_date=day,
            settings=DiffSettings(window_days=settings.window_days, min_gain=settings.min_gain),
        )
        rankings = _rankings(wh, digest, [reader], settings) if reader else {}
    for_you = rankings.get(reader.address) if reader else None
    rendered = render_digest(
        digest, recipient=reader, settings=render_settings_for(settings), for_you=for_you
    )
    stem = f"digest-{day}" + (f"-{reader.address.replace('@', '-at-')}" if reader else "")
    return write_preview(rendered, out_dir, stem)


def _subscriber(settings: Settings, address: str) -> Recipient:
    wanted = address.strip().lower()
    for recipient in load_recipients(settings):
        if recipient.address.lower() == wanted:
            return recipient
    raise KeyError(f"{address} is not in {settings.subscribers_path}")


def _rankings(
    wh: Warehouse, digest: Digest, recipients: list[Recipient], settings: Settings
) -> dict:
    """Each recipient's "For you" ranking of the digest (flows.ranking), by address."""
    if not any(r.library for r in recipients):
        return {}  # nobody to rank for: skip importing scikit-learn and SciPy (~0.15 s)
    from flows.ranking import rank_recipients

    return rank_recipients(
        lambda: wh.ranking_corpus(until=digest.digest_date),
        digest,
        recipients,
        cache_dir=settings.rank_cache_path,
        top_k=settings.rank_top_k,
        model_dir=settings.embed_model_dir,
    )
