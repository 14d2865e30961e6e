"""Deliver rendered digests exactly once: MIME messages, an outbox or SMTP, and a send ledger.

Exactly once, per (recipient, digest key):

1. the ledger says "sent"            → skip (unless `resend=True`);
2. it says "pending" or "failed"     → send again with the SAME Message-ID, so a crash between
   the server's acceptance and `mark_sent` yields a duplicate mail clients fold into one;
3. nothing yet                       → `mark_pending` with the deterministic Message-ID, send,
   `mark_sent`.

At scale this runs a batch of readers at a time (`SEND_BATCH`): one ledger read, the batch
marked pending in one transaction, handed over (on a few SMTP connections at once), then marked
sent in one transaction. A crash in between leaves the batch pending: the next run re-sends that
batch, each message with its own Message-ID again, and nothing else. Messages are encoded once
(flows.outgoing), and the next batch renders while one is handed over.

Configuration comes from the environment (`SmtpSettings.from_env`) or from a Prefect
`EmailServerCredentials` block (`smtp_settings_from_block`, which imports Prefect lazily so
this module stays importable without it). With no SMTP host, mail goes to a local outbox.
The SMTP password is never logged, never in a repr, never in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from flows.atomic import write_atomic
from flows.models import Digest, ForYou, Recipient, RenderedEmail
from flows.outgoing import HEADER_POLICY, OutgoingMessage, encode_message
from flows.render import RenderSettings, Unsubscribe, render_digest, unsubscribe_for

log = logging.getLogger("paperdigest.deliver")

SECURITY_CHOICES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
STATE_PENDING, STATE_SENT, STATE_FAILED = "pending", "sent", "failed"
# Recipients per ledger transaction: a crash between the server's acceptance and the "sent"
# commit re-sends at most this many messages (each with its Message-ID, so clients fold them).
SEND_BATCH = 50
# Below this many messages per connection, another connection costs more than it saves.
MESSAGES_PER_CONNECTION = 10

# Headers may be up to 998 characters (flows.outgoing.HEADER_POLICY). Bodies are encoded before
# this policy is set, so quoted-printable lines stay within 76 characters.
_HEADER_POLICY = HEADER_POLICY
_DIGEST_KEY = re.compile(r"\d{4}-(\d{2}-\d{2}|W\d{2})(#[a-z0-9-]+)?")
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


# ---------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and as whom to send mail; `host=None` means "no SMTP: use the outbox"."""

    host: str | None = None
    port: int = 0  # 0 = the usual port for `security` (587, 465 or 25)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    security: str = "starttls"  # "starttls" | "ssl" (implicit TLS) | "none"
    mail_from: str = "paperdigest@localhost"
    list_id: str = ""  # "" = "paperdigest.<domain of mail_from>"
    timeout: float = 30.0
    connections: int = 4  # at most this many connections at once for a large batch

    def __post_init__(self) -> None:
        if self.security not in SECURITY_CHOICES:
            raise ValueError(f"SMTP security must be one of {SECURITY_CHOICES}")
        if not 1 <= self.connections <= 16:
            raise ValueError(f"SMTP connections must be 1 to 16, got {self.connections}")
        if not self.port:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.security])
        validate_address(self.mail_from, what="sender address")
        if not self.list_id:
            object.__setattr__(self, "list_id", f"paperdigest.{self.domain}")
        if not _DOMAIN.fullmatch(self.list_id):
            raise ValueError(f"list id must look like a domain name, got {self.list_id!r}")

    @property
    def configured(self) -> bool:
        """True when an SMTP host is set (otherwise mail goes to the outbox)."""
        return bool(self.host)

    @property
    def domain(self) -> str:
        """The sender's domain, used for Message-IDs and the default List-Id."""
        return self.mail_from.rsplit("@", 1)[1].lower()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read PAPERDIGEST_SMTP_* and PAPERDIGEST_MAIL_FROM / _LIST_ID from the environment."""
        env = os.environ if env is None else env
        port = env.get("PAPERDIGEST_SMTP_PORT", "").strip()
        if port and not port.isdigit():
            raise ValueError(f"PAPERDIGEST_SMTP_PORT must be a number, got {port!r}")
        connections = env.get("PAPERDIGEST_SMTP_CONNECTIONS", "").strip()
        if connections and not connections.isdigit():
            raise ValueError(f"PAPERDIGEST_SMTP_CONNECTIONS must be a number, got {connections!r}")
        return cls(
            host=env.get("PAPERDIGEST_SMTP_HOST", "").strip() or None,
            port=int(port or 0),
            user=env.get("PAPERDIGEST_SMTP_USER", "").strip() or None,
            password=env.get("PAPERDIGEST_SMTP_PASSWORD") or None,
            security=env.get("PAPERDIGEST_SMTP_SECURITY", "starttls").strip().lower(),
            mail_from=env.get("PAPERDIGEST_MAIL_FROM", "").strip() or "paperdigest@localhost",
            list_id=env.get("PAPERDIGEST_LIST_ID", "").strip(),
            connections=int(connections or 4),
        )


def smtp_settings_from_credentials(
    credentials: Any, env: Mapping[str, str] | None = None
) -> SmtpSettings:
    """Map a prefect-email `EmailServerCredentials` onto SmtpSettings (sender/list from env).

    smtp_server → host, smtp_port (or the smtp_type's port) → port, smtp_type SSL/STARTTLS/
    INSECURE → ssl/starttls/none, username → user, password (a SecretStr) → password.
    """
    env = os.environ if env is None else env
    smtp_type = getattr(credentials, "smtp_type", None)
    type_name = getattr(smtp_type, "name", str(smtp_type or "STARTTLS")).upper()
    security = {"SSL": "ssl", "STARTTLS": "starttls", "INSECURE": "none"}.get(type_name)
    if security is None:
        raise ValueError(f"unknown smtp_type {type_name!r} in the credentials block")
    server = credentials.smtp_server
    secret = credentials.password
    password = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    return SmtpSettings(
        host=getattr(server, "value", server),
        port=int(getattr(credentials, "smtp_port", None) or getattr(smtp_type, "value", 0) or 0),
        user=credentials.username or None,
        password=password or None,
        security=security,
        mail_from=env.get("PAPERDIGEST_MAIL_FROM", "").strip()
        or credentials.username
        or "paperdigest@localhost",
        list_id=env.get("PAPERDIGEST_LIST_ID", "").strip(),
    )


def smtp_settings_from_block(name: str) -> SmtpSettings:
    """Load SMTP settings from a saved Prefect `EmailServerCredentials` block, by name."""
    try:  # Imported here: only the flow layer may import Prefect at module import time.
        from prefect_email import EmailServerCredentials
    except ImportError as err:
        raise RuntimeError(
            "loading an EmailServerCredentials block needs the prefect-email package"
        ) from err
    return smtp_settings_from_credentials(EmailServerCredentials.load(name))


def validate_address(address: str, *, what: str = "address") -> str:
    """Return the address if it is one plain mailbox (no display name, no CR/LF), else raise."""
    if not isinstance(address, str) or len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise ValueError(f"invalid {what}: {address!r}")
    return address


# ---------------------------------------------------------------------------------------
# Messages


def message_id_for(recipient: str, digest_key: str, domain: str) -> str:
    """A Message-ID that is the same for the same recipient and digest, on every run."""
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"invalid Message-ID domain {domain!r}")
    seed = f"{recipient.strip().lower()}\n{digest_key}".encode()
    token = hashlib.sha256(seed).hexdigest()[:24]
    key = re.sub(r"[^0-9A-Za-z-]", "-", digest_key)
    return f"<paperdigest.{key}.{token}@{domain.lower()}>"


def build_message(
    rendered: RenderedEmail,
    *,
    recipient: str,
    sender: str,
    message_id: str,
    list_id: str,
    unsubscribe: Unsubscribe,
    date: datetime,
    list_name: str = "Daily Papers",
) -> EmailMessage:
    """Build the multipart/alternative message (text first, then HTML) with list headers."""
    check_message_fields(recipient, sender, message_id, list_id, date)
    message = EmailMessage()
    message.set_content(rendered.text, subtype="plain", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    message.policy = _HEADER_POLICY
    message["Subject"] = _one_line(rendered.subject)  # a title can never inject a header
    message["From"] = f"{_one_line(list_name)} <{sender}>"
    message["To"] = recipient
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["List-Id"] = f"{_one_line(list_name)} <{list_id}>"
    _add_unsubscribe_headers(message, unsubscribe)
    message["Auto-Submitted"] = "auto-generated"  # no vacation auto-replies to a newsletter
    return message


def check_message_fields(
    recipient: str, sender: str, message_id: str, list_id: str, date: datetime
) -> None:
    """Raise ValueError unless the addresses, Message-ID, list id and date are well formed."""
    validate_address(recipient, what="recipient address")
    validate_address(sender, what="sender address")
    if not re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", message_id):
        raise ValueError(f"invalid Message-ID {message_id!r}")
    if not _DOMAIN.fullmatch(list_id):
        raise ValueError(f"invalid list id {list_id!r}")
    if date.tzinfo is None:
        raise ValueError("the Date header needs a timezone-aware datetime")


def list_headers(unsubscribe: Unsubscribe) -> list[tuple[str, str]]:
    """The List-Unsubscribe (and, with an https URL, the one-click Post) headers."""
    targets = [t for t in (unsubscribe.url, unsubscribe.mailto) if t]
    if not targets:
        return []
    headers = [("List-Unsubscribe", ", ".join(f"<{t}>" for t in targets))]
    if unsubscribe.url:  # RFC 8058 one-click needs an https URL to POST to
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


def _add_unsubscribe_headers(message: EmailMessage, unsubscribe: Unsubscribe) -> None:
    for name, value in list_headers(unsubscribe):
        message[name] = value


def default_unsubscribe(settings: RenderSettings, recipient: str, sender: str) -> Unsubscribe:
    """The recipient's unsubscribe targets, falling back to a mailto: to the sender."""
    targets = unsubscribe_for(settings, recipient)
    if targets.url or targets.mailto:
        return targets
    return Unsubscribe(mailto=f"mailto:{quote(sender, safe='@')}?subject=unsubscribe")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------
# Transports


class DeliveryError(Exception):
    """A message could not be delivered; `temporary` says whether a later try may work."""

    temporary = False


class PermanentFailure(DeliveryError):
    """The server refused this recipient or message for good (a 5xx reply)."""


class TemporaryFailure(DeliveryError):
    """A 4xx reply or a dropped connection that outlasted the retries."""

    temporary = True


class ServerUnavailable(DeliveryError):
    """The server cannot be reached or refuses our login: no use trying other recipients."""

    temporary = True


class NotAttempted(TemporaryFailure):
    """Not handed over at all: the server had already proved unavailable in this run."""

    @classmethod
    def after(cls, error: Exception | None) -> NotAttempted:
        """The failure of a message left untried because of `error`."""
        return cls(f"not attempted: {error}")


class Transport(Protocol):
    """Somewhere a message can be handed to: the SMTP server or the local outbox."""

    def send(self, message: EmailMessage, *, recipient: str, digest_key: str) -> None:
        """Deliver one message or raise a DeliveryError."""
        ...


class OutboxTransport:
    """Writes each message to `<directory>/<stem>.eml` plus `<stem>.html` for a quick look."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"OutboxTransport({str(self.directory)!r})"

    def __enter__(self) -> OutboxTransport:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def send(self, message: EmailMessage, *, recipient: str, digest_key: str) -> None:
        """Write the message (atomically) to the outbox directory."""
        self.write(message, recipient=recipient, digest_key=digest_key)

    def send_many(
        self, messages: Sequence[OutgoingMessage], *, digest_key: str
    ) -> list[Exception | None]:
        """Write each encoded message and its HTML; per message, None or the error."""
        outcomes: list[Exception | None] = []
        for message in messages:
            try:
                self.write_encoded(message, digest_key=digest_key)
            except OSError as err:  # a full disk fails this message; the ledger says so
                outcomes.append(TemporaryFailure(f"cannot write to the outbox: {err}"))
            else:
                outcomes.append(None)
        return outcomes

    def write_encoded(self, message: OutgoingMessage, *, digest_key: str) -> Path:
        """Write an encoded message and its HTML part; return the path of the .eml file."""
        stem = outbox_stem(digest_key, message.recipient)
        self.directory.mkdir(parents=True, exist_ok=True)
        eml = self._inside(f"{stem}.eml")
        write_atomic(self._inside(f"{stem}.html"), message.html.encode("utf-8"))
        write_atomic(eml, message.data)
        log.info("wrote %s to the outbox", eml.name)
        return eml

    def write(self, message: EmailMessage, *, recipient: str, digest_key: str) -> Path:
        """Write the message and its HTML part; return the path of the .eml file."""
        stem = outbox_stem(digest_key, recipient)
        self.directory.mkdir(parents=True, exist_ok=True)
        eml = self._inside(f"{stem}.eml")
        html_part = message.get_body(preferencelist=("html",))
        if html_part is not None:
            write_atomic(self._inside(f"{stem}.html"), html_part.get_content().encode("utf-8"))
        write_atomic(eml, message.as_bytes(policy=_HEADER_POLICY.clone(linesep="\r\n")))
        log.info("wrote %s to the outbox", eml.name)
        return eml

    def _inside(self, name: str) -> Path:
        root = self.directory.resolve()
        path = (root / name).resolve()
        if path.parent != root:  # defence in depth: outbox_stem already allows no separators
            raise ValueError(f"outbox file {name!r} would escape {root}")
        return path


def outbox_stem(digest_key: str, recipient: str) -> str:
    """A file stem from the digest key and a sanitized recipient slug (never page content)."""
    if not _DIGEST_KEY.fullmatch(digest_key):
        raise ValueError(f"invalid digest key {digest_key!r}")
    slug = re.sub(r"[^a-z0-9]+", "-", recipient.lower().replace("@", "-at-")).strip("-")[:48]
    # The hash keeps "a.b@x" and "a-b@x" apart after slugging.
    digest = hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:8]
    return f"{digest_key.replace('#', '_')}_{slug or 'recipient'}-{digest}"


class SmtpTransport:
    """Sends over SMTP (STARTTLS, implicit TLS or plain), reusing one connection per batch.

    Temporary trouble (4xx replies, a dropped connection) is retried `attempts` times with
    exponential backoff; a 5xx for a recipient fails that recipient only.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        attempts: int = 3,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not settings.configured:
            raise ValueError("SmtpTransport needs an SMTP host (PAPERDIGEST_SMTP_HOST)")
        self.settings = settings
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._smtp: smtplib.SMTP | None = None
        self._lanes: list[SmtpTransport] = []  # extra connections for large batches

    def __repr__(self) -> str:
        s = self.settings
        return f"SmtpTransport({s.host}:{s.port}, security={s.security!r}, user={s.user!r})"

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send_many(
        self, messages: Sequence[OutgoingMessage], *, digest_key: str
    ) -> list[Exception | None]:
        """Send encoded messages; per message, None (accepted) or the error, in order.

        The first goes alone (a server that is down or refuses our login fails once, and the
        rest are not attempted); the others are spread over up to `settings.connections`
        connections, one more for every MESSAGES_PER_CONNECTION messages.
        """
        if not messages:
            return []
        first = self._outcome(messages[0], digest_key)
        if isinstance(first, ServerUnavailable):
            return [first] + [NotAttempted.after(first)] * (len(messages) - 1)
        rest = list(messages[1:])
        lanes = [self, *self._extra_lanes(len(rest))]
        if len(lanes) == 1:
            return [first, *self._send_in_order(rest, digest_key)]
        with ThreadPoolExecutor(len(lanes), thread_name_prefix="smtp") as pool:
            shares = [rest[n :: len(lanes)] for n in range(len(lanes))]
            results = list(
                pool.map(lambda lane, share: lane._send_in_order(share, digest_key), lanes, shares)
            )
        outcomes: list[Exception | None] = [None] * len(rest)
        for n, lane_outcomes in enumerate(results):
            outcomes[n :: len(lanes)] = lane_outcomes
        return [first, *outcomes]

    def _extra_lanes(self, n_messages: int) -> list[SmtpTransport]:
        wanted = min(self.settings.connections, max(1, n_messages // MESSAGES_PER_CONNECTION))
        while len(self._lanes) < wanted - 1:
            self._lanes.append(
                SmtpTransport(
                    self.settings,
                    ssl_context=self._ssl_context,
                    attempts=self.attempts,
                    backoff=self.backoff,
                    sleep=self._sleep,
                )
            )
        return self._lanes[: wanted - 1]

    def _send_in_order(
        self, messages: Sequence[OutgoingMessage], digest_key: str
    ) -> list[Exception | None]:
        """One connection's share: after a ServerUnavailable, the rest are not attempted."""
        outcomes: list[Exception | None] = []
        for message in messages:
            outcome = self._outcome(message, digest_key)
            outcomes.append(outcome)
            if isinstance(outcome, ServerUnavailable):
                outcomes += [NotAttempted.after(outcome)] * (len(messages) - len(outcomes))
                break
        return outcomes

    def _outcome(self, message: OutgoingMessage, digest_key: str) -> Exception | None:
        try:
            self.send(message, recipient=message.recipient, digest_key=digest_key)
        except DeliveryError as err:
            return err
        except Exception as err:  # reported for this recipient; the others still go
            log.exception("unexpected error sending to %s", message.recipient)
            return err
        return None

    def send(
        self, message: EmailMessage | OutgoingMessage, *, recipient: str, digest_key: str
    ) -> None:
        """Send one message to one recipient, retrying temporary failures."""
        for attempt in range(1, self.attempts + 1):
            try:
                self._send_once(message, recipient)
                return
            except DeliveryError as err:
                if not err.temporary or attempt == self.attempts:
                    raise
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "temporary failure sending %s to %s (attempt %d of %d), retrying in %.2fs: %s",
                    digest_key, recipient, attempt, self.attempts, delay, err,
                )  # fmt: skip
                self._drop_connection()
                self._sleep(delay)

    def close(self) -> None:
        """Say QUIT and close the connection(s), if open."""
        for lane in self._lanes:
            lane.close()
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._smtp.close()
        finally:
            self._smtp = None

    def _send_once(self, message: EmailMessage | OutgoingMessage, recipient: str) -> None:
        # Errors are raised outside the `except` blocks so they carry no __context__: the
        # original smtplib exception may quote whatever the server said.
        smtp = self._connection()
        failure = self._try_send(smtp, message, recipient)
        if failure is not None:
            raise failure

    def _try_send(
        self, smtp: smtplib.SMTP, message: EmailMessage | OutgoingMessage, recipient: str
    ) -> DeliveryError | None:
        try:
            if isinstance(message, OutgoingMessage):  # already encoded: no flattening
                smtp.sendmail(self.settings.mail_from, [recipient], message.data)
            else:
                smtp.send_message(message, from_addr=self.settings.mail_from, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as err:
            code, reply = err.recipients.get(recipient, (550, b"recipient refused"))
            return self._failure(code, reply, "recipient refused")
        except smtplib.SMTPResponseException as err:  # sender refused, data refused
            return self._failure(err.smtp_code, err.smtp_error, "message refused")
        except (smtplib.SMTPServerDisconnected, OSError) as err:
            self._drop_connection()
            return TemporaryFailure(self._redact(f"connection lost while sending: {err}"))
        return None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            s = self.settings
            log.info(
                "connecting to SMTP %s:%d (%s) as %s", s.host, s.port, s.security, s.user or "-"
            )
            opened = self._try_open()
            if isinstance(opened, DeliveryError):
                raise opened
            self._smtp = opened
        return self._smtp

    def _try_open(self) -> smtplib.SMTP | DeliveryError:
        s = self.settings
        try:
            return self._open()
        except smtplib.SMTPAuthenticationError as err:
            # 454 is "try again later"; 535 and friends mean the credentials are wrong.
            return self._unavailable(self._describe("login refused", err), err.smtp_code)
        except smtplib.SMTPResponseException as err:
            return self._unavailable(self._describe("session refused", err), err.smtp_code)
        except (ssl.SSLCertVerificationError, smtplib.SMTPNotSupportedError) as err:
            # A certificate we do not trust, or no STARTTLS/AUTH: retrying will not help.
            return self._unavailable(self._redact(f"cannot use {s.host}:{s.port}: {err}"), 500)
        except (smtplib.SMTPException, OSError) as err:
            return self._unavailable(self._redact(f"cannot reach {s.host}:{s.port}: {err}"), 400)

    @staticmethod
    def _unavailable(detail: str, code: int) -> ServerUnavailable:
        unavailable = ServerUnavailable(detail)
        unavailable.temporary = 400 <= code < 500
        return unavailable

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        context = self._ssl_context or ssl.create_default_context()
        helo = s.domain  # our own name; avoids a slow getfqdn() lookup
        smtp: smtplib.SMTP
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=helo, timeout=s.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, local_hostname=helo, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.user:
                if s.security == "none":
                    log.warning(
                        "logging in to %s without TLS: the password crosses in clear", s.host
                    )
                smtp.login(s.user, s.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _drop_connection(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def _failure(self, code: int, reply: bytes | str, what: str) -> DeliveryError:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        detail = self._redact(f"{what}: {code} {_one_line(text)}")
        if code == 421:  # the server is closing the channel: reconnect before retrying
            self._drop_connection()
        return TemporaryFailure(detail) if 400 <= code < 500 else PermanentFailure(detail)

    def _describe(self, what: str, err: smtplib.SMTPResponseException) -> str:
        reply = err.smtp_error
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return self._redact(f"{what}: {err.smtp_code} {_one_line(text)}")

    def _redact(self, text: str) -> str:
        """Remove the password (plain or as an AUTH PLAIN/LOGIN blob) from any text."""
        secret = self.settings.password
        if not secret:
            return text
        user = self.settings.user or ""
        forms = {
            secret,
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
        }
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
        return text


def make_transport(
    settings: SmtpSettings, outbox: Path, *, ssl_context: ssl.SSLContext | None = None
) -> SmtpTransport | OutboxTransport:
    """SMTP when a host is configured, otherwise the local outbox directory."""
    if settings.configured:
        return SmtpTransport(settings, ssl_context=ssl_context)
    log.info("no SMTP host configured (PAPERDIGEST_SMTP_HOST): writing mail to %s", outbox)
    return OutboxTransport(outbox)


# ---------------------------------------------------------------------------------------
# The ledger and the delivery loop


class SendLedger(Protocol):
    """The `sends` table: one row per (recipient, digest key), state pending → sent|failed.

    `mark_pending` inserts or updates the row (a re-send after "failed", or a deliberate
    `resend` with a new Message-ID, moves an existing row back to pending).
    """

    def send_state(self, recipient: str, digest_key: str) -> tuple[str, str] | None:
        """(state, message_id) of the row, or None when nothing was tried yet."""
        ...

    def mark_pending(self, recipient: str, digest_key: str, message_id: str) -> None:
        """Record that a message with this id is about to be handed to the server."""
        ...

    def mark_sent(self, recipient: str, digest_key: str, message_id: str) -> None:
        """Record that the server accepted the message."""
        ...

    def mark_failed(self, recipient: str, digest_key: str, message_id: str, error: str) -> None:
        """Record that delivery failed and why (the next run tries again, same id)."""
        ...


@dataclass(slots=True)
class DeliveryReport:
    """What one delivery run did for each recipient, and why."""

    digest_key: str
    transport: str = ""
    sent: list[str] = field(default_factory=list)
    skipped_already_sent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (address, why)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (address, reason)

    @property
    def ok(self) -> bool:
        """True when no recipient failed."""
        return not self.failed

    def summary(self) -> str:
        """One paragraph a person can read: counts, then each skip and failure with its reason."""
        lines = [
            f"digest {self.digest_key} via {self.transport or 'transport'}: "
            f"{len(self.sent)} sent, {len(self.skipped_already_sent)} already sent, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed"
        ]
        lines += [f"  skipped {address}: {why}" for address, why in self.skipped]
        lines += [f"  FAILED {address}: {reason}" for address, reason in self.failed]
        return "\n".join(lines)


def deliver_digest(
    digest: Digest,
    recipients: Iterable[Recipient],
    *,
    ledger: SendLedger,
    transport: Transport,
    sender: str,
    list_id: str,
    digest_key: str | None = None,
    render_settings: RenderSettings | None = None,
    resend: bool = False,
    now: Callable[[], datetime] | None = None,
    batch_size: int = SEND_BATCH,
    rankings: Mapping[str, ForYou] | None = None,
) -> DeliveryReport:
    """Render and send the digest to each recipient exactly once; never stops at a failure.

    `digest_key` defaults to the digest date (ISO); pass e.g. "2026-W33" for a weekly digest.
    Recipients go in batches of `batch_size`: one ledger read, one pending transaction, the
    hand-over, one sent transaction. A crash re-sends at most one batch, with the same ids.
    While a batch is handed over (in a thread: the server's replies are waits), the next one
    is rendered; its rows are written only after the first batch's outcomes are.
    `rankings` (flows.ranking, by address) puts a reader's "For you" picks first.
    """
    key = digest_key or digest.digest_date.isoformat()
    if not _DIGEST_KEY.fullmatch(key):
        raise ValueError(f"invalid digest key {key!r}")
    validate_address(sender, what="sender address")
    hand_overs = ThreadPoolExecutor(1, thread_name_prefix="hand-over")
    run = _DeliveryRun(
        digest=digest,
        digest_key=key,
        ledger=batch_ledger(ledger),
        transport=transport,
        sender=sender,
        list_id=list_id,
        settings=render_settings or RenderSettings(),
        resend=resend,
        now=now or (lambda: datetime.now(UTC)),
        report=DeliveryReport(digest_key=key, transport=repr(transport)),
        hand_overs=hand_overs,
        rankings=rankings or {},
    )
    with hand_overs:
        for batch in _batches(recipients, max(1, batch_size)):
            run.deliver_batch(batch)
        run.finish_in_flight()
    log.info("%s", run.report.summary())
    return run.report


def _batches(recipients: Iterable[Recipient], size: int) -> Iterator[list[Recipient]]:
    """Runs of up to `size` recipients, an address never twice in one (the second waits for
    the first's ledger row, as it would one at a time)."""
    batch: list[Recipient] = []
    addresses: set[str] = set()
    for recipient in recipients:
        if len(batch) >= size or recipient.address in addresses:
            yield batch
            batch, addresses = [], set()
        batch.append(recipient)
        addresses.add(recipient.address)
    if batch:
        yield batch


class BatchLedger(Protocol):
    """A SendLedger that also reads and writes a batch at a time (the Warehouse does)."""

    def send_states(self, recipients: Sequence[str], digest_key: str) -> dict[str, tuple[str, str]]:
        """(state, message_id) for each recipient that has a row."""
        ...

    def mark_pending_many(self, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        """`mark_pending` for each (recipient, message_id), all or none."""
        ...

    def mark_sent_many(self, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        """`mark_sent` for each (recipient, message_id), all or none."""
        ...

    def mark_failed(self, recipient: str, digest_key: str, message_id: str, error: str) -> None:
        """Record that delivery failed and why."""
        ...


@dataclass(frozen=True, slots=True)
class _RowByRowLedger:
    """The batch operations of a ledger that only has the one-row SendLedger methods."""

    ledger: SendLedger

    def send_states(self, recipients: Sequence[str], digest_key: str) -> dict[str, tuple[str, str]]:
        states = {r: self.ledger.send_state(r, digest_key) for r in recipients}
        return {r: state for r, state in states.items() if state}

    def mark_pending_many(self, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        for recipient, message_id in sends:
            self.ledger.mark_pending(recipient, digest_key, message_id)

    def mark_sent_many(self, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        for recipient, message_id in sends:
            self.ledger.mark_sent(recipient, digest_key, message_id)

    def mark_failed(self, recipient: str, digest_key: str, message_id: str, error: str) -> None:
        self.ledger.mark_failed(recipient, digest_key, message_id, error)


def batch_ledger(ledger: SendLedger) -> BatchLedger:
    """The ledger itself when it has the batch operations, else a row-by-row adapter."""
    if all(
        hasattr(ledger, name) for name in ("send_states", "mark_pending_many", "mark_sent_many")
    ):
        return ledger  # type: ignore[return-value]
    return _RowByRowLedger(ledger)


def hand_over(
    transport: Transport, messages: Sequence[OutgoingMessage], digest_key: str
) -> list[Exception | None]:
    """Give each message to the transport; per message, None (accepted) or the error.

    A transport with `send_many` gets the whole batch (the SMTP transport spreads it over a
    few connections); any other gets one EmailMessage at a time. After a ServerUnavailable
    the rest are not attempted.
    """
    send_many = getattr(transport, "send_many", None)
    if send_many is not None:
        return send_many(messages, digest_key=digest_key)
    outcomes: list[Exception | None] = []
    for message in messages:
        try:
            email_message = message.as_email()
            transport.send(email_message, recipient=message.recipient, digest_key=digest_key)
        except Exception as err:  # the run records it; a ServerUnavailable stops the batch
            if not isinstance(err, DeliveryError):
                log.exception("unexpected error sending to %s", message.recipient)
            outcomes.append(err)
            if isinstance(err, ServerUnavailable):
                break
        else:
            outcomes.append(None)
    return outcomes + [NotAttempted.after(outcomes[-1])] * (len(messages) - len(outcomes))


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A batch marked pending and being handed over in the thread."""

    messages: list[OutgoingMessage]
    addresses: set[str]
    future: Future[list[Exception | None]]


@dataclass(slots=True)
class _DeliveryRun:
    """One run over the recipients: the ledger protocol, applied a batch at a time."""

    digest: Digest
    digest_key: str
    ledger: BatchLedger
    transport: Transport
    sender: str
    list_id: str
    settings: RenderSettings
    resend: bool
    now: Callable[[], datetime]
    report: DeliveryReport
    hand_overs: ThreadPoolExecutor  # one thread: a batch at a time
    unavailable: str | None = None  # set once the server proved unreachable: stop trying
    in_flight: _InFlight | None = None  # the batch being handed over, not yet recorded
    rankings: Mapping[str, ForYou] = field(default_factory=dict)

    def deliver_batch(self, recipients: list[Recipient]) -> None:
        """Read the batch's ledger rows, render what is owed, record the batch before it,
        then mark this one pending and start handing it over."""
        due = [r for r in recipients if not self._skipped(r)]
        if not due:
            return
        if self.in_flight and self.in_flight.addresses & {r.address for r in due}:
            self.finish_in_flight()  # a repeated address reads its row after the first send
        try:
            states = self.ledger.send_states([r.address for r in due], self.digest_key)
        except Exception as err:
            for recipient in due:
                self._fail(recipient.address, f"ledger unavailable, nothing sent: {err}")
            return
        owed = [(r, states.get(r.address)) for r in due if self._owed(r, states.get(r.address))]
        messages = [m for m in (self._outgoing(r, state) for r, state in owed) if m]
        self.finish_in_flight()
        if messages:
            self._start_hand_over(messages)

    def _skipped(self, recipient: Recipient) -> bool:
        why_skip = self._skip_reason(recipient)
        if why_skip:
            self.report.skipped.append((recipient.address, why_skip))
            log.info("skipping %s: %s", recipient.address, why_skip)
        return bool(why_skip)

    def _skip_reason(self, recipient: Recipient) -> str | None:
        if not recipient.active:
            return "unsubscribed"
        if self.digest.is_empty and self.settings.on_empty == "skip":
            return f"nothing new for {self.digest_key} (on_empty=skip)"
        return None

    def _owed(self, recipient: Recipient, state: tuple[str, str] | None) -> bool:
        address = recipient.address
        if state and state[0] == STATE_SENT and not self.resend:
            self.report.skipped_already_sent.append(address)
            log.info("already sent %s to %s as %s", self.digest_key, address, state[1])
            return False
        if self.unavailable:
            self._fail(address, f"not attempted: {self.unavailable}")
            return False
        return True

    def _message_id(self, address: str, state: tuple[str, str] | None) -> str:
        domain = self.sender.rsplit("@", 1)[1]
        if state and state[0] in (STATE_PENDING, STATE_FAILED):
            return state[1]  # the same id again, so a duplicate is recognisable as one
        if state and state[0] == STATE_SENT:  # a deliberate resend: a new id, or clients hide it
            stamp = self.now().strftime("%Y%m%dt%H%M%S").lower()
            return message_id_for(address, f"{self.digest_key}#resend-{stamp}", domain)
        return message_id_for(address, self.digest_key, domain)

    def _outgoing(
        self, recipient: Recipient, state: tuple[str, str] | None
    ) -> OutgoingMessage | None:
        """The recipient's message, rendered and encoded; None (and a failure) if it cannot be."""
        try:
            return self._message_for(recipient, self._message_id(recipient.address, state))
        except Exception as err:
            log.exception("could not build the digest for %s", recipient.address)
            self._fail(recipient.address, f"could not render the digest: {err}")
            return None

    def _message_for(self, recipient: Recipient, message_id: str) -> OutgoingMessage:
        rendered = render_digest(
            self.digest,
            recipient=recipient,
            settings=self.settings,
            for_you=self.rankings.get(recipient.address),
        )
        return encode_message(
            rendered,
            recipient=recipient.address,
            sender=self.sender,
            message_id=message_id,
            list_id=self.list_id,
            unsubscribe=default_unsubscribe(self.settings, recipient.address, self.sender),
            date=self.now(),
            list_name=self.settings.list_name,
        )

    def _start_hand_over(self, messages: list[OutgoingMessage]) -> None:
        """Pending rows first (one transaction), then the hand-over starts in the thread."""
        if self.unavailable:  # found while this batch was rendered: no rows, no attempt
            for message in messages:
                self._fail(message.recipient, f"not attempted: {self.unavailable}")
            return
        sends = [(m.recipient, m.message_id) for m in messages]
        try:
            self.ledger.mark_pending_many(self.digest_key, sends)
        except Exception as err:  # without pending rows a crash could not be recovered
            for message in messages:
                self._fail(message.recipient, f"ledger unavailable, nothing sent: {err}")
            return
        future = self.hand_overs.submit(hand_over, self.transport, messages, self.digest_key)
        self.in_flight = _InFlight(messages, {m.recipient for m in messages}, future)

    def finish_in_flight(self) -> None:
        """Wait for the batch being handed over and record each outcome in the ledger."""
        if self.in_flight is None:
            return
        messages, outcomes = self.in_flight.messages, self.in_flight.future.result()
        self.in_flight = None
        accepted = []
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome is None:
                accepted.append(message)
            else:
                self._record_failure(message.recipient, message.message_id, _reason(outcome))
                if isinstance(outcome, ServerUnavailable):
                    self.unavailable = self.unavailable or str(outcome)
        self._record_sent(accepted)

    def _record_sent(self, accepted: list[OutgoingMessage]) -> None:
        try:
            self.ledger.mark_sent_many(
                self.digest_key, [(m.recipient, m.message_id) for m in accepted]
            )
        except Exception as err:
            for message in accepted:
                self._record_failure(
                    message.recipient,
                    message.message_id,
                    f"accepted by the server, but the ledger could not record it ({err}); "
                    f"the next run re-sends it with the same Message-ID {message.message_id}",
                )
            return
        for message in accepted:
            self.report.sent.append(message.recipient)
            log.info("sent %s to %s as %s", self.digest_key, message.recipient, message.message_id)

    def _record_failure(self, address: str, message_id: str, error: str) -> None:
        self._fail(address, error)
        try:
            self.ledger.mark_failed(address, self.digest_key, message_id, error)
        except Exception:  # the row stays "pending", which the next run also re-sends
            log.exception("could not record the failure for %s in the ledger", address)

    def _fail(self, address: str, reason: str) -> None:
        self.report.failed.append((address, reason))
        log.warning("delivery of %s to %s failed: %s", self.digest_key, address, reason)


def _reason(error: Exception) -> str:
    """What to tell the reader of the report: a delivery error as is, anything else typed."""
    if isinstance(error, DeliveryError):
        return str(error)
    return f"{type(error).__name__}: {error}"
