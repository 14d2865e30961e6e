"""Failing HTTP servers: connection refused, a reset mid-body, an endless slow drip, a day of
500s in the middle of a backfill, and error pages (429, 503, WAF and bot challenges, a login
page, JSON errors) served with status 200. Each ends in a one-line FetchError naming the URL
and the reason within a bounded time; a run reports those days and loads the others."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows import fetch
from flows.fetch import FetchError, FetchSettings, HFClient
from flows.warehouse import Warehouse

from .support import (
    API_FIXTURES,
    CORPUS,
    RawServer,
    free_port,
    query,
    read_request,
    reset_connection,
)

DAY = date(2026, 8, 14)
BODY = API_FIXTURES[-1].read_bytes()
BACKFILL_DAYS = [date(2026, 8, 10) + timedelta(n) for n in range(4)]
BROKEN_DAY = BACKFILL_DAYS[1]


def fast_settings(base_url: str, **overrides: object) -> FetchSettings:
    values: dict[str, object] = {
        "base_url": base_url,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "max_retries": 1,
        "backoff_factor": 0.01,
        "retry_after_cap": 0.5,
    }
    return FetchSettings(**(values | overrides))


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    fetch.reset_rate_limits()


def assert_one_line_naming(error: FetchError, url_start: str) -> str:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(url_start), message
    return message


def test_connection_refused_is_one_line_and_quick() -> None:
    """Nothing listening: a FetchError naming the URL and "refused", after the retries."""
    base = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with HFClient(fast_settings(base)) as client, pytest.raises(FetchError) as caught:
        client.fetch_api_day(DAY)
    message = assert_one_line_naming(caught.value, f"{base}/api/daily_papers?date=2026-08-14")
    assert "connection failed" in message and "refused" in message.lower()
    assert time.monotonic() - started < 10


def test_connection_reset_mid_body_is_retried_then_reported() -> None:
    """Headers and half the body, then a TCP reset: retried, then reported as a cut body."""

    def half_then_reset(conn, stop) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
            + BODY[: len(BODY) // 2]
        )
        time.sleep(0.05)
        reset_connection(conn)

    server = RawServer(half_then_reset)
    try:
        started = time.monotonic()
        with HFClient(fast_settings(server.url)) as client, pytest.raises(FetchError) as caught:
            client.fetch_api_day(DAY)
        message = assert_one_line_naming(caught.value, f"{server.url}/api/daily_papers")
        assert "truncated body" in message or "reset" in message.lower(), message
        assert server.connections >= 2, "a body cut by a reset is worth another try"
        assert time.monotonic() - started < 15
    finally:
        server.stop()


def test_endless_slow_drip_ends_in_a_timeout_not_a_hang() -> None:
    """A server that sends one byte every 0.2 s forever: the fetch must give up with a timeout
    in bounded time (here read_timeout is 1 s; we wait up to 15 s before calling it a hang)."""

    def drip(conn, stop) -> None:
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        )
        for byte in BODY:
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))

    server = RawServer(drip)
    outcome: list[BaseException | None] = []

    def fetch_it() -> None:
        try:
            with HFClient(fast_settings(server.url, max_retries=0)) as client:
                client.fetch_api_day(DAY)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=fetch_it, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(15)
    hung = thread.is_alive()
    server.stop()  # ends the drip either way, so a hung fetch returns and the thread ends
    thread.join(10)
    assert not hung, (
        f"still reading a dripping body after {time.monotonic() - started:.0f} s although "
        "read_timeout is 1 s: a per-read timeout never fires while bytes keep trickling in"
    )
    [error] = outcome
    assert isinstance(error, FetchError), error
    message = assert_one_line_naming(error, f"{server.url}/api/daily_papers")
    assert "timeout" in message.lower() or "too slow" in message.lower(), message


# ---- a day of 500s inside a backfill ------------------------------------------------------


def day_items(day: date) -> list[dict]:
    index = BACKFILL_DAYS.index(day)
    items = json.loads(API_FIXTURES[index % len(API_FIXTURES)].read_bytes())
    for number, item in enumerate(items):
        item["paper"]["id"] = f"2608.{index + 1}{number:04d}"
    return items


@pytest.fixture
def backfill_server() -> Iterator[tuple[HTTPServer, dict[str, int]]]:
    """The API for four days; one of them answers 500 to every request while `broken`."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    state = {"broken": 1, "broken_requests": 0}

    def handler(request: Request) -> Response:
        day = date.fromisoformat(request.args["date"])
        if day == BROKEN_DAY and state["broken"]:
            state["broken_requests"] += 1
            return Response("<html><title>500 Internal Server Error</title></html>", 500)
        page = int(request.args["p"])
        items = day_items(day) if page == 0 else []
        return Response(json.dumps(items), content_type="application/json")

    server.expect_request("/api/daily_papers").respond_with_handler(handler)
    server.start()
    yield server, state
    server.clear()
    server.stop()


