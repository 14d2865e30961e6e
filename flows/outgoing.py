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
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from flows.models import RenderedEmail
from flows.render import Unsubscribe

CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One recipient's message, encoded: `data` is the whole message with CRLF line ends."""

    recipient: str
    message_id: str
    data: bytes
    html: str  # the HTML body as rendered, for the outbox's preview file

    def as_email(self) -> EmailMessage:
        """The message parsed back into an EmailMessage (for transports that want one)."""
        from flows.deliver import HEADER_POLICY  # deliver imports this module at load time

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
    from flows.deliver import HEADER_POLICY, check_message_fields, list_headers

    check_message_fields(recipient, sender, message_id, list_id, date)
    boundary = _boundary(message_id)
    head = EmailMessage(policy=HEADER_POLICY)
    head["Subject"] = _one_line(rendered.subject)  # a title can never inject a header
    head["From"] = f"{_one_line(list_name)} <{sender}>"
    head["To"] = recipient
    head["Date"] = format_datetime(date)
    head["Message-ID"] = message_id
    head["List-Id"] = f"{_one_line(list_name)} <{list_id}>"
    for name, value in list_headers(unsubscribe):
        head[name] = value
    head["Auto-Submitted"] = "auto-generated"
    head["MIME-Version"] = "1.0"
    head["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    wire = HEADER_POLICY.clone(linesep="\r\n")
    # Only the header block: as_bytes() would also write an empty multipart body.
    headers = b"".join(wire.fold_binary(name, value) for name, value in head.items()) + CRLF
    parts = [_part(boundary, "plain", rendered.text), _part(boundary, "html", rendered.html)]
    closing = b"--" + boundary.encode() + b"--" + CRLF
    return OutgoingMessage(
        recipient, message_id, headers + b"".join(parts) + closing, rendered.html
    )


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
