"""Render and deliver: one digest to 1,000 recipients with topic filters.

The digest is the diff of a 30-day history's last run (~37 new papers, 10 trending). Recipients
mix no filter, include keywords taken from the papers' own keywords, and exclude keywords.
Delivery goes through `deliver_digest` with a real `Warehouse` as the exactly-once ledger:

* to the outbox (`OutboxTransport`, one .eml and one .html per recipient);
* to a local SMTP server (aiosmtpd in another process, counting what it accepts).

Baseline: the floor of each transport, one message rendered once and handed over N times
(written with the same atomic write, or sent with plain smtplib on one connection).
Targets (issue 16): 1,000 emails in at most 5 s to the outbox and 10 s over SMTP. Every row
starts with render's caches cleared, as a delivery run starts.
"""

from __future__ import annotations

import shutil
import smtplib
import statistics
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_diff import diff_last_run
from bench.harness import Context, Row, limit_verdict, peak_rss_mb, timed
from bench.history import history_for
from bench.servers import HOST, smtp_sink
from flows.deliver import (
    SEND_BATCH,
    OutboxTransport,
    SmtpSettings,
    SmtpTransport,
    build_message,
    deliver_digest,
    message_id_for,
)
from flows.models import Digest, Recipient, Topics
from flows.render import Unsubscribe, clear_caches, render_digest, render_fitted
from flows.warehouse import Warehouse

SECTION = "Render & deliver"
SENDER = "digest@paperdigest.test"
TARGET_S = {"outbox": 5.0, "SMTP": 10.0}  # for 1,000 emails; scaled runs get a scaled target
LIST_ID = "papers.paperdigest.test"


def run(ctx: Context) -> list[Row]:
    """Render only, outbox delivery and SMTP delivery, each with its floor."""
    digest = bench_digest(ctx)
    recipients = bench_recipients(digest, ctx.scaled(1000, 50))
    folder = ctx.folder("deliver")
    return [
        render_row(digest, recipients),
        outbox_row(digest, recipients, folder),
        smtp_row(digest, recipients, folder),
    ]


def bench_digest(ctx: Context) -> Digest:
    """The digest of the last run of a 30-day history."""
    history = history_for(ctx, 30)
    with Warehouse.open(history.path) as wh:
        return diff_last_run(wh, history)


def bench_recipients(digest: Digest, n: int) -> list[Recipient]:
    """n readers: a quarter without filters, the rest with 1–3 include keywords, some excludes."""
    vocabulary = _keywords(digest)
    recipients = []
    for i in range(n):
        include = () if i % 4 == 0 else _pick(vocabulary, i, 1 + i % 3)
        exclude = _pick(vocabulary, i * 7 + 3, 1) if i % 5 == 0 else ()
        topics = Topics(include=include, exclude=exclude)
        recipients.append(Recipient(f"reader{i:04d}@example.org", topics))
    return recipients


def _keywords(digest: Digest) -> list[str]:
    words = {k.lower() for p in (*digest.new, *digest.trending) for k in p.ai_keywords}
    return sorted(words) or ["language models", "diffusion", "agents", "robotics"]


def _pick(words: list[str], seed: int, count: int) -> tuple[str, ...]:
    return tuple(words[(seed * 31 + k * 17) % len(words)] for k in range(count))


# ---- render ---------------------------------------------------------------------------------


def render_row(digest: Digest, recipients: list[Recipient]) -> Row:
    """render_digest for every recipient, no delivery."""
    sizes: list[int] = []
    clear_caches()
    seconds = timed(lambda: sizes.extend(_render_all(digest, recipients)))
    full = render_fitted(digest).html_bytes
    return Row(
        SECTION,
        f"render {len(recipients):,} personalised emails",
        f"{len(recipients) / seconds:,.0f} emails/s; largest HTML {max(sizes) / 1000:.0f} KB",
        baseline=f"the unfiltered digest: HTML {full / 1000:.0f} KB",
        verdict="no target",
        peak_mb=peak_rss_mb(),
        note=f"median HTML {statistics.median(sizes) / 1000:.0f} KB",
        figures={"emails_per_s": len(recipients) / seconds},
    )


def _render_all(digest: Digest, recipients: list[Recipient]) -> list[int]:
    return [len(render_digest(digest, recipient=r).html.encode()) for r in recipients]


# ---- outbox ---------------------------------------------------------------------------------


