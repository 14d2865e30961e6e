"""Failing SMTP servers, with the real warehouse as the send ledger.

Server down, 421/451 temporary refusals, a 550 for one recipient, a connection dropped in the
middle of DATA (before and after the server stored the message): every recipient ends with
exactly one distinct message, failures are reported per recipient with the server's reason,
the ledger says what happened, and the next run sends what is still owed, with the same
Message-ID, and nothing twice. A daily run during an SMTP outage must not cost readers the
day's papers: the next run mails them.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from flows.deliver import DeliveryReport, SmtpSettings, SmtpTransport, deliver_digest
from flows.diff import compute_diff
from flows.models import Digest, Recipient
from flows.pipeline import ingest_files
from flows.warehouse import Warehouse

from .support import (
    API_FIXTURES,
    SENDER,
    SinkHandler,
    free_port,
    query,
    smtp_env,
    start_smtp,
)

DAY = date(2026, 8, 14)
LIST_ID = "papers.digest.example.org"
ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
EVERYONE = [ALICE, BOB, CAROL]
DAY_TITLES = [
    " ".join(item["paper"]["title"].split()) for item in json.loads(API_FIXTURES[-1].read_bytes())
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Digest]:
    """A warehouse holding the 2026-08-14 API page (run 1), and the digest of that run."""
    db = tmp_path_factory.mktemp("smtp") / "template.duckdb"
    with Warehouse.open(db) as wh:
        run_id = wh.start_run("import")
        ingest_files(wh, [API_FIXTURES[-1]], run_id, None, DAY)
        wh.finish_run(run_id, "ok", {})
        digest = compute_diff(wh, run_id=run_id, digest_date=DAY, since_run=0)
    assert len({p.paper_id for p in (*digest.new, *digest.trending)}) == 23
    return db, digest


@pytest.fixture
def db(loaded: tuple[Path, Digest], tmp_path: Path) -> Path:
    copy = tmp_path / "papers.duckdb"
    shutil.copy(loaded[0], copy)
    return copy


def deliver(
    db: Path, digest: Digest, port: int, recipients=EVERYONE, sleeps: list | None = None
) -> DeliveryReport:
    """One delivery run: a fresh SMTP transport (3 attempts, tiny backoff), ledger = db."""
    settings = SmtpSettings(
        host="127.0.0.1", port=port, security="none", mail_from=SENDER, timeout=5
    )
    transport = SmtpTransport(
        settings, attempts=3, backoff=0.01, sleep=(sleeps if sleeps is not None else []).append
    )
    with Warehouse.open(db) as wh, transport:
        return deliver_digest(
            digest,
            [Recipient(a) for a in recipients],
            ledger=wh,
            transport=transport,
            sender=SENDER,
            list_id=LIST_ID,
        )


def ledger(db: Path) -> dict[str, tuple[str, str, str | None]]:
    """recipient → (state, Message-ID, error)."""
    rows = query(db, "SELECT recipient, state, message_id, error FROM sends")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def assert_exactly_one_message_each(sink: SinkHandler, recipients=EVERYONE) -> None:
    ids = sink.ids_by_recipient()
    assert sorted(ids) == sorted(recipients)
    for recipient, received in ids.items():
        assert len(received) == 1, f"{recipient} got {len(received)} copies: {received}"


def test_server_down_marks_nothing_sent_and_the_next_run_sends_each_once(
    loaded, db: Path, sink: SinkHandler
) -> None:
    """Nobody listening: every recipient is reported failed (the first with the connection
    error, the rest "not attempted"), nothing is marked sent; once the server is up the next
    run sends each message once, the first with the Message-ID it was first given."""
    _, digest = loaded
    port = free_port()
    report = deliver(db, digest, port)
    assert report.sent == [] and [a for a, _ in report.failed] == EVERYONE
    first_reason = report.failed[0][1]
    assert f"cannot reach 127.0.0.1:{port}" in first_reason and "\n" not in first_reason
    assert all(reason.startswith("not attempted") for _, reason in report.failed[1:])
    before = ledger(db)
    assert {state for state, _, _ in before.values()} <= {"failed", "pending"}
    controller = start_smtp(sink, port=port)
    try:
        report = deliver(db, digest, port)
    finally:
        controller.stop()
    assert report.sent == EVERYONE and report.failed == []
    assert_exactly_one_message_each(sink)
    after = ledger(db)
    assert {state for state, _, _ in after.values()} == {"sent"}
    for recipient, (_, message_id, _) in before.items():
        assert after[recipient][1] == message_id == sink.ids_by_recipient()[recipient][0]


def test_421_and_451_refusals_are_retried_and_each_message_arrives_once(
    loaded, db: Path, sink: SinkHandler, smtp_server: int
) -> None:
    """A 421 (closing channel) and two 451s (greylisting) are temporary: retried with backoff,
    then delivered; one copy each; the ledger counts one attempt per recipient."""
    sink.refuse_rcpt = {
        ALICE: ["421 4.3.2 Service shutting down, try again"],
        BOB: ["451 4.7.1 Greylisted, try again later", "451 4.7.1 Greylisted, try again later"],
    }
    sleeps: list[float] = []
    report = deliver(db, loaded[1], smtp_server, sleeps=sleeps)
    assert report.sent == EVERYONE and report.failed == []
    assert len(sleeps) == 3 and all(delay > 0 for delay in sleeps)  # one pause per retry
    assert_exactly_one_message_each(sink)
    assert query(db, "SELECT DISTINCT state, attempts FROM sends") == [("sent", 1)]


def test_a_550_for_one_recipient_fails_only_that_one_and_is_reported(
    loaded, db: Path, sink: SinkHandler, smtp_server: int
) -> None:
    """A permanent 550 fails that recipient with the server's reason (ledger: failed, with the
    error); the others are delivered; a re-run sends nothing twice and tries that one again."""
    sink.always_refuse = {CAROL: "550 5.1.1 <carol@example.org>: mailbox unavailable"}
    report = deliver(db, loaded[1], smtp_server)
    assert report.sent == [ALICE, BOB]
    [(address, reason)] = report.failed
    assert address == CAROL and "550" in reason and "mailbox unavailable" in reason
    state, message_id, error = ledger(db)[CAROL]
    assert state == "failed" and "550" in (error or "")
    report = deliver(db, loaded[1], smtp_server)
    assert report.skipped_already_sent == [ALICE, BOB]
    assert [a for a, _ in report.failed] == [CAROL]
    assert ledger(db)[CAROL][1] == message_id
    assert_exactly_one_message_each(sink, [ALICE, BOB])


def test_connection_dropped_mid_data_is_retried_and_delivered_once(
    loaded, db: Path, sink: SinkHandler, smtp_server: int
) -> None:
    """The server hangs up at the end of DATA without storing: retried, delivered once."""
    sink.drop_before_store = 2
    report = deliver(db, loaded[1], smtp_server)
    assert report.sent == EVERYONE
    assert_exactly_one_message_each(sink)


def test_drop_after_the_server_stored_the_message_repeats_only_the_same_message_id(
    loaded, db: Path, sink: SinkHandler, smtp_server: int
) -> None:
    """The server stores the message and then drops the connection (the client cannot know):
    the retry may deliver a second copy, but only of the same Message-ID, which mail clients
    fold into one; never a different message."""
    sink.drop_after_store = 1
    report = deliver(db, loaded[1], smtp_server)
    assert report.sent == EVERYONE
    for recipient, ids in sink.ids_by_recipient().items():
        assert len(set(ids)) == 1, (recipient, ids)
        assert ids[0] == ledger(db)[recipient][1]


def test_temporary_refusal_that_outlasts_the_retries_is_sent_by_the_next_run(
    loaded, db: Path, sink: SinkHandler, smtp_server: int
) -> None:
    """Three 421s in a row: that recipient fails for now (temporary), the next run sends it
    with the same Message-ID, and nobody else gets a second mail."""
    sink.refuse_rcpt = {BOB: ["421 4.4.5 Too busy"] * 3}
    report = deliver(db, loaded[1], smtp_server)
    assert report.sent == [ALICE, CAROL] and [a for a, _ in report.failed] == [BOB]
    assert "421" in report.failed[0][1]
    message_id = ledger(db)[BOB][1]
    report = deliver(db, loaded[1], smtp_server)
    assert report.sent == [BOB] and report.skipped_already_sent == [ALICE, CAROL]
    assert_exactly_one_message_each(sink)
    assert sink.ids_by_recipient()[BOB] == [message_id]


@pytest.mark.slow
@pytest.mark.prefect
def test_daily_run_during_an_smtp_outage_mails_the_days_papers_on_the_next_run(
    prefect_harness,
    clean_env: Path,
    sink: SinkHandler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`daily_digest` while the SMTP server is down loads the day and reports the send failed;
    run again once the server is back, it mails the reader the day's papers (not a "nothing
    new" note), exactly once."""
    from flows import pipeline
    from flows.daily import daily_digest

    pages = clean_env / "pages"
    pages.mkdir()
    shutil.copy(API_FIXTURES[-1], pages / API_FIXTURES[-1].name)
    port = free_port()
    for name, value in smtp_env(port).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        pipeline,
        "make_transport",
        lambda smtp, outbox, **kw: SmtpTransport(smtp, attempts=2, backoff=0.01),
    )
    run = {
        "date": DAY.isoformat(),
        "offline_dir": str(pages),
        "db": str(clean_env / "papers.duckdb"),
        "outbox": str(clean_env / "outbox"),
    }
    first = daily_digest(**run)
    assert first["status"] == "partial" and first["send_failures"] == 1
    assert first["new"] + first["trending"] == 23
    controller = start_smtp(sink, port=port)
    try:
        second = daily_digest(**run)
    finally:
        controller.stop()
    assert second["status"] == "ok", second["summary"]
    [received] = sink.received
    message = received.message
    text = " ".join(message.get_body(preferencelist=("plain",)).get_content().split())
    shown = [title for title in DAY_TITLES if title[:40] in text]
    assert "nothing new" not in str(message["Subject"]).lower(), message["Subject"]
    missing = [title for title in DAY_TITLES if title not in shown]
    assert missing == [], f"the email shows {len(shown)} of the day's 23 papers; lost: {missing}"
