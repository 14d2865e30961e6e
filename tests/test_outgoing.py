"""The wire encoding of digest emails (flows.outgoing) and the warehouse's batch ledger.

`encode_message` must give the message `build_message` gives, byte for byte once both are
parsed: same headers, same text and HTML. The warehouse's batch operations must leave the rows
the one-row methods leave.
"""

from __future__ import annotations

import email
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deliver_fakes import typical_digest

from flows.deliver import HEADER_POLICY, OutboxTransport, build_message, message_id_for
from flows.models import RenderedEmail
from flows.outgoing import encode_message, folded_header, header_line
from flows.render import RenderSettings, Unsubscribe, render_digest
from flows.warehouse import Warehouse

NOW = datetime(2026, 8, 14, 7, 0, tzinfo=UTC)
FIELDS = {
    "recipient": "alice@example.org",
    "sender": "papers@papers.example.org",
    "message_id": "<paperdigest.2026-08-14.abc@papers.example.org>",
    "list_id": "daily.papers.example.org",
    "unsubscribe": Unsubscribe(
        url="https://papers.example.org/unsubscribe?address=alice@example.org",
        mailto="mailto:unsubscribe@papers.example.org",
    ),
    "date": NOW,
    "list_name": "Daily Papers",
}


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=HEADER_POLICY)


def wire(message: email.message.EmailMessage) -> bytes:
    return message.as_bytes(policy=HEADER_POLICY.clone(linesep="\r\n"))


def assert_same_message(rendered: RenderedEmail) -> None:
    expected = parsed(wire(build_message(rendered, **FIELDS)))
    got = parsed(encode_message(rendered, **FIELDS).data)
    assert got.get_content_type() == expected.get_content_type() == "multipart/alternative"
    assert sorted(got.keys()) == sorted(expected.keys())
    for name in expected:
        if name != "Content-Type":  # the boundary differs (random in the email package)
            assert str(got[name]) == str(expected[name]), name
    for subtype in ("plain", "html"):
        want = expected.get_body((subtype,)).get_content()
        assert got.get_body((subtype,)).get_content() == want, subtype


def test_a_rendered_digest_encodes_to_the_message_build_message_makes() -> None:
    rendered = render_digest(typical_digest(), settings=RenderSettings())
    assert "·" in rendered.subject  # a non-ASCII subject: RFC 2047 encoded words
    assert_same_message(rendered)


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii\n",
        "no final newline",
        ".a line starting with a dot\nFrom the start of a line\n",
        "trailing spaces   \nand tabs\t\n",
        "= signs == and =3D and =_paperdigest_ in the text\n",
        "é ünïcödé — “quotes” 🙂 " * 40 + "\n",
        "x" * 500 + "\n",
        "windows\r\nline ends\r\nand a lone\rCR\n",
    ],
)
def test_awkward_bodies_survive_the_encoding(text: str) -> None:
    rendered = RenderedEmail(subject="Daily · test", preheader="", text=text, html=f"<p>{text}</p>")
    message = encode_message(rendered, **FIELDS)
    assert max(len(line) for line in message.data.split(b"\r\n")) <= 998
    assert b"\n" not in message.data.replace(b"\r\n", b"")  # CRLF only, no bare LF
    assert message.data.isascii()
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    got = parsed(message.data)
    body = got.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.rstrip("\n") == normalised.rstrip("\n")


def test_a_subject_cannot_inject_a_header() -> None:
    rendered = RenderedEmail(
        subject="Hi\r\nBcc: victim@example.org", preheader="", text="t\n", html="<p>t</p>"
    )
    got = parsed(encode_message(rendered, **FIELDS).data)
    assert got["Bcc"] is None and got["Subject"] == "Hi Bcc: victim@example.org"


def test_encode_message_checks_its_fields_like_build_message() -> None:
    rendered = RenderedEmail(subject="s", preheader="", text="t\n", html="<p>t</p>")
    with pytest.raises(ValueError, match="recipient address"):
        encode_message(rendered, **{**FIELDS, "recipient": "a@b.c\r\nBcc: x@y.z"})
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_message(rendered, **{**FIELDS, "date": datetime(2026, 8, 14)})


