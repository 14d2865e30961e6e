"""Capture times: where each page's comes from, and the rate-limit setting of the fetch client."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flows import cli, fetch
from flows.capture import (
    capture_from_response,
    end_of_day,
    parse_as_of,
    settle_capture,
    stated_time,
)
from flows.config import ConfigError, load_settings
from flows.fetch import FetchSettings, HFClient
from flows.models import ParsedPage, RawPage
from flows.pipeline import ingest_page, parse_raw, read_saved_page, reparse_archive
from flows.warehouse import Warehouse

FIXTURES = Path(__file__).parent / "fixtures"
AUG13 = FIXTURES / "hf-api" / "daily_papers_2026-08-13.json"
HTML_DAY = FIXTURES / "hf-html" / "papers_2024-08-01.html"
NOW = datetime(2026, 8, 14, 9, 0, 30, tzinfo=UTC)


# ---- the HTTP Date header --------------------------------------------------------------------


def test_a_plausible_date_header_is_the_capture_time() -> None:
    header = format_datetime(NOW - timedelta(seconds=20), usegmt=True)
    assert capture_from_response(header, NOW - timedelta(seconds=1), NOW) == (
        NOW - timedelta(seconds=20),
        "date-header",
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "yesterday-ish",
        "Fri, 14 Aug 2026 09:00:00",  # no zone: not a valid HTTP date
        format_datetime(NOW + timedelta(minutes=30), usegmt=True),  # ahead of our clock
        format_datetime(NOW - timedelta(days=100), usegmt=True),  # a replayed recording
    ],
)
def test_a_missing_or_implausible_date_header_falls_back_to_the_request_time(header) -> None:
    requested = NOW - timedelta(seconds=2)
    assert capture_from_response(header, requested, NOW) == (requested, "request-time")


@pytest.fixture
def server() -> HTTPServer:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    fetch.reset_rate_limits()
    yield server
    server.clear()
    server.stop()


class _DatedHandler(BaseHTTPRequestHandler):
    """Answers every GET with the recorded 08-13 API page and one chosen Date header
    (werkzeug's server adds its own Date beside any a handler sets)."""

    date_header = ""

    def do_GET(self) -> None:
        body = AUG13.read_bytes()
        self.send_response_only(200)
        self.send_header("Date", self.date_header)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _fetch_with_date(date_header: str) -> RawPage:
    handler = type("Handler", (_DatedHandler,), {"date_header": date_header})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        fetch.reset_rate_limits()
        settings = FetchSettings(base_url=f"http://127.0.0.1:{httpd.server_port}", page_limit=50)
        with HFClient(settings) as client:
            [page] = client.fetch_day(date(2026, 8, 13), "api")
        return page
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_fetched_page_carries_the_servers_date() -> None:
    stated = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
    page = _fetch_with_date(format_datetime(stated, usegmt=True))
    assert (page.captured_at, page.capture_basis) == (stated, "date-header")


def test_a_fetched_page_with_a_recorded_date_gets_the_request_time() -> None:
    before = datetime.now(UTC)
    page = _fetch_with_date("Fri, 14 Aug 2026 09:00:00 GMT")  # a recording, replayed today
    assert page.capture_basis == "request-time"
    assert before <= page.captured_at <= page.fetched_at


# ---- saved pages -----------------------------------------------------------------------------


def test_as_of_takes_iso_times_and_refuses_the_rest() -> None:
    assert parse_as_of("2026-08-14T09:00Z") == datetime(2026, 8, 14, 9, tzinfo=UTC)
    assert parse_as_of("2026-08-14 11:00+02:00") == datetime(2026, 8, 14, 9, tzinfo=UTC)
    assert parse_as_of("2026-08-14T09:00") == datetime(2026, 8, 14, 9, tzinfo=UTC)  # UTC
    for bad in ("2026-08-14", "tomorrow", "2026-08-14T25:00"):
        with pytest.raises(ValueError, match="not a time"):
            parse_as_of(bad)


def test_the_api_page_states_its_latest_submission_or_publication_time() -> None:
    items = json.loads(AUG13.read_text())
    latest = max(
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        for item in items
        for value in (
            item.get("publishedAt"),
            item["paper"].get("submittedOnDailyAt"),
            item["paper"].get("publishedAt"),
        )
        if value
    )
    assert parse_raw(read_saved_page(AUG13)).stated_at == latest


def test_the_html_page_states_its_date() -> None:
    stated = parse_raw(read_saved_page(HTML_DAY)).stated_at
    assert stated is not None and stated >= datetime(2024, 8, 1, tzinfo=UTC)


def test_stated_time_ignores_what_is_not_a_timestamp() -> None:
    assert stated_time([None, 3, "", "2026-08", "nonsense-but-long", "2026-08-13T10:00:00Z"]) == (
        datetime(2026, 8, 13, 10, tzinfo=UTC)
    )
    assert stated_time([None, "x"]) is None


def _settled(raw: RawPage, parsed: ParsedPage) -> tuple[datetime | None, str | None]:
    settled = settle_capture(raw, parsed, NOW)
    return settled.captured_at, settled.capture_basis


def test_a_saved_page_is_estimated_at_the_end_of_its_day_or_a_later_stated_time() -> None:
    day = date(2026, 8, 13)
    raw = RawPage("api", "saved.json", b"[]", day)
    # the recorded page states midnight of its own day: no later than the day's end
    early = ParsedPage("api", day, stated_at=datetime(2026, 8, 13, tzinfo=UTC))
    assert _settled(raw, early) == (end_of_day(day), "digest-day")
    late = ParsedPage("api", day, stated_at=datetime(2026, 8, 15, 8, tzinfo=UTC))
    assert _settled(raw, late) == (datetime(2026, 8, 15, 8, tzinfo=UTC), "page")
    undated = RawPage("text", "saved.txt", b"x")
    assert _settled(undated, ParsedPage("text", None)) == (NOW, "load-time")
    stated = RawPage("api", "s.json", b"[]", day, captured_at=NOW, capture_basis="as-of")
    assert _settled(stated, late) == (NOW, "as-of")


def test_an_as_of_before_the_list_opened_is_refused(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("import")
        too_early = datetime(2026, 8, 12, 23, 0, tzinfo=UTC)
        outcome = ingest_page(wh, read_saved_page(AUG13, as_of=too_early), run)
        assert outcome.error == (
            f"{AUG13}: --as-of 2026-08-12 23:00 UTC is before its 2026-08-13 list opened "
            "(00:00 UTC)"
        )
        assert wh.con.execute("SELECT count(*) FROM pages").fetchall() == [(0,)]
        assert wh.con.execute("SELECT count(*) FROM rejects").fetchall() == [(1,)]


# ---- kept through reparse --------------------------------------------------------------------


def test_reparse_keeps_every_capture_time(db_path: Path) -> None:
    as_of = datetime(2026, 8, 13, 9, tzinfo=UTC)
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("import")
        ingest_page(wh, read_saved_page(AUG13, as_of=as_of), run)
        ingest_page(wh, read_saved_page(HTML_DAY), run)
        before = wh.con.execute(
            "SELECT page_id, captured_at, capture_basis, capture_estimated FROM pages "
            "ORDER BY page_id"
        ).fetchall()
        sightings = "SELECT page_id, paper_id, captured_at, capture_estimated FROM sightings"
        first = wh.con.execute(sightings + " ORDER BY ALL").fetchall()
        reparse_archive(wh)
        after = wh.con.execute(
            "SELECT page_id, captured_at, capture_basis, capture_estimated FROM pages "
            "ORDER BY page_id"
        ).fetchall()
        assert after == before
        assert [row[1:] for row in before] == [
            (as_of, "as-of", False),
            (end_of_day(date(2024, 8, 1)), "digest-day", True),
        ]
        assert wh.con.execute(sightings + " ORDER BY ALL").fetchall() == first
        assert wh.integrity_problems() == []


# ---- PAPERDIGEST_RATE_LIMIT ------------------------------------------------------------------


def test_the_rate_limit_setting_is_read_and_checked() -> None:
    mirror = {"PAPERDIGEST_HF_URL": "http://127.0.0.1:8080"}
    assert load_settings(mirror | {"PAPERDIGEST_RATE_LIMIT": "off"}).rate_limit == "off"
    assert load_settings({"PAPERDIGEST_RATE_LIMIT": "api=100,pages=20"}).rate_limit  # lower: ok
    for value in ("off", "api=501", "pages=1000"):
        with pytest.raises(ConfigError, match=r"only for a mirror, not huggingface\.co"):
            load_settings({"PAPERDIGEST_RATE_LIMIT": value})
    for value in ("api=", "fast", "api=0", "calls=5"):
        with pytest.raises(ConfigError, match=r"expected 'off' or e\.g\. 'api=500,pages=100'"):
            load_settings(mirror | {"PAPERDIGEST_RATE_LIMIT": value})


def test_the_fetch_client_applies_the_setting(monkeypatch) -> None:
    monkeypatch.setenv("PAPERDIGEST_HF_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("PAPERDIGEST_RATE_LIMIT", "api=7,pages=3")
    settings = FetchSettings.from_env()
    assert (settings.api_per_5min, settings.pages_per_5min, settings.rate_limited) == (7, 3, True)
    monkeypatch.setenv("PAPERDIGEST_RATE_LIMIT", "off")
    assert FetchSettings.from_env().rate_limited is False


def test_off_never_waits_where_the_default_would(server: HTTPServer) -> None:
    server.expect_request("/api/daily_papers").respond_with_json([])
    base = server.url_for("/").rstrip("/")
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:  # a fake clock: sleeping moves it on
        waits.append(seconds)
        now[0] += seconds

    tight = FetchSettings(base_url=base, api_per_5min=1, rate_window_s=3600)
    with HFClient(tight, sleep=sleep, clock=lambda: now[0]) as client:
        client.fetch_day(date(2026, 8, 1), "api")
        client.fetch_day(date(2026, 8, 2), "api")  # the second call in the window waits
    assert waits == [3600.0]
    fetch.reset_rate_limits()
    waits.clear()
    lifted = FetchSettings(base_url=base, api_per_5min=1, rate_window_s=3600, rate_limited=False)
    with HFClient(lifted, sleep=waits.append) as client:
        for day in range(1, 6):
            client.fetch_day(date(2026, 8, day), "api")
    assert waits == []


def test_the_cli_refuses_lifting_the_limit_against_huggingface(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PAPERDIGEST_RATE_LIMIT", "off")
    assert cli.main(["status"]) == 2
    assert "PAPERDIGEST_RATE_LIMIT='off'" in capsys.readouterr().err


def test_as_of_is_refused_on_a_run_that_fetches(capsys) -> None:
    assert cli.main(["run", "--as-of", "2026-08-14T09:00Z"]) == 2
    assert "--as-of needs --offline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["import", "x.json", "--as-of", "2026-08-14"])
    assert exit_.value.code == 2
