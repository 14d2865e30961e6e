"""Tests of flows.deliver against a real SMTP server on loopback (aiosmtpd).

The server speaks STARTTLS with a certificate from a throwaway CA (trustme) and requires
AUTH; one test uses implicit TLS instead. Handlers script refusals (550, 451, 421) and a
connection dropped mid-DATA; an in-memory ledger (tests/deliver_fakes.py) can fail or
"crash" on purpose to exercise the exactly-once protocol.
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import socket
import ssl
import subprocess
import sys
import types
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from deliver_fakes import DAY, MemoryLedger, typical_digest

from flows.deliver import (
    DeliveryError,
    OutboxTransport,
    PermanentFailure,
    ServerUnavailable,
    SmtpSettings,
    SmtpTransport,
    build_message,
    deliver_digest,
    make_transport,
    message_id_for,
    outbox_stem,
    smtp_settings_from_block,
    smtp_settings_from_credentials,
)
from flows.models import Digest, Recipient, RenderedEmail
from flows.render import RenderSettings, Unsubscribe, render_digest

USER = "digest-bot"
PASSWORD = "canary-Pa55w0rd-7f3a9c"  # must never show up anywhere but the AUTH exchange
SENDER = "papers@papers.example.org"
LIST_ID = "daily.papers.example.org"
NOW = datetime(2026, 8, 14, 7, 0, tzinfo=UTC)
RENDER = RenderSettings(
    unsubscribe_url="https://papers.example.org/unsubscribe?address={address}",
    unsubscribe_mailto="unsubscribe@papers.example.org",
)
ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"


# ---- a scripted SMTP server --------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated: bool
    session: int  # id() of aiosmtpd's per-connection Session

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class ScriptedHandler:
    """Accepts mail, except for the refusals scripted per recipient or for DATA."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # popped in order
    always_refuse: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_data: int = 0  # connections to drop after the message data, before replying

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.always_refuse:
            return self.always_refuse[address]
        queue = self.rcpt_replies.get(address)
        if queue:
            return queue.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.drop_data:
            self.drop_data -= 1
            server.transport.abort()  # the client sent everything and hears nothing back
            return "250 never heard"
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                tls=session.ssl is not None,
                authenticated=session.authenticated,
                session=id(session),
            )
        )
        return "250 2.0.0 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [r.message["Message-ID"] for r in self.received]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server replies 535