@pytest.mark.slow
@pytest.mark.prefect
def test_backfill_with_a_day_of_500s_reports_that_day_and_loads_the_rest(
    prefect_harness, backfill_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backfill flow: the day whose every request is a 500 is reported failed (after its
    retries) with the status; the other days load and are marked complete; a second backfill
    once the server heals loads only that day."""
    from flows import backfill as backfill_module

    server, state = backfill_server
    monkeypatch.setenv("PAPERDIGEST_HF_URL", server.url_for("/").rstrip("/"))
    monkeypatch.setenv("PAPERDIGEST_HTTP_RETRIES", "1")
    monkeypatch.setenv("PAPERDIGEST_TASK_RETRIES", "2")  # Prefect's task retries, without
    monkeypatch.setenv("PAPERDIGEST_TASK_RETRY_DELAY", "0")  # their 30 s pause
    db = tmp_path / "papers.duckdb"
    span = {"start": str(BACKFILL_DAYS[0]), "end": str(BACKFILL_DAYS[-1]), "db": str(db)}

    result = backfill_module.backfill(**span, workers=2)
    status = {d.day: (d.status, d.error) for d in result["days"]}
    assert status[BROKEN_DAY][0] == "failed"
    assert "HTTP 500" in status[BROKEN_DAY][1] and "\n" not in status[BROKEN_DAY][1]
    assert {day: s for day, (s, _) in status.items() if day != BROKEN_DAY} == {
        day: "loaded" for day in BACKFILL_DAYS if day != BROKEN_DAY
    }
    assert state["broken_requests"] >= 3, "a 500 is retried before the day is given up"
    assert result["counts"]["failed"] == 1 and result["counts"]["loaded"] == 3
    complete = {row[0] for row in query(db, "SELECT digest_date FROM day_loads")}
    assert complete == set(BACKFILL_DAYS) - {BROKEN_DAY}
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []

    state["broken"] = 0
    fetch.reset_rate_limits()
    result = backfill_module.backfill(**span, workers=2)
    status = {d.day: d.status for d in result["days"]}
    assert status == {day: "skipped" for day in BACKFILL_DAYS} | {BROKEN_DAY: "loaded"}
    expected = sum(len(day_items(day)) for day in BACKFILL_DAYS)
    assert query(db, "SELECT count(*) FROM sightings") == [(expected,)]
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []


# ---- error pages served with status 200 ----------------------------------------------------

ERROR_PAGES_200 = [
    "http-429-page.html",
    "http-503-page.html",
    "aws-waf-challenge.html",
    "cloudflare-just-a-moment.html",
    "login-page.html",
    "rate-limit-with-papers-title.html",
    "html-truncated-mid-cards.html",
    "json-error-object.json",
    "json-object-envelope.json",
    "api-truncated-at-32292.json",
]  # (a JSON list of strings is an array, so it passes the fetcher; the parser refuses it)


def served_with_200(name: str) -> Response:
    body = (CORPUS / name).read_bytes()
    kind = "application/json" if name.endswith(".json") else "text/html; charset=utf-8"
    return Response(body, status=200, content_type=kind)


@pytest.mark.parametrize("name", ERROR_PAGES_200)
@pytest.mark.parametrize("source", ["api", "html"])
def test_error_pages_served_with_status_200_are_refused_by_the_fetcher(
    http: HTTPServer, name: str, source: str
) -> None:
    """What a rate limiter, a WAF, a login wall or a broken proxy sends with status 200 is not
    a page: retried a few times, then a one-line FetchError naming the URL and what came back;
    nothing is handed on to be archived or parsed."""
    http.expect_request(re.compile(".*")).respond_with_handler(lambda r: served_with_200(name))
    base = http.url_for("/").rstrip("/")
    with HFClient(fast_settings(base)) as client, pytest.raises(FetchError) as caught:
        client.fetch_day(DAY, source)
    message = assert_one_line_naming(caught.value, base)
    assert "tried 3 times" in message, message
    assert len(http.log) == 3


@pytest.mark.slow
@pytest.mark.prefect
def test_daily_run_meeting_error_pages_loads_the_good_day_and_reports_the_others(
    prefect_harness, http: HTTPServer, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`daily_digest` re-fetching four days: three answer with a 429 page, a WAF challenge and
    a JSON error object (all status 200). Each is reported in one line; only the good day is in
    the warehouse; the run is "partial", the email still goes out."""
    pages = {
        DAY: None,
        DAY - timedelta(1): "http-429-page.html",
        DAY - timedelta(2): "aws-waf-challenge.html",
        DAY - timedelta(3): "json-error-object.json",
    }

    def api(request: Request) -> Response:
        name = pages[date.fromisoformat(request.args["date"])]
        if name is None:
            return Response(BODY, content_type="application/json")
        return served_with_200(name)

    http.expect_request("/api/daily_papers").respond_with_handler(api)
    env = {
        "PAPERDIGEST_HF_URL": http.url_for("/").rstrip("/"),
        "PAPERDIGEST_REFETCH_DAYS": "3",
        "PAPERDIGEST_GAP_DAYS": "0",
        "PAPERDIGEST_TASK_RETRIES": "0",
        "PAPERDIGEST_HTTP_RETRIES": "0",
    }
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    from flows.daily import daily_digest

    db, outbox = clean_env / "papers.duckdb", clean_env / "outbox"
    result = daily_digest(date=DAY.isoformat(), db=str(db), outbox=str(outbox))
    assert result["status"] == "partial"
    assert result["failures"] == 3, result
    assert query(db, "SELECT digest_date, n_entries FROM pages") == [(DAY, 23)]
    assert query(db, "SELECT count(*) FROM rejects") == [(0,)]
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []
    assert len(list(outbox.glob("*.eml"))) == 1