def outbox_row(digest: Digest, recipients: list[Recipient], folder: Path) -> Row:
    """deliver_digest to the outbox, against writing one ready message N times."""
    outbox = _fresh_folder(folder / "outbox")
    seconds = _deliver(digest, recipients, OutboxTransport(outbox), folder / "outbox.duckdb")
    largest = max(path.stat().st_size for path in outbox.glob("*.eml"))
    floor_box = _fresh_folder(folder / "outbox-floor")
    floor = timed(lambda: _write_one_message_n_times(digest, recipients, floor_box))
    return _delivery_row("outbox", recipients, seconds, floor, largest)


def _write_one_message_n_times(digest: Digest, recipients: list[Recipient], box: Path) -> None:
    message = _one_message(digest, recipients[0].address)
    transport = OutboxTransport(box)
    for recipient in recipients:
        transport.send(message, recipient=recipient.address, digest_key="2025-11-14")


# ---- SMTP -----------------------------------------------------------------------------------


def smtp_row(digest: Digest, recipients: list[Recipient], folder: Path) -> Row:
    """deliver_digest over SMTP to aiosmtpd, against smtplib sending one message N times."""
    with smtp_sink() as sink:
        settings = SmtpSettings(host=HOST, port=sink.port, security="none", mail_from=SENDER)
        with SmtpTransport(settings) as transport:
            seconds = _deliver(digest, recipients, transport, folder / "smtp.duckdb")
    delivered = sink.stats or {}
    with smtp_sink() as floor_sink:
        floor = timed(lambda: _send_one_message_n_times(digest, recipients, floor_sink.port))
    row = _delivery_row("SMTP", recipients, seconds, floor, delivered.get("largest", 0))
    row.note += f"; the server accepted {delivered.get('messages', 0):,} messages"
    row.missed = row.missed or delivered.get("messages") != len(recipients)
    return row


def _send_one_message_n_times(digest: Digest, recipients: list[Recipient], port: int) -> None:
    message = _one_message(digest, recipients[0].address)
    with smtplib.SMTP(HOST, port, local_hostname="paperdigest.test") as smtp:
        for recipient in recipients:
            smtp.send_message(message, from_addr=SENDER, to_addrs=[recipient.address])


# ---- shared ---------------------------------------------------------------------------------


def _deliver(digest: Digest, recipients: list[Recipient], transport: object, db: Path) -> float:
    """Seconds deliver_digest takes, with a fresh warehouse as the ledger; checks every send."""
    db.unlink(missing_ok=True)
    clear_caches()
    with Warehouse.open(db) as ledger:
        began = datetime.now(UTC)
        seconds = timed(
            lambda: _checked(
                deliver_digest(
                    digest,
                    recipients,
                    ledger=ledger,
                    transport=transport,  # type: ignore[arg-type]
                    sender=SENDER,
                    list_id=LIST_ID,
                    now=lambda: began,
                ),
                len(recipients),
            )
        )
    return seconds


def _checked(report: object, expected: int) -> None:
    sent = len(report.sent)  # type: ignore[attr-defined]
    if sent != expected:
        raise RuntimeError(f"delivered {sent} of {expected}: {report.summary()}")  # type: ignore[attr-defined]


def _one_message(digest: Digest, address: str) -> object:
    rendered = render_digest(digest)
    return build_message(
        rendered,
        recipient=address,
        sender=SENDER,
        message_id=message_id_for(address, "2025-11-14", "paperdigest.test"),
        list_id=LIST_ID,
        unsubscribe=Unsubscribe(mailto=f"mailto:{SENDER}?subject=unsubscribe"),
        date=datetime.now(UTC),
    )


def _delivery_row(
    where: str, recipients: list[Recipient], seconds: float, floor: float, largest: int
) -> Row:
    n = len(recipients)
    verdict, missed = limit_verdict(seconds, TARGET_S[where] * n / 1000, " s", digits=1)
    return Row(
        SECTION,
        f"deliver {n:,} emails with topic filters → {where}",
        f"{seconds:.1f} s: {n / seconds:,.0f} emails/s; largest email {largest / 1000:.0f} KB",
        baseline=f"one ready message handed over {n:,}×: {n / floor:,.0f} emails/s",
        verdict=verdict,
        peak_mb=peak_rss_mb(),
        note="render and encode per recipient; exactly-once ledger (a DuckDB warehouse) "
        f"written a batch of {SEND_BATCH} at a time",
        missed=missed,
        figures={"seconds": seconds, "emails_per_s": n / seconds, "largest_bytes": float(largest)},
    )


def _fresh_folder(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