class LoopbackController(Controller):
    """aiosmtpd's Controller on an OS-chosen free port (port=0)."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def server(handler: ScriptedHandler, server_tls: ssl.SSLContext):
    """STARTTLS required, AUTH required (only after TLS)."""
    controller = LoopbackController(
        handler,
        hostname="127.0.0.1",
        port=0,
        server_hostname="mx.test",
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    yield controller
    controller.stop()


def smtp_settings(port: int, **overrides) -> SmtpSettings:
    base = SmtpSettings(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=PASSWORD,
        security="starttls",
        mail_from=SENDER,
        list_id=LIST_ID,
        timeout=5,
    )
    return replace(base, **overrides)


@dataclass
class Harness:
    """A transport, a ledger and a way to run a delivery like the flow would."""

    transport: SmtpTransport
    ledger: MemoryLedger
    sleeps: list[float]

    def run(self, recipients: list[str], digest: Digest | None = None, **kwargs):
        return deliver_digest(
            digest or typical_digest(),
            [Recipient(a) for a in recipients],
            ledger=self.ledger,
            transport=self.transport,
            sender=SENDER,
            list_id=LIST_ID,
            render_settings=kwargs.pop("render_settings", RENDER),
            now=lambda: NOW,
            **kwargs,
        )


def harness_for(port: int, client_tls: ssl.SSLContext, ledger=None, **overrides) -> Harness:
    sleeps: list[float] = []
    transport = SmtpTransport(
        smtp_settings(port, **overrides),
        ssl_context=client_tls,
        attempts=3,
        backoff=0.01,
        sleep=sleeps.append,
    )
    return Harness(transport, ledger or MemoryLedger(), sleeps)


@pytest.fixture
def harness(server, client_tls):
    h = harness_for(server.port, client_tls)
    yield h
    h.transport.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- delivery over SMTP ------------------------------------------------------------------


def test_message_arrives_as_multipart_alternative_with_list_headers(harness, handler) -> None:
    report = harness.run([ALICE])
    assert report.sent == [ALICE] and report.ok
    [got] = handler.received
    assert got.tls and got.authenticated
    assert got.mail_from == SENDER and got.rcpt_tos == [ALICE]
    message = got.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    rendered = render_digest(typical_digest(), recipient=Recipient(ALICE), settings=RENDER)
    assert message["Subject"] == rendered.subject
    assert message["From"] == f"Daily Papers <{SENDER}>" and message["To"] == ALICE
    assert message["Date"] == "Fri, 14 Aug 2026 07:00:00 +0000"
    assert message["Message-ID"] == message_id_for(ALICE, "2026-08-14", "papers.example.org")
    assert message["List-Id"] == f"Daily Papers <{LIST_ID}>"
    assert message["List-Unsubscribe"] == (
        "<https://papers.example.org/unsubscribe?address=alice@example.org>, "
        "<mailto:unsubscribe@papers.example.org?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = (p.get_content().replace("\r\n", "\n") for p in message.iter_parts())
    assert text == rendered.text  # CRLF line ends are SMTP's, not ours
    assert html.rstrip("\n") == rendered.html
    assert max(len(line) for line in got.data.splitlines()) <= 998
    assert harness.ledger.state(ALICE, "2026-08-14") == "sent"


def test_one_connection_serves_the_whole_batch(harness, handler) -> None:
    report = harness.run([ALICE, BOB, CAROL])
    assert report.sent == [ALICE, BOB, CAROL]
    assert len(handler.received) == 3 and harness.sleeps == []
    assert len({r.session for r in handler.received}) == 1


def test_a_550_fails_that_recipient_only(harness, handler) -> None:
    handler.always_refuse[BOB] = "550 5.1.1 <bob@example.org>: mailbox unavailable"
    report = harness.run([ALICE, BOB, CAROL])
    assert report.sent == [ALICE, CAROL]
    [(who, why)] = report.failed
    assert who == BOB and "550 5.1.1" in why and "mailbox unavailable" in why
    assert harness.sleeps == []  # a permanent refusal is not retried
    assert harness.ledger.state(BOB, "2026-08-14") == "failed"
    assert [r.rcpt_tos for r in handler.received] == [[ALICE], [CAROL]]
    assert "FAILED bob@example.org: recipient refused: 550" in report.summary()


def test_451_greylisting_is_retried_with_backoff(harness, handler) -> None:
    handler.rcpt_replies[ALICE] = ["451 4.7.1 Greylisted, try again", "451 4.7.1 Still grey"]
    report = harness.run([ALICE])
    assert report.sent == [ALICE]
    assert harness.sleeps == [0.01, 0.02]
    assert len(handler.received) == 1


def test_421_at_data_reconnects_and_retries(harness, handler) -> None:
    handler.data_replies = ["421 4.3.2 Service shutting down, come back later"]
    report = harness.run([ALICE])
    assert report.sent == [ALICE] and harness.sleeps == [0.01]
    assert len(handler.received) == 1


def test_temporary_refusal_that_outlasts_retries_fails_and_the_next_run_sends(
    harness, handler
) -> None:
    handler.rcpt_replies[ALICE] = ["452 4.2.2 Mailbox full"] * 3
    first = harness.run([ALICE, BOB])
    assert first.sent == [BOB] and [who for who, _ in first.failed] == [ALICE]
    assert "452 4.2.2" in first.failed[0][1]
    assert harness.ledger.state(ALICE, "2026-08-14") == "failed"
    second = harness.run([ALICE, BOB])
    assert second.sent == [ALICE] and second.skipped_already_sent == [BOB]
    assert handler.message_ids()[-1] == message_id_for(ALICE, "2026-08-14", "papers.example.org")


def test_connection_dropped_mid_data_is_retried(harness, handler) -> None:
    handler.drop_data = 1
    report = harness.run([ALICE, BOB])
    assert report.sent == [ALICE, BOB]
    assert harness.sleeps == [0.01]
    assert [r.rcpt_tos for r in handler.received] == [[ALICE], [BOB]]


def test_rerun_sends_nothing_twice(harness, handler) -> None:
    first = harness.run([ALICE, BOB])
    second = harness.run([ALICE, BOB])
    assert first.sent == [ALICE, BOB]
    assert second.sent == [] and second.skipped_already_sent == [ALICE, BOB]
    assert len(handler.received) == 2
    assert "0 sent, 2 already sent" in second.summary()


def test_resend_sends_again_with_a_new_message_id(harness, handler) -> None:
    harness.run([ALICE])
    again = harness.run([ALICE], resend=True)
    assert again.sent == [ALICE]
    first_id, second_id = handler.message_ids()
    assert first_id != second_id  # the same id would be hidden as a duplicate
    assert harness.ledger.send_state(ALICE, "2026-08-14") == ("sent", second_id)


def test_ledger_failure_after_acceptance_resends_with_the_same_message_id(harness, handler) -> None:
    harness.ledger.fail_mark_sent = [RuntimeError("disk I/O error")]
    first = harness.run([ALICE, BOB], batch_size=1)  # one recipient per ledger transaction
    assert first.sent == [BOB]
    [(who, why)] = first.failed
    assert who == ALICE and "accepted by the server" in why and "same Message-ID" in why
    second = harness.run([ALICE, BOB])
    assert second.sent == [ALICE] and second.skipped_already_sent == [BOB]
    ids = [r.message["Message-ID"] for r in handler.received if r.rcpt_tos == [ALICE]]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_a_batch_whose_sent_commit_fails_is_resent_with_the_same_message_ids(
    harness, handler
) -> None:
    """Recipients are recorded a batch at a time: when the "sent" write of a batch fails, every
    message of it is reported (accepted, not recorded) and the next run re-sends each with the
    Message-ID it already carried, so mail clients fold the copies into one."""
    harness.ledger.fail_mark_sent = [RuntimeError("disk I/O error")]
    first = harness.run([ALICE, BOB, CAROL])
    assert first.sent == [] and [who for who, _ in first.failed] == [ALICE, BOB, CAROL]
    assert all("accepted by the server" in why for _, why in first.failed)
    second = harness.run([ALICE, BOB, CAROL])
    assert second.sent == [ALICE, BOB, CAROL]
    for address in (ALICE, BOB, CAROL):
        ids = [r.message["Message-ID"] for r in handler.received if r.rcpt_tos == [address]]
        assert len(ids) == 2 and ids[0] == ids[1]
    third = harness.run([ALICE, BOB, CAROL])
    assert third.sent == [] and len(handler.received) == 6


class Crash(BaseException):
    """The process dying between the server's 250 and the ledger update."""


