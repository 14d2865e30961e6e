"""Outgoing mail in its wire form: a digest email encoded once, as the bytes a server gets.

`build_message` in flows.deliver makes an `EmailMessage`; serialising that object costs more
than rendering the email (the email package quoted-printable encodes in pure Python, then
re-reads every line when it flattens). Delivering to a thousand readers encodes here instead:
the headers still go through the email package (folding, RFC 2047 words, the same policy), the
two bodies through the C quoted-printable encoder. The result parses back to the same message
(`tests/test_outgoing.py` checks it against `build_message`).
"""

from __future__ import annotations

import binascii
import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

from flows.models import RenderedEmail
from flows.render import Unsubscribe

CRLF = b"\r\n"
# Headers may be up to 998 characters: the default 78 would turn a long List-Unsubscribe URL
# into RFC 2047 encoded words that no client can follow.
HEADER_POLICY = email.policy.default.clone(max_line_length=998)
_WIRE = HEADER_POLICY.clone(linesep="\r\n")
# Headers written as given when their value is plain ASCII (the email package would write them
# unchanged, after parsing them at a cost that dominated encoding); others go through it.
_VERBATIM = frozenset(
    {
        "Message-ID",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    }
)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One recipient's message, encoded: `data` is the whole message with CRLF line ends."""

    recipient: str
    message_id: str
    data: bytes
    html: str  # the HTML body as rendered, for the outbox's preview file

    def as_email(self) -> EmailMessage:
        """The message parsed back into an EmailMessage (for transports that want one)."""
        # Parsed with plain newlines, as a message built in memory has them.
        parsed = email.message_from_bytes(self.data.replace(CRLF, b"\n"), policy=HEADER_POLICY)
        assert isinstance(parsed, EmailMessage)
        return parsed


def encode_message(
    rendered: RenderedEmail,
    *,
    recipient: str,
    sender: str,
    message_id: str,
    list_id: str,
    unsubscribe: Unsubscribe,
    date: datetime,
    list_name: str = "Daily Papers",
) -> OutgoingMessage:
    """Encode the multipart/alternative message (text, then HTML) with the list headers.

    The arguments are those of `flows.deliver.build_message`, and are checked the same way.
    """
    from flows.deliver import check_message_fields, list_headers  # deliver imports this module

    check_message_fields(recipient, sender, message_id, list_id, date)
    boundary = _boundary(message_id)
    headers = [
        ("Subject", _one_line(rendered.subject)),  # a title can never inject a header
        ("From", f"{_one_line(list_name)} <{sender}>"),
        ("To", recipient),
        ("Date", format_datetime(date)),
        ("Message-ID", message_id),
        ("List-Id", f"{_one_line(list_name)} <{list_id}>"),
        *list_headers(unsubscribe),
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = b"".join(header_line(name, value) for name, value in headers) + CRLF
    parts = [_part(boundary, "plain", rendered.text), _part(boundary, "html", rendered.html)]
    closing = b"--" + boundary.encode() + b"--" + CRLF
    return OutgoingMessage(recipient, message_id, head + b"".join(parts) + closing, rendered.html)


def header_line(name: str, value: str) -> bytes:
    """One header as the email package writes it (folded, encoded words), CRLF-terminated."""
    if _verbatim(name, value):
        return f"{name}: {value}\r\n".encode("ascii")
    return folded_header(name, value)


@lru_cache(maxsize=1024)
def folded_header(name: str, value: str) -> bytes:
    """The header through the email package (cached: subjects and senders repeat in a run)."""
    head = EmailMessage(policy=HEADER_POLICY)
    head[name] = value
    [(parsed_name, parsed_value)] = head.items()
    return _WIRE.fold_binary(parsed_name, parsed_value)


def _verbatim(name: str, value: str) -> bool:
    if not value.isascii() or "=?" in value or "\r" in value or "\n" in value:
        return False
    if len(name) + len(value) > 900:
        return False
    return name in _VERBATIM or (name == "To" and bool(_DOT_ATOM_ADDRESS.fullmatch(value)))


def _part(boundary: str, subtype: str, body: str) -> bytes:
    """One text part, quoted-printable, UTF-8, with CRLF line ends."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True).replace(b"\n", CRLF)
    header = (
        f"--{boundary}\r\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "MIME-Version: 1.0\r\n\r\n"
    )
    # The CRLF before the next boundary line belongs to the boundary, not to the body.
    return header.encode("ascii") + encoded + CRLF


def _boundary(message_id: str) -> str:
    # "=_" can never occur in quoted-printable text, so no body line can equal the boundary.
    return "=_paperdigest_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]


def _one_line(text: str) -> str:
    return " ".join(text.split())
