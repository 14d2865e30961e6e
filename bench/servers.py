"""The local servers a benchmark talks to, each in its own process on 127.0.0.1.

* `days_server`: answers `/api/daily_papers?date=…&limit=…&p=…` and `/papers/date/…` with the
  synthetic days of `bench.synthetic` (pre-rendered before it reports ready, no delay added).
* `smtp_sink`: an aiosmtpd server that accepts every message and counts them.
* `prefect_server`: `prefect server start`, waited for until `/api/health` answers.

Servers run in child processes so their work does not compete for the benchmarked process's
GIL. Each is bounded: it exits when its parent closes its stdin, or after MAX_SECONDS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

from bench import synthetic  # noqa: E402

HOST = "127.0.0.1"
MAX_SECONDS = 3600.0  # no server outlives a benchmark run
READY_TIMEOUT_S = 180.0


# ---- the parent's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DaysServer:
    """A running days server: its base URL (for PAPERDIGEST_HF_URL) and how it was set up."""

    url: str
    start: date
    end: date
    epoch: int
    setup_s: float  # time spent rendering the days before it answered


@contextlib.contextmanager
def days_server(start: date, end: date, *, epoch: int = 0) -> Iterator[DaysServer]:
    """Serve the synthetic days from start to end (other days are rendered on demand)."""
    args = ["days", "--start", start.isoformat(), "--end", end.isoformat(), "--epoch", str(epoch)]
    with _server_process(args) as (ready, _):
        yield DaysServer(f"http://{HOST}:{ready['port']}", start, end, epoch, ready["setup_s"])


@dataclass(slots=True)
class SmtpSink:
    """A running SMTP sink; `stats` is filled in (messages, bytes, largest) when it stops."""

    port: int
    stats: dict | None = None


@contextlib.contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """An SMTP server that accepts everything; its counts are in `.stats` after the block."""
    with _server_process(["smtp"]) as (ready, finished):
        sink = SmtpSink(ready["port"])
        yield sink
    sink.stats = finished.get("stats")


@contextlib.contextmanager
def prefect_server(prefect_home: Path) -> Iterator[tuple[str, float]]:
    """`prefect server start` on a free loopback port; yields (PREFECT_API_URL, startup s)."""
    port = free_port()
    env = prefect_env(prefect_home)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST]
    command += ["--port", str(port)]
    log = (prefect_home / "server.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_for_health(f"http://{HOST}:{port}/api/health", process)
        yield f"http://{HOST}:{port}/api", time.perf_counter() - started
    finally:
        _stop_group(process)
        log.close()


def prime_prefect_home(prefect_home: Path) -> float:
    """Create and migrate Prefect's database in `prefect_home`; returns the seconds it took.

    A scheduled run reuses its PREFECT_HOME, so its temporary server finds the database ready;
    priming the benchmark's home once makes every measured run start that way.
    """
    command = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
    began = time.perf_counter()
    subprocess.run(
        command, env=prefect_env(prefect_home), check=True, capture_output=True, timeout=300
    )
    return time.perf_counter() - began


def prefect_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment a Prefect process gets: its own PREFECT_HOME, quiet, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PAPERDIGEST_"))}
    env |= {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _server_process(args: list[str]) -> Iterator[tuple[dict, dict]]:
    """Start `python -m bench.servers ARGS`; yield its ready line and (later) its final line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    finished: dict = {}
    try:
        ready = _read_json_line(process)
        yield ready, finished
    finally:
        finished["stats"] = _final_line(process)


def _final_line(process: subprocess.Popen) -> dict | None:
    """Close the server's stdin (it stops and reports), wait for it; its last JSON line."""
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        return None
    lines = output.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def _read_json_line(process: subprocess.Popen) -> dict:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=30)
        raise RuntimeError(f"bench server exited with {process.returncode} before it was ready")
    return json.loads(line)


def _wait_for_health(url: str, process: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).ok:
                return
        time.sleep(0.25)
    raise RuntimeError(f"prefect server did not answer {url} within {READY_TIMEOUT_S:.0f}s")


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a server process we started (and the workers it started), by its group id."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# ---- the server's side ----------------------------------------------------------------------