def test_crash_after_acceptance_leaves_pending_and_resends_the_same_message_id(
    harness, handler
) -> None:
    harness.ledger.fail_mark_sent = [Crash()]
    with pytest.raises(Crash):
        harness.run([ALICE, BOB], batch_size=1)
    assert harness.ledger.state(ALICE, "2026-08-14") == "pending"
    assert harness.ledger.state(BOB, "2026-08-14") is None
    harness.transport.close()  # the "new process" opens its own connection
    report = harness.run([ALICE, BOB])
    assert report.sent == [ALICE, BOB]
    alice_ids = [r.message["Message-ID"] for r in handler.received if r.rcpt_tos == [ALICE]]
    assert len(alice_ids) == 2 and alice_ids[0] == alice_ids[1]
    assert harness.ledger.rows[(ALICE, "2026-08-14")]["attempts"] == 2


def test_a_crash_before_the_sent_commit_leaves_the_whole_batch_pending(harness, handler) -> None:
    """The window a crash can hit is one batch: its rows are pending, nothing else was
    touched, and the next run re-sends exactly that batch with the same Message-IDs."""
    harness.ledger.fail_mark_sent = [Crash()]
    with pytest.raises(Crash):
        harness.run([ALICE, BOB, CAROL], batch_size=2)
    assert [harness.ledger.state(a, "2026-08-14") for a in (ALICE, BOB, CAROL)] == [
        "pending",
        "pending",
        None,
    ]
    harness.transport.close()
    report = harness.run([ALICE, BOB, CAROL], batch_size=2)
    assert report.sent == [ALICE, BOB, CAROL]
    by_recipient = {
        a: [r.message["Message-ID"] for r in handler.received if r.rcpt_tos == [a]]
        for a in (ALICE, BOB, CAROL)
    }
    assert [len(set(ids)) for ids in by_recipient.values()] == [1, 1, 1]
    assert [len(ids) for ids in by_recipient.values()] == [2, 2, 1]