def test_as_email_reads_back_what_the_transports_are_given() -> None:
    rendered = render_digest(typical_digest())
    message = encode_message(rendered, **FIELDS).as_email()
    assert message["Message-ID"] == FIELDS["message_id"]
    assert message.get_body(("plain",)).get_content() == rendered.text
    assert message.get_body(("html",)).get_content().rstrip("\n") == rendered.html


def test_the_outbox_writes_an_encoded_message_and_its_html(tmp_path: Path) -> None:
    rendered = render_digest(typical_digest())
    message = encode_message(rendered, **FIELDS)
    [outcome] = OutboxTransport(tmp_path).send_many([message], digest_key="2026-08-14")
    assert outcome is None
    [eml] = tmp_path.glob("*.eml")
    assert eml.read_bytes() == message.data
    assert eml.with_suffix(".html").read_text(encoding="utf-8") == rendered.html


# ---- the warehouse's batch ledger -----------------------------------------------------------


def test_batch_ledger_operations_leave_the_rows_one_row_operations_leave(tmp_path: Path) -> None:
    key = "2026-08-14"
    readers = [f"reader{n}@example.org" for n in range(5)]
    ids = {r: message_id_for(r, key, "example.org") for r in readers}
    with (
        Warehouse.open(tmp_path / "one.duckdb") as one,
        Warehouse.open(tmp_path / "many.duckdb") as many,
    ):
        for reader in readers:
            one.mark_pending(reader, key, ids[reader])
        one.mark_sent(readers[0], key, ids[readers[0]])
        one.mark_failed(readers[1], key, ids[readers[1]], "451 later")
        one.mark_pending(readers[1], key, ids[readers[1]])  # tried again: attempt 2
        one.mark_sent(readers[1], key, ids[readers[1]])

        many.mark_pending_many(key, [(r, ids[r]) for r in readers])
        many.mark_sent_many(key, [(readers[0], ids[readers[0]])])
        many.mark_failed(readers[1], key, ids[readers[1]], "451 later")
        many.mark_pending_many(key, [(readers[1], ids[readers[1]])])
        many.mark_sent_many(key, [(readers[1], ids[readers[1]])])

        query = (
            "SELECT recipient, digest_key, message_id, state, attempts, error, sent_at IS NULL "
            "FROM sends ORDER BY recipient"
        )
        rows = many.con.execute(query).fetchall()
        assert rows == one.con.execute(query).fetchall()
        assert [r[3] for r in rows] == ["sent", "sent", "pending", "pending", "pending"]
        assert rows[1][4] == 2
        assert many.send_states([*readers, "nobody@example.org"], key) == {
            r: one.send_state(r, key) for r in readers
        }
        assert many.send_states(readers, "2026-08-15") == {}


def test_a_failed_batch_write_leaves_no_row(tmp_path: Path) -> None:
    with Warehouse.open(tmp_path / "papers.duckdb") as wh:
        with pytest.raises(Exception):  # noqa: B017 - the NOT NULL constraint of DuckDB
            wh.mark_pending_many("2026-08-14", [("a@example.org", "<a@x>"), ("b@x.org", None)])
        assert wh.send_states(["a@example.org", "b@x.org"], "2026-08-14") == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("To", "alice@example.org"),
        ("To", "a.b+tag_x@mail.example.org"),
        ("To", "o'brien@example.org"),
        ("Message-ID", "<paperdigest.2026-08-14.abc123@papers.example.org>"),
        ("Message-ID", "<paperdigest.2026-08-14-resend-20260814t070000.abc@x.org>"),
        ("List-Unsubscribe", "<https://x.org/u?address=a%40b.c&k=1>, <mailto:u@x.org?subject=u>"),
        ("List-Unsubscribe", "<https://x.org/" + "a" * 300 + ">"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/alternative; boundary="=_paperdigest_0123abcd"'),
    ],
)
def test_headers_written_as_given_are_what_the_email_package_writes(name, value) -> None:
    assert header_line(name, value) == folded_header(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("To", "odd..dots@example.org"),  # not a dot-atom: the email package decides
        ("To", "jörg@example.org"),
        ("List-Unsubscribe", "<https://x.org/=?utf-8?q?x?=>"),
        ("Subject", "Daily Papers · Fri Aug 14"),
        ("From", "Papers, daily <papers@x.org>"),
    ],
)
def test_other_headers_go_through_the_email_package(name, value) -> None:
    assert header_line(name, value) == folded_header(name, value)
