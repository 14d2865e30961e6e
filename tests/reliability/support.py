"""Helpers shared by the reliability tests: paths, warehouse snapshots, the CLI, an SMTP sink.

Nothing here talks to anything but 127.0.0.1 and files under the test's temporary folder.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HOSTILE = FIXTURES / "hostile"
CORPUS = HOSTILE / "corpus"
MANIFEST = HOSTILE / "manifest.json"
API_FIXTURES = sorted((FIXTURES / "hf-api").glob("*.json"))
HTML_FIXTURE = FIXTURES / "hf-html" / "papers_2024-08-01.html"
SEEDS = sorted((FIXTURES / "seeds").glob("*.txt"))
PAPERDIGEST = ROOT / ".venv" / "bin" / "paperdigest"
SENDER = "papers@digest.example.org"


def manifest() -> list[dict[str, Any]]:
    """The corpus manifest: one dict per hostile file (see make_corpus.py)."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["files"]


# ---- reading a warehouse --------------------------------------------------------------------


def query(db: Path, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    """Rows of a query on a warehouse file, opened read-only and closed again."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


# What "the same final rows" means after a crash and a re-run. Identity columns that only say
# *when* or *by which run* something happened (page_id, run_id, seen_at, fetched_at, first_seen_*,
# last_seen_at, captured_at, first_captured_at, sent_at, attempts) legitimately differ (how a
# capture time was found, and whether it is estimated, may not), so rows are compared by what
# they say: the page (by location and content hash) each sighting came from, every paper field,
# each reject, each completed day, each send with its Message-ID, each mailed digest and its items.
# Page-level refusals (rejects with page_id NULL) are a per-run log ("this run met this bad
# file"), so they are compared as a set: a re-run that meets the file again may log it again.
SNAPSHOT_SQL = {
    "pages": "SELECT location, digest_date, source, fmt, content_sha256, http_status,"
    " n_entries, n_rejected, capture_basis, capture_estimated FROM pages",
    "page_archive": "SELECT p.location, p.digest_date, a.raw_size, md5(a.raw) FROM page_archive a"
    " JOIN pages p USING (page_id)",
    "papers": "SELECT * EXCLUDE (first_seen_at, first_seen_run, last_seen_at, first_captured_at)"
    " FROM papers",
    "sightings": "SELECT p.location, p.content_sha256, s.paper_id, s.digest_date, s.rank,"
    " s.upvotes, s.comments, s.github_stars, s.github_url, s.capture_estimated FROM sightings s"
    " JOIN pages p USING (page_id)",
    "entry_rejects": "SELECT location, position, reason, excerpt FROM rejects"
    " WHERE page_id IS NOT NULL",
    "refusals": "SELECT DISTINCT location, position, reason, excerpt FROM rejects"
    " WHERE page_id IS NULL",
    "paper_aliases": "SELECT * FROM paper_aliases",
    "day_loads": "SELECT digest_date, source, n_pages, n_entries FROM day_loads",
    "sends": "SELECT recipient, digest_key, state, message_id FROM sends",
    "digests": "SELECT digest_key, digest_date, n_papers, n_recipients FROM digests",
    "digest_items": "SELECT digest_key, paper_id, section, upvotes FROM digest_items",
}


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows as `SNAPSHOT_SQL` defines them, sorted (duplicates kept)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = {name: con.execute(sql).fetchall() for name, sql in SNAPSHOT_SQL.items()}
    finally:
        con.close()
    return {name: sorted(map(_hashable, rows), key=repr) for name, rows in tables.items()}


def _hashable(value: Any) -> Any:
    """Rows with their list columns (authors, keywords) as tuples, so they can be counted."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(item) for item in value)
    return value


def snapshot_diff(got: dict[str, list[tuple]], want: dict[str, list[tuple]]) -> str:
    """A short description of how two snapshots differ ('' when they are equal)."""
    lines = []
    for table in want:
        extra = Counter(got[table]) - Counter(want[table])
        missing = Counter(want[table]) - Counter(got[table])
        if extra or missing:
            lines.append(
                f"{table}: {sum(missing.values())} rows missing, {sum(extra.values())} extra; "
                f"missing e.g. {list(missing)[:2]!r}; extra e.g. {list(extra)[:2]!r}"
            )
    return "\n".join(lines)


def all_text_in_warehouse(db: Path) -> str:
    """Every value of every table of a warehouse as one big string (for canary searches)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return "\n".join(repr(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    finally:
        con.close()


# ---- the command line -----------------------------------------------------------------------


def cli_env(tmp: Path, prefect_api_url: str | None, **extra: str) -> dict[str, str]:
    """A clean environment for a `paperdigest` subprocess.

    Prefect gets its own home under `tmp`; with `prefect_api_url` the flow commands report to
    the session's Prefect test server instead of starting a temporary one (~5 s instead of
    ~30 s per command on two cores), which is how a deployment with a Prefect server runs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPERDIGEST_", "PREFECT_"))}
    env.pop("HF_TOKEN", None)
    env.update(
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        PAPERDIGEST_SUBSCRIBERS=str(tmp / "no-subscribers.json"),
        PAPERDIGEST_MAIL_TO="reader@example.org",
    )
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run `paperdigest ARGS` from the project folder; returns the finished process."""
    return subprocess.run(
        [str(PAPERDIGEST), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start `paperdigest ARGS` without waiting for it."""
    return subprocess.Popen(
        [str(PAPERDIGEST), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def paperdigest_lines(stderr: str) -> list[str]:
    """The CLI's own error lines ("paperdigest: ...") in stderr."""
    return [line for line in stderr.splitlines() if line.startswith("paperdigest: ")]


# ---- processes ------------------------------------------------------------------------------


def python_child(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A Python child running `code`, with stdout piped (line-buffered) for handshakes."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], expected: str, timeout: float = 60) -> str:
    """Read the child's stdout until a line starting with `expected`; fail after `timeout`."""
    found: list[str] = []

    def reader() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith(expected):
                found.append(line.strip())
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"child never printed {expected!r}; stderr:\n{err[-3000:]}")
    return found[0]


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size (VmHWM) of a live process in MB, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- an SMTP sink -------------------------------------------------------------------------


@dataclass
class Received:
    """One message the sink accepted."""

    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class SinkHandler:
    """An aiosmtpd handler that stores every message and can misbehave on request.

    * `refuse_rcpt[address]`: replies popped in order at RCPT (e.g. "451 4.7.1 greylisted");
    * `always_refuse[address]`: a reply given at every RCPT (e.g. a 550);
    * `data_replies`: replies popped in order at end of DATA, instead of accepting;
    * `drop_after_store`: store the message, then drop the connection without replying
      (the client cannot know it was accepted: the crash window of exactly-once delivery);
    * `drop_before_store`: drop the connection at end of DATA without storing;
    * `delay`: seconds to wait before answering DATA (spreads a delivery out in time).
    """

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, list[str]] = field(default_factory=dict)
    always_refuse: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_after_store: int = 0
    drop_before_store: int = 0
    delay: float = 0.0
    auth_attempts: list[bytes] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.always_refuse:
            return self.always_refuse[address]
        queue = self.refuse_rcpt.get(address)
        if queue:
            return queue.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        if self.drop_before_store:
            self.drop_before_store -= 1
            server.transport.abort()
            return "250 never heard"
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(Received(list(envelope.rcpt_tos), envelope.original_content))
        if self.drop_after_store:
            self.drop_after_store -= 1
            server.transport.abort()  # accepted, but the client never hears so
            return "250 never heard"
        return "250 2.0.0 Message accepted for delivery"

    def ids_by_recipient(self) -> dict[str, list[str]]:
        """Every Message-ID each recipient was sent, one entry per copy received."""
        ids: dict[str, list[str]] = {}
        for received in self.received:
            for rcpt in received.rcpt_tos:
                ids.setdefault(rcpt, []).append(received.message_id)
        return ids


class LoopbackController(Controller):
    """aiosmtpd's Controller on an OS-chosen free port of 127.0.0.1."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def start_smtp(handler: SinkHandler, port: int = 0, **kwargs: Any) -> LoopbackController:
    """Start an SMTP server (plain, no AUTH unless kwargs say so) on 127.0.0.1."""
    controller = LoopbackController(
        handler, hostname="127.0.0.1", port=port, server_hostname="mx.test", **kwargs
    )
    controller.start()
    return controller


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    """PAPERDIGEST_SMTP_* for a plain loopback SMTP server."""
    return {
        "PAPERDIGEST_SMTP_HOST": "127.0.0.1",
        "PAPERDIGEST_SMTP_PORT": str(port),
        "PAPERDIGEST_SMTP_SECURITY": "none",
        "PAPERDIGEST_MAIL_FROM": SENDER,
        **extra,
    }


def write_subscribers(path: Path, addresses: list[str]) -> Path:
    """A subscribers file with these daily recipients."""
    records = [
        {"address": a, "include": [], "exclude": [], "cadence": "daily", "active": True}
        for a in addresses
    ]
    path.write_text(json.dumps({"version": 1, "subscribers": records}), encoding="utf-8")
    return path


def wait_until(condition, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll `condition` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


# ---- a raw TCP server for faults HTTP libraries cannot script ---------------------------------


class RawServer:
    """A TCP server on 127.0.0.1 that hands each connection to `behaviour(conn, stop)`.

    Used for what a framework will not do on purpose: reset a connection halfway through a
    body, drip a body one byte at a time forever, or answer SMTP AUTH by echoing it back.
    The behaviour does all the reading and writing; `stop()` ends every behaviour.
    """

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.stopped = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            self.behaviour(conn, self.stopped)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self._listener.close()
        self._thread.join(timeout=5)


def read_request(conn: socket.socket) -> bytes:
    """Read an HTTP request's head (its content does not matter to the fault servers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def reset_connection(conn: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not an orderly FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