def test_server_down_marks_nothing_sent_and_the_next_run_sends(
    handler, server_tls, client_tls
) -> None:
    ledger = MemoryLedger()
    down = harness_for(free_port(), client_tls, ledger=ledger)
    first = down.run([ALICE, BOB])
    assert first.sent == [] and [who for who, _ in first.failed] == [ALICE, BOB]
    assert "cannot reach 127.0.0.1" in first.failed[0][1]
    assert first.failed[1][1].startswith("not attempted: ")  # no pointless retries per recipient
    assert down.sleeps == [0.01, 0.02]
    assert all(row["state"] != "sent" for row in ledger.rows.values())
    controller = LoopbackController(
        handler,
        hostname="127.0.0.1",
        port=0,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        up = harness_for(controller.port, client_tls, ledger=ledger)
        second = up.run([ALICE, BOB])
        up.transport.close()
    finally:
        controller.stop()
    assert second.sent == [ALICE, BOB] and len(handler.received) == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_smtps(handler, server_tls, client_tls) -> None:
    controller = LoopbackController(
        handler,
        hostname="127.0.0.1",
        port=0,
        ssl_context=server_tls,
        auth_required=True,
        auth_require_tls=False,  # aiosmtpd only counts STARTTLS; this socket is TLS already
        authenticator=authenticator,
    )
    controller.start()
    try:
        h = harness_for(controller.port, client_tls, security="ssl")
        report = h.run([ALICE])
        h.transport.close()
    finally:
        controller.stop()
    assert report.sent == [ALICE]
    [got] = handler.received
    assert got.authenticated and got.message["Subject"].startswith("Daily Papers · ")


def test_untrusted_certificate_is_refused_without_retries(server, handler) -> None:
    h = harness_for(server.port, ssl.create_default_context())  # does not trust the test CA
    report = h.run([ALICE, BOB])
    assert report.sent == [] and h.sleeps == []
    assert "certificate" in report.failed[0][1].lower()
    assert handler.received == []


def test_wrong_password_fails_everyone_fast_and_never_shows_the_password(
    server, handler, client_tls, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness_for(server.port, client_tls, password="wrong-" + PASSWORD)
    report = h.run([ALICE, BOB])
    assert report.sent == [] and h.sleeps == []
    assert "login refused: 535" in report.failed[0][1]
    assert report.failed[1][1].startswith("not attempted: login refused")
    wrong = "wrong-" + PASSWORD
    client_logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")
    )
    for secret in (PASSWORD, wrong, base64.b64encode(wrong.encode()).decode()):
        assert secret not in client_logs
        assert secret not in report.summary() and secret not in repr(report)
        assert secret not in repr(h.transport) and secret not in repr(h.transport.settings)


def test_canary_password_is_never_logged_written_or_raised(
    harness, handler, caplog, tmp_path
) -> None:
    caplog.set_level(logging.DEBUG)
    handler.always_refuse[BOB] = f"550 5.7.1 nope {PASSWORD}"  # even a server echoing it
    handler.rcpt_replies[CAROL] = ["451 4.7.1 later"]
    report = harness.run([ALICE, BOB, CAROL])
    assert report.sent == [ALICE, CAROL]
    outbox = OutboxTransport(tmp_path)
    message = _message(ALICE)
    outbox.send(message, recipient=ALICE, digest_key="2026-08-14")
    errors: list[str] = []
    try:
        harness.transport.send(message, recipient=BOB, digest_key="2026-08-14")
    except PermanentFailure as err:
        errors += [str(err), repr(err), repr(err.__cause__), repr(err.__context__)]
    assert errors, "the 550 should have raised"
    encoded = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    haystacks = [
        "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")),
        report.summary(),
        repr(report),
        repr(harness.transport),
        repr(harness.transport.settings),
        str(harness.transport.settings),
        *errors,
        *(p.read_text(errors="replace") for p in tmp_path.iterdir()),
        *(row["error"] for row in harness.ledger.rows.values()),
    ]
    for text in haystacks:
        assert PASSWORD not in text and encoded not in text