class SyntheticDays:
    """The rendered days, API items and HTML pages, by date (rendered on first need)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self._api: dict[date, list[bytes]] = {}
        self._html: dict[date, bytes] = {}
        self._lock = threading.Lock()

    def prerender(self, start: date, end: date) -> None:
        """Render every day of [start, end] in both formats."""
        for n in range((end - start).days + 1):
            self.api_page(start + timedelta(n), 0, 100)
            self.html_page(start + timedelta(n))

    def api_page(self, day: date, page: int, limit: int) -> bytes:
        """Page `page` of the API answer for `day` at `limit` items a page."""
        items = self._api.get(day)
        if items is None:
            items = [json.dumps(item).encode() for item in synthetic.api_items(day, self.epoch)]
            with self._lock:
                self._api[day] = items
        return b"[" + b", ".join(items[page * limit : (page + 1) * limit]) + b"]"

    def html_page(self, day: date) -> bytes:
        """The website's day page for `day`."""
        body = self._html.get(day)
        if body is None:
            body = synthetic.html_day_page(day, self.epoch)
            with self._lock:
                self._html[day] = body
        return body


def _handler_for(days: SyntheticDays) -> type[BaseHTTPRequestHandler]:
    class DaysHandler(BaseHTTPRequestHandler):
        """Answers the API and the day pages from `days`; anything else is a 404."""

        protocol_version = "HTTP/1.1"  # keep-alive, as the real site

        def do_GET(self) -> None:
            """One GET: the API page or day page asked for, with Content-Length."""
            url = urlsplit(self.path)
            try:
                if url.path == "/api/daily_papers":
                    query = parse_qs(url.query)
                    day = date.fromisoformat(query["date"][0])
                    page, limit = int(query.get("p", ["0"])[0]), int(query["limit"][0])
                    self._send(days.api_page(day, page, limit), "application/json")
                elif url.path.startswith("/papers/date/"):
                    day = date.fromisoformat(url.path.rsplit("/", 1)[1])
                    self._send(days.html_page(day), "text/html; charset=utf-8")
                else:
                    self._send(b"not found", "text/plain", status=404)
            except (KeyError, ValueError):
                self._send(b"bad request", "text/plain", status=400)

        def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Log nothing: a benchmark server is silent."""

    return DaysHandler


def serve_days(start: date, end: date, epoch: int) -> None:
    """Render the days, print the ready line, serve until stdin closes or the time is up."""
    began = time.perf_counter()
    days = SyntheticDays(epoch)
    days.prerender(start, end)
    server = ThreadingHTTPServer((HOST, 0), _handler_for(days))
    server.daemon_threads = True
    _announce({"port": server.server_address[1], "setup_s": time.perf_counter() - began})
    _serve_until_released(server.serve_forever, server.shutdown)
    server.server_close()
    _announce({"stopped": True})


def serve_smtp() -> None:
    """Accept and count every message until stdin closes; print the counts."""
    from aiosmtpd.controller import Controller

    class CountingHandler:
        """Accepts every message; counts them, their bytes and the largest."""

        def __init__(self) -> None:
            self.stats = {"messages": 0, "bytes": 0, "largest": 0}

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            """Count one message and accept it."""
            size = len(envelope.content)  # type: ignore[attr-defined]
            self.stats["messages"] += 1
            self.stats["bytes"] += size
            self.stats["largest"] = max(self.stats["largest"], size)
            return "250 OK"

    handler = CountingHandler()
    controller = Controller(handler, hostname=HOST, port=free_port(), data_size_limit=0)
    controller.start()
    _announce({"port": controller.port})
    _serve_until_released(lambda: None, lambda: None)
    controller.stop()
    _announce(handler.stats)


def _serve_until_released(serve: object, stop: object) -> None:
    """Run `serve` in a thread until stdin closes (the parent is done) or MAX_SECONDS pass."""
    thread = threading.Thread(target=serve, daemon=True)  # type: ignore[arg-type]
    thread.start()
    released = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), released.set()), daemon=True).start()
    released.wait(MAX_SECONDS)
    stop()  # type: ignore[operator]


def _announce(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.servers days|smtp …`: run one server (the parent talks over stdio)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    days = kinds.add_parser("days")
    days.add_argument("--start", type=date.fromisoformat, required=True)
    days.add_argument("--end", type=date.fromisoformat, required=True)
    days.add_argument("--epoch", type=int, default=0)
    kinds.add_parser("smtp")
    args = parser.parse_args(argv)
    if args.kind == "days":
        serve_days(args.start, args.end, args.epoch)
    else:
        serve_smtp()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