# ---- the ledger protocol without a server -------------------------------------------------


class RecordingTransport:
    def __init__(self, fail: dict[str, DeliveryError] | None = None) -> None:
        self.sent: list[tuple[str, EmailMessage]] = []
        self.fail = fail or {}

    def send(self, message: EmailMessage, *, recipient: str, digest_key: str) -> None:
        if recipient in self.fail:
            raise self.fail[recipient]
        self.sent.append((recipient, message))


def run_with(transport, recipients, digest=None, ledger=None, **kwargs):
    return deliver_digest(
        digest or typical_digest(),
        recipients,
        ledger=ledger or MemoryLedger(),
        transport=transport,
        sender=SENDER,
        list_id=LIST_ID,
        now=lambda: NOW,
        **kwargs,
    )


def test_empty_day_skip_says_why_and_sends_nothing() -> None:
    transport = RecordingTransport()
    empty = Digest(digest_date=DAY, data_through=DAY)
    report = run_with(
        transport,
        [Recipient(ALICE), Recipient(BOB)],
        digest=empty,
        render_settings=RenderSettings(on_empty="skip"),
    )
    assert transport.sent == []
    assert report.skipped == [
        (ALICE, "nothing new for 2026-08-14 (on_empty=skip)"),
        (BOB, "nothing new for 2026-08-14 (on_empty=skip)"),
    ]
    assert "0 sent, 0 already sent, 2 skipped, 0 failed" in report.summary()


def test_empty_day_note_sends_a_short_nothing_new_email() -> None:
    transport = RecordingTransport()
    empty = Digest(digest_date=DAY, data_through=DAY)
    report = run_with(transport, [Recipient(ALICE)], digest=empty)
    assert report.sent == [ALICE]
    assert transport.sent[0][1]["Subject"] == "Daily Papers · Fri Aug 14 · nothing new"


def test_unsubscribed_recipients_are_skipped_with_a_reason() -> None:
    transport = RecordingTransport()
    report = run_with(transport, [Recipient(ALICE, active=False), Recipient(BOB)])
    assert report.skipped == [(ALICE, "unsubscribed")] and report.sent == [BOB]


def test_weekly_digest_key_is_used_for_the_ledger_and_message_id() -> None:
    ledger, transport = MemoryLedger(), RecordingTransport()
    run_with(transport, [Recipient(ALICE, cadence="weekly")], ledger=ledger, digest_key="2026-W33")
    assert ledger.state(ALICE, "2026-W33") == "sent"
    message_id = transport.sent[0][1]["Message-ID"]
    assert message_id == message_id_for(ALICE, "2026-W33", "papers.example.org")


def test_unexpected_transport_error_is_reported_and_others_go_on() -> None:
    class Exploding(RecordingTransport):
        def send(self, message, *, recipient, digest_key):
            if recipient == ALICE:
                raise RuntimeError("kaboom")
            super().send(message, recipient=recipient, digest_key=digest_key)

    ledger = MemoryLedger()
    report = run_with(Exploding(), [Recipient(ALICE), Recipient(BOB)], ledger=ledger)
    assert report.failed == [(ALICE, "RuntimeError: kaboom")] and report.sent == [BOB]
    assert ledger.state(ALICE, "2026-08-14") == "failed"


def test_ledger_unavailable_before_sending_means_nothing_is_sent() -> None:
    class BrokenLedger(MemoryLedger):
        def mark_pending(self, recipient, digest_key, message_id):
            raise OSError("database is locked")

    transport = RecordingTransport()
    report = run_with(transport, [Recipient(ALICE)], ledger=BrokenLedger())
    assert transport.sent == [] and "ledger unavailable, nothing sent" in report.failed[0][1]


def test_invalid_digest_key_is_refused() -> None:
    with pytest.raises(ValueError):
        run_with(RecordingTransport(), [Recipient(ALICE)], digest_key="../../etc")


# ---- messages ------------------------------------------------------------------------------


def _message(
    recipient: str = ALICE, rendered: RenderedEmail | None = None, **overrides
) -> EmailMessage:
    rendered = rendered or render_digest(typical_digest(), settings=RENDER)
    kwargs = dict(
        recipient=recipient,
        sender=SENDER,
        message_id=message_id_for(recipient, "2026-08-14", "papers.example.org"),
        list_id=LIST_ID,
        unsubscribe=Unsubscribe(url="https://papers.example.org/u?x=1"),
        date=NOW,
    )
    kwargs.update(overrides)
    return build_message(rendered, **kwargs)


def test_message_id_is_deterministic_and_distinct() -> None:
    a = message_id_for(ALICE, "2026-08-14", "papers.example.org")
    assert a == message_id_for("  Alice@Example.org ", "2026-08-14", "papers.example.org")
    assert a != message_id_for(BOB, "2026-08-14", "papers.example.org")
    assert a != message_id_for(ALICE, "2026-08-15", "papers.example.org")
    assert a.startswith("<paperdigest.2026-08-14.") and a.endswith("@papers.example.org>")
    assert ALICE not in a  # the address does not leak into headers of forwarded mail
    with pytest.raises(ValueError):
        message_id_for(ALICE, "2026-08-14", "evil>\r\nBcc: x@y.org")


def test_title_with_newline_cannot_inject_a_header() -> None:
    evil = RenderedEmail(
        subject="Daily Papers · Fri\r\nBcc: victim@example.org\nX-Evil: 1",
        preheader="p",
        text="t",
        html="<p>h</p>",
    )
    message = _message(ALICE, rendered=evil)
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert parsed["Subject"] == "Daily Papers · Fri Bcc: victim@example.org X-Evil: 1"


@pytest.mark.parametrize(
    "field_name, value",
    [
        ("recipient", "alice@example.org\r\nBcc: x@y.org"),
        ("recipient", "Alice <alice@example.org>"),
        ("sender", "papers@papers.example.org\nBcc: x@y.org"),
        ("message_id", "<a@b>\r\nBcc: x@y.org"),
        ("list_id", "list.example.org>\r\nBcc: x"),
    ],
)
def test_header_values_with_line_breaks_are_refused(field_name: str, value: str) -> None:
    with pytest.raises(ValueError):
        _message(**{field_name: value})


def test_naive_date_is_refused() -> None:
    with pytest.raises(ValueError):
        _message(ALICE, date=datetime(2026, 8, 14, 7, 0))


def test_one_click_header_only_with_an_https_url() -> None:
    mail_only = _message(ALICE, unsubscribe=Unsubscribe(mailto="mailto:u@papers.example.org"))
    assert mail_only["List-Unsubscribe"] == "<mailto:u@papers.example.org>"
    assert mail_only["List-Unsubscribe-Post"] is None
    both = _message(ALICE)
    assert both["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_default_unsubscribe_falls_back_to_mailing_the_sender() -> None:
    transport = RecordingTransport()
    run_with(transport, [Recipient(ALICE)], render_settings=RenderSettings())
    message = transport.sent[0][1]
    assert message["List-Unsubscribe"] == f"<mailto:{SENDER}?subject=unsubscribe>"


# ---- outbox --------------------------------------------------------------------------------


def test_outbox_writes_eml_and_html_named_by_date_and_recipient(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    message = _message(ALICE)
    path = outbox.write(message, recipient=ALICE, digest_key="2026-08-14")
    assert path.parent == tmp_path / "outbox"
    assert path.name.startswith("2026-08-14_alice-at-example-org-") and path.suffix == ".eml"
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == message["Message-ID"]
    html = path.with_suffix(".html").read_text(encoding="utf-8")
    assert html == message.get_body(("html",)).get_content()
    assert sorted(p.suffix for p in path.parent.iterdir()) == [".eml", ".html"]


def test_outbox_file_names_never_escape_the_directory(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    sneaky = "../../etc/passwd@example.org"
    stem = outbox_stem("2026-08-14", sneaky)
    assert "/" not in stem and ".." not in stem
    path = outbox.write(_message(ALICE), recipient=sneaky, digest_key="2026-08-14")
    assert path.parent == tmp_path / "outbox"
    with pytest.raises(ValueError):
        outbox.write(_message(ALICE), recipient=ALICE, digest_key="../2026-08-14")
    assert outbox_stem("2026-08-14", "a.b@x.org") != outbox_stem("2026-08-14", "a-b@x.org")


def test_outbox_delivery_keeps_the_ledger_too(tmp_path: Path) -> None:
    ledger = MemoryLedger()
    outbox = OutboxTransport(tmp_path)
    first = run_with(outbox, [Recipient(ALICE)], ledger=ledger)
    second = run_with(outbox, [Recipient(ALICE)], ledger=ledger)
    assert first.sent == [ALICE] and second.skipped_already_sent == [ALICE]
    assert len(list(tmp_path.glob("*.eml"))) == 1


# ---- settings ------------------------------------------------------------------------------


def test_settings_from_env_with_defaults() -> None:
    assert not SmtpSettings.from_env({}).configured
    env = {
        "PAPERDIGEST_SMTP_HOST": "smtp.example.org",
        "PAPERDIGEST_SMTP_USER": USER,
        "PAPERDIGEST_SMTP_PASSWORD": PASSWORD,
        "PAPERDIGEST_SMTP_SECURITY": "SSL",
        "PAPERDIGEST_MAIL_FROM": SENDER,
    }
    settings = SmtpSettings.from_env(env)
    assert (settings.host, settings.port, settings.security) == ("smtp.example.org", 465, "ssl")
    assert settings.list_id == "paperdigest.papers.example.org"
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    starttls = SmtpSettings.from_env({**env, "PAPERDIGEST_SMTP_SECURITY": "starttls"})
    assert starttls.port == 587
    custom = SmtpSettings.from_env({**env, "PAPERDIGEST_SMTP_PORT": "2525"})
    assert custom.port == 2525


@pytest.mark.parametrize(
    "env",
    [
        {"PAPERDIGEST_SMTP_SECURITY": "tls-ish"},
        {"PAPERDIGEST_SMTP_PORT": "twenty-five"},
        {"PAPERDIGEST_MAIL_FROM": "not an address"},
        {"PAPERDIGEST_LIST_ID": "bad list id"},
    ],
)
def test_bad_settings_are_refused_without_echoing_the_password(env: dict) -> None:
    with pytest.raises(ValueError) as caught:
        SmtpSettings.from_env({"PAPERDIGEST_SMTP_PASSWORD": PASSWORD, **env})
    assert PASSWORD not in str(caught.value)


def test_make_transport_defaults_to_the_outbox(tmp_path: Path) -> None:
    assert isinstance(make_transport(SmtpSettings.from_env({}), tmp_path), OutboxTransport)
    smtp = make_transport(SmtpSettings(host="smtp.example.org"), tmp_path)
    assert isinstance(smtp, SmtpTransport)


class _Secret:
    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"


def _credentials(smtp_type: str = "SSL", port: int | None = None):
    kind = types.SimpleNamespace(name=smtp_type, value={"SSL": 465, "STARTTLS": 587}[smtp_type])
    return types.SimpleNamespace(
        username=SENDER,
        password=_Secret(PASSWORD),
        smtp_server=types.SimpleNamespace(value="smtp.gmail.com"),
        smtp_type=kind,
        smtp_port=port,
    )


def test_email_server_credentials_map_onto_settings() -> None:
    settings = smtp_settings_from_credentials(_credentials("SSL"), env={})
    assert (settings.host, settings.port, settings.security) == ("smtp.gmail.com", 465, "ssl")
    assert (settings.user, settings.password, settings.mail_from) == (SENDER, PASSWORD, SENDER)
    starttls = smtp_settings_from_credentials(_credentials("STARTTLS", port=2587), env={})
    assert (starttls.port, starttls.security) == (2587, "starttls")


def test_block_is_loaded_lazily_by_name(monkeypatch) -> None:
    loaded: list[str] = []

    class FakeCredentials:
        @staticmethod
        def load(name: str):
            loaded.append(name)
            return _credentials("STARTTLS")

    fake = types.ModuleType("prefect_email")
    fake.EmailServerCredentials = FakeCredentials
    monkeypatch.setitem(sys.modules, "prefect_email", fake)
    settings = smtp_settings_from_block("paperdigest-smtp")
    assert loaded == ["paperdigest-smtp"] and settings.security == "starttls"


def test_block_loading_without_prefect_email_says_what_is_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect_email", None)  # import fails
    with pytest.raises(RuntimeError, match="prefect-email"):
        smtp_settings_from_block("paperdigest-smtp")


def test_deliver_module_does_not_import_prefect() -> None:
    code = "import sys, flows.deliver; print('prefect' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_server_unavailable_is_a_delivery_error() -> None:
    assert issubclass(ServerUnavailable, DeliveryError)


# ---- batches and parallel connections ------------------------------------------------------


def test_a_large_batch_spreads_over_a_few_connections_and_each_message_arrives_once(
    server, handler, client_tls
) -> None:
    """120 readers with connections=3: three sessions share the work, every reader gets one
    message with its own Message-ID, and the report keeps the readers' order."""
    harness = harness_for(server.port, client_tls, connections=3)
    readers = [f"reader{n:03d}@example.org" for n in range(120)]
    try:
        report = harness.run(readers, batch_size=120)
    finally:
        harness.transport.close()
    assert report.sent == readers and report.failed == []
    assert len({r.session for r in handler.received}) == 3
    assert sorted(r.rcpt_tos[0] for r in handler.received) == readers
    ids = handler.message_ids()
    assert len(set(ids)) == 120
    assert all(harness.ledger.state(a, "2026-08-14") == "sent" for a in readers)


def test_a_refusal_on_one_connection_fails_only_that_reader(server, handler, client_tls) -> None:
    harness = harness_for(server.port, client_tls, connections=2)
    readers = [f"reader{n:03d}@example.org" for n in range(60)]
    handler.always_refuse["reader031@example.org"] = "550 5.1.1 no such mailbox"
    try:
        report = harness.run(readers)
    finally:
        harness.transport.close()
    assert [who for who, _ in report.failed] == ["reader031@example.org"]
    assert report.sent == [r for r in readers if r != "reader031@example.org"]
    assert harness.ledger.state("reader031@example.org", "2026-08-14") == "failed"


def test_a_reader_listed_twice_gets_one_message(harness, handler) -> None:
    report = harness.run([ALICE, BOB, ALICE])
    assert report.sent == [ALICE, BOB] and report.skipped_already_sent == [ALICE]
    assert len(handler.received) == 2


def test_smtp_connections_come_from_the_environment() -> None:
    env = {"PAPERDIGEST_SMTP_HOST": "mx.example.org", "PAPERDIGEST_SMTP_CONNECTIONS": "2"}
    assert SmtpSettings.from_env(env).connections == 2
    assert SmtpSettings.from_env({"PAPERDIGEST_SMTP_HOST": "mx"}).connections == 4
    with pytest.raises(ValueError, match="PAPERDIGEST_SMTP_CONNECTIONS"):
        SmtpSettings.from_env({**env, "PAPERDIGEST_SMTP_CONNECTIONS": "many"})
    with pytest.raises(ValueError, match="1 to 16"):
        SmtpSettings.from_env({**env, "PAPERDIGEST_SMTP_CONNECTIONS": "0"})


def test_a_server_found_down_while_the_next_batch_renders_stops_that_batch_too(
    client_tls,
) -> None:
    """Batches overlap (the next renders while one is handed over): a server that proves
    unreachable in the first batch leaves the later ones "not attempted", with no ledger row,
    exactly as one reader at a time would."""
    ledger = MemoryLedger()
    down = harness_for(free_port(), client_tls, ledger=ledger)
    report = down.run([ALICE, BOB, CAROL], batch_size=1)
    assert [who for who, _ in report.failed] == [ALICE, BOB, CAROL]
    assert "cannot reach 127.0.0.1" in report.failed[0][1]
    assert all(why.startswith("not attempted: ") for _, why in report.failed[1:])
    assert ledger.state(ALICE, "2026-08-14") == "failed"
    assert ledger.state(BOB, "2026-08-14") is None and ledger.state(CAROL, "2026-08-14") is None
