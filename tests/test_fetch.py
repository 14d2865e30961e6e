"""flows.fetch against a real HTTP server on loopback (pytest-httpserver), never the internet."""

from __future__ import annotations

import html
import json
import logging
import pickle
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows import PROJECT_URL, __version__, fetch
from flows.fetch import FetchError, FetchSettings, HFClient
from flows.parse import detect, parse_page
from flows.pipeline import parse_raw

FIXTURES = Path(__file__).parent / "fixtures"
API_FIXTURE = FIXTURES / "hf-api" / "daily_papers_2024-05-27.json"
HTML_FIXTURE = FIXTURES / "hf-html" / "papers_2024-08-01.html"
DAY = date(2024, 8, 1)
API_PATH = "/api/daily_papers"
CANARY = "hf_CANARY_never_log_me_7f3a9c"
CHALLENGE_PAGE = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    "<body>Checking your browser before accessing huggingface.co.</body></html>"
)


# ---- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_server() -> Iterator[HTTPServer]:
    # Threaded, so concurrent clients and a stalled handler do not queue behind each other.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def server(module_server: HTTPServer) -> Iterator[HTTPServer]:
    module_server.clear()
    module_server.clear_all_handlers()
    fetch.reset_rate_limits()  # every test gets a fresh budget on the shared host:port
    yield module_server
    module_server.check_handler_errors()


def settings_for(server: HTTPServer, **overrides: object) -> FetchSettings:
    """Fast settings for tests: tiny timeouts and backoff."""
    values: dict[str, object] = {
        "base_url": server.url_for("/"),
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "max_retries": 2,
        "backoff_factor": 0.001,
        "retry_after_cap": 0.5,
    }
    return FetchSettings(**(values | overrides))


def api_query(day: date, page: int = 0) -> dict[str, str]:
    return {"date": day.isoformat(), "limit": "100", "p": str(page)}


def fixture_papers() -> list[dict]:
    return json.loads(API_FIXTURE.read_bytes())


def synthetic_papers(n: int) -> list[dict]:
    """`n` distinct API entries cloned from a recorded one."""
    template = fixture_papers()[0]
    return [template | {"paper": template["paper"] | {"id": f"2408.{i:05d}"}} for i in range(n)]


def request_count(server: HTTPServer, path: str) -> int:
    return sum(1 for request, _ in server.log if request.path == path)


def truncated(body: bytes, content_type: str) -> Response:
    """A response that promises `len(body)` bytes, sends half and closes the connection."""
    response = Response(body[: len(body) // 2], content_type=content_type)
    response.headers["Content-Length"] = str(len(body))
    response.headers["Connection"] = "close"
    return response


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class SleepRecorder:
    """Injected sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# ---- settings -----------------------------------------------------------------------------


def test_settings_from_env_reads_the_four_variables_and_overrides_win(monkeypatch):
    monkeypatch.setenv("PAPERDIGEST_HF_URL", "http://mirror.example:8080/")
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("PAPERDIGEST_HTTP_TIMEOUT", "12.5")
    monkeypatch.setenv("PAPERDIGEST_HTTP_RETRIES", "3")
    settings = FetchSettings.from_env(max_retries=1)
    assert settings.base_url == "http://mirror.example:8080"
    assert settings.token == CANARY
    assert settings.read_timeout == 12.5
    assert settings.max_retries == 1
    assert (settings.connect_timeout, settings.retry_after_cap) == (5.0, 60.0)
    assert (settings.api_per_5min, settings.pages_per_5min, settings.page_limit) == (500, 100, 100)


def test_settings_defaults_without_environment(monkeypatch):
    for name in ("PAPERDIGEST_HF_URL", "HF_TOKEN", "PAPERDIGEST_HTTP_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PAPERDIGEST_HTTP_RETRIES", "")
    settings = FetchSettings.from_env()
    assert settings.base_url == "https://huggingface.co"
    assert settings.token is None
    assert (settings.read_timeout, settings.max_retries) == (30.0, 5)


def test_settings_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("PAPERDIGEST_HTTP_RETRIES", "many")
    with pytest.raises(ValueError, match="PAPERDIGEST_HTTP_RETRIES"):
        FetchSettings.from_env()
    with pytest.raises(ValueError, match="http"):
        FetchSettings(base_url="ftp://huggingface.co")


def test_settings_pickle_and_hash_for_workers_without_showing_the_token():
    settings = FetchSettings(token=CANARY)
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and hash(copy) == hash(settings) and copy.token == CANARY
    assert CANARY not in repr(copy)


def test_fetch_error_is_one_line_and_picklable():
    error = FetchError("https://hf.example/x", "bad\nthing   here")
    assert str(error) == "https://hf.example/x: bad thing here"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.url, copy.reason, str(copy)) == (error.url, error.reason, str(error))


# ---- the API ------------------------------------------------------------------------------


def test_api_day_returns_exact_bytes_and_response_metadata(server):
    body = API_FIXTURE.read_bytes()
    server.expect_request(API_PATH, query_string=api_query(DAY)).respond_with_data(
        body,
        content_type="application/json; charset=utf-8",
        headers={"ETag": 'W/"abc"', "Last-Modified": "Thu, 01 Aug 2024 12:00:00 GMT"},
    )
    with HFClient(settings_for(server)) as client:
        [page] = client.fetch_api_day(DAY)
    assert page.source == "api"
    assert page.location == client.api_url(DAY, 0)
    assert page.location.endswith("/api/daily_papers?date=2024-08-01&limit=100&p=0")
    assert page.body == body
    assert (page.digest_date, page.http_status) == (DAY, 200)
    assert page.content_type == "application/json; charset=utf-8"
    assert (page.etag, page.last_modified) == ('W/"abc"', "Thu, 01 Aug 2024 12:00:00 GMT")
    assert page.fetched_at is not None and page.fetched_at.tzinfo is UTC
    request = server.log[0][0]
    assert request.headers["User-Agent"] == f"paperdigest/{__version__} (+{PROJECT_URL})"
    assert "Authorization" not in request.headers


def test_empty_day_is_one_normal_page(server):
    server.expect_request(API_PATH, query_string=api_query(DAY)).respond_with_json([])
    with HFClient(settings_for(server)) as client:
        pages = client.fetch_day(DAY, "api")
    assert [(p.http_status, p.body) for p in pages] == [(200, b"[]")]


def test_a_day_of_130_papers_comes_in_two_pages(server):
    papers = synthetic_papers(130)

    def paged(request: Request) -> Response:
        start = int(request.args["p"]) * int(request.args["limit"])
        chunk = papers[start : start + int(request.args["limit"])]
        return Response(json.dumps(chunk), content_type="application/json")

    server.expect_request(API_PATH).respond_with_handler(paged)
    with HFClient(settings_for(server)) as client:
        pages = client.fetch_api_day(DAY)
    assert [len(json.loads(p.body)) for p in pages] == [100, 30]
    assert [p.location.rsplit("&p=", 1)[1] for p in pages] == ["0", "1"]
    ids = {e["paper"]["id"] for p in pages for e in json.loads(p.body)}
    assert len(ids) == 130


def test_each_api_body_is_decoded_once_for_checking_and_paging(server, monkeypatch):
    papers = synthetic_papers(100)  # exactly one full page: the client must ask for a second

    def paged(request: Request) -> Response:
        chunk = papers if request.args["p"] == "0" else []
        return Response(json.dumps(chunk), content_type="application/json")

    server.expect_request(API_PATH).respond_with_handler(paged)
    decoded: list[object] = []
    real_loads = json.loads

    def counting_loads(text: object, *args: object, **kwargs: object) -> object:
        decoded.append(text)
        return real_loads(text, *args, **kwargs)

    with HFClient(settings_for(server)) as client:
        monkeypatch.setattr(fetch.json, "loads", counting_loads)
        pages = client.fetch_api_day(DAY)
        monkeypatch.undo()
    assert [len(json.loads(p.body)) for p in pages] == [100, 0]
    assert decoded == [p.body for p in pages]
    # The parser takes the decoded value instead of decoding again, with the same result.
    monkeypatch.setattr(detect.json, "loads", counting_loads)
    parsed = [parse_raw(p) for p in pages]
    monkeypatch.undo()
    assert len(decoded) == 2
    assert parsed == [parse_page(p.body, name=p.location, digest_date=DAY) for p in pages]
    assert len(parsed[0].papers) == 100


def test_json_nested_too_deeply_is_a_bad_answer_not_a_crash(server):
    server.expect_request(API_PATH).respond_with_data(
        "[" * 100_000 + "]" * 100_000, content_type="application/json"
    )
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="too deeply"):
        client.fetch_api_day(DAY)


def test_a_server_that_ignores_paging_is_refused(server):
    server.expect_request(API_PATH).respond_with_json(synthetic_papers(100))
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="paging"):
        client.fetch_api_day(DAY)
    assert request_count(server, API_PATH) == 2


# ---- retries and timeouts -----------------------------------------------------------------


def test_429_with_retry_after_then_success(server):
    query = api_query(DAY)
    server.expect_oneshot_request(API_PATH, query_string=query).respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    server.expect_request(API_PATH, query_string=query).respond_with_json([])
    slept = SleepRecorder()
    with HFClient(settings_for(server, retry_after_cap=5.0), sleep=slept) as client:
        [page] = client.fetch_api_day(DAY)
    assert page.http_status == 200
    assert slept.delays == [1.0]  # exactly what the server asked for
    assert request_count(server, API_PATH) == 2


def test_retry_after_of_an_hour_is_capped(server):
    query = api_query(DAY)
    server.expect_oneshot_request(API_PATH, query_string=query).respond_with_data(
        "", status=429, headers={"Retry-After": "3600"}
    )
    server.expect_request(API_PATH, query_string=query).respond_with_json([])
    slept = SleepRecorder()
    with HFClient(settings_for(server, retry_after_cap=2.0), sleep=slept) as client:
        client.fetch_api_day(DAY)
    assert slept.delays and max(slept.delays) <= 2.0


def test_503_twice_then_success(server):
    for _ in range(2):
        server.expect_oneshot_request(API_PATH).respond_with_data("busy", status=503)
    server.expect_request(API_PATH).respond_with_json([])
    with HFClient(settings_for(server)) as client:
        [page] = client.fetch_api_day(DAY)
    assert page.http_status == 200
    assert request_count(server, API_PATH) == 3


def test_503_that_never_ends_is_reported_with_its_status(server):
    server.expect_request(API_PATH).respond_with_data("busy", status=503)
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError) as caught:
        client.fetch_api_day(DAY)
    assert "HTTP 503" in str(caught.value) and "after 2 retries" in str(caught.value)
    assert request_count(server, API_PATH) == 3  # first try + max_retries


def test_read_timeout_is_a_fetch_error(server):
    release = threading.Event()

    def stall(request: Request) -> Response:
        release.wait(5)
        return Response("[]", content_type="application/json")

    server.expect_request(API_PATH).respond_with_handler(stall)
    settings = settings_for(server, read_timeout=0.2, max_retries=1)
    started = time.monotonic()
    try:
        with (
            HFClient(settings) as client,
            pytest.raises(FetchError, match=r"read timeout after 0\.2s"),
        ):
            client.fetch_api_day(DAY)
        assert time.monotonic() - started < 1.5
    finally:
        release.set()  # let the stalled handlers finish before the next test uses the server
    wait_until(lambda: request_count(server, API_PATH) == 2)


def test_connection_refused_is_a_fetch_error():
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetch.reset_rate_limits()
    settings = FetchSettings(base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff_factor=0)
    with HFClient(settings) as client, pytest.raises(FetchError) as caught:
        client.fetch_api_day(DAY)
    message = str(caught.value)
    assert message.startswith(f"http://127.0.0.1:{port}/api/daily_papers?date=2024-08-01")
    assert "connection failed" in message and "refused" in message.lower()


# ---- bad 200 answers ----------------------------------------------------------------------


def test_truncated_body_is_retried_then_reported(server):
    body = API_FIXTURE.read_bytes()
    server.expect_request(API_PATH).respond_with_handler(
        lambda request: truncated(body, "application/json")
    )
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError) as caught:
        client.fetch_api_day(DAY)
    assert "truncated body: 32292 bytes read, 32293 more expected" in str(caught.value)
    assert request_count(server, API_PATH) == 3  # one try and two retries of the bad answer


def test_truncated_json_with_honest_length_is_an_error(server):
    half = API_FIXTURE.read_bytes()[:1000]
    server.expect_request(API_PATH).respond_with_data(half, content_type="application/json")
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError) as caught:
        client.fetch_api_day(DAY)
    assert "truncated or malformed JSON (1000 bytes)" in str(caught.value)


def test_truncated_body_then_complete_body_succeeds(server):
    body = API_FIXTURE.read_bytes()
    server.expect_oneshot_request(API_PATH).respond_with_handler(
        lambda request: truncated(body, "application/json")
    )
    server.expect_request(API_PATH).respond_with_data(body, content_type="application/json")
    with HFClient(settings_for(server)) as client:
        [page] = client.fetch_api_day(DAY)
    assert page.body == body


def test_challenge_page_instead_of_json_is_an_error(server):
    server.expect_request(API_PATH).respond_with_data(CHALLENGE_PAGE, content_type="text/html")
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError) as caught:
        client.fetch_api_day(DAY)
    url = client.api_url(DAY, 0)
    assert str(caught.value) == (
        f"{url}: expected JSON, got text/html (HTML error page 'Just a moment...') (tried 3 times)"
    )


def test_json_object_instead_of_array_is_an_error(server):
    server.expect_request(API_PATH).respond_with_json({"error": "Invalid date"})
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="Invalid date"):
        client.fetch_api_day(DAY)


def test_html_day_page_is_fetched(server):
    body = HTML_FIXTURE.read_bytes()
    server.expect_request("/papers/date/2024-08-01").respond_with_data(
        body, content_type="text/html; charset=utf-8"
    )
    with HFClient(settings_for(server)) as client:
        [page] = client.fetch_day(DAY, "html")
    assert (page.source, page.body, page.digest_date) == ("html", body, DAY)
    assert page.location == server.url_for("/papers/date/2024-08-01")
    assert server.log[0][0].headers["Accept"] == "text/html"


def test_html_error_page_with_status_200_names_its_title(server):
    server.expect_request("/papers/date/2024-08-01").respond_with_data(
        CHALLENGE_PAGE, content_type="text/html"
    )
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError) as caught:
        client.fetch_html("day", "2024-08-01")
    assert "HTML error page 'Just a moment...'" in str(caught.value)
    assert request_count(server, "/papers/date/2024-08-01") == 3


def test_truncated_html_page_is_an_error(server):
    body = HTML_FIXTURE.read_bytes()[:50_000]
    server.expect_request("/papers/trending").respond_with_data(body, content_type="text/html")
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="no </html>"):
        client.fetch_html("trending")


def test_404_day_is_not_found_at_once(server):
    server.expect_request("/papers/date/2024-08-01").respond_with_data("nope", status=404)
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="not found"):
        client.fetch_html("day", "2024-08-01")
    assert request_count(server, "/papers/date/2024-08-01") == 1


def test_html_page_urls_and_bad_keys(server):
    with HFClient(settings_for(server)) as client:
        base = client.settings.base_url
        assert client.page_url("week", "2024-W31") == f"{base}/papers/week/2024-W31"
        assert client.page_url("month", "2024-08") == f"{base}/papers/month/2024-08"
        assert client.page_url("trending") == f"{base}/papers/trending"
        assert client.page_url("latest") == f"{base}/papers"
        assert client.page_url("day", DAY) == f"{base}/papers/date/2024-08-01"
        for kind, key in [("week", "2024-31"), ("day", None), ("latest", "x"), ("year", "2024")]:
            with pytest.raises(ValueError):
                client.page_url(kind, key)
        with pytest.raises(ValueError, match="source"):
            client.fetch_day(DAY, "rss")


# ---- conditional requests -----------------------------------------------------------------


def etag_handler(etag: str, body: bytes) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        return Response(body, content_type="application/json", headers={"ETag": etag})

    return answer


def test_second_fetch_is_a_304_with_empty_body(server):
    body = API_FIXTURE.read_bytes()
    server.expect_request(API_PATH).respond_with_handler(etag_handler('"v1"', body))
    with HFClient(settings_for(server)) as client:
        [first] = client.fetch_api_day(DAY)
        [second] = client.fetch_api_day(DAY)
    assert (first.http_status, first.body, first.not_modified) == (200, body, False)
    assert (second.http_status, second.body, second.not_modified) == (304, b"", True)
    assert second.etag == '"v1"'
    assert server.log[1][0].headers["If-None-Match"] == '"v1"'


def test_validators_from_the_caller_are_sent(server):
    server.expect_request(API_PATH).respond_with_handler(etag_handler('"v7"', b"[]"))
    asked: list[str] = []

    def remembered(url: str) -> tuple[str | None, str | None]:
        asked.append(url)  # as the warehouse does: validators only for pages it has stored
        if url.endswith("&p=0"):
            return ('"v7"', "Thu, 01 Aug 2024 12:00:00 GMT")
        return (None, None)

    with HFClient(settings_for(server), validators=remembered) as client:
        [page] = client.fetch_api_day(DAY)
    assert page.not_modified and page.etag == '"v7"'
    assert asked == [client.api_url(DAY, 0), client.api_url(DAY, 1)]  # p=1 unseen: stop
    assert server.log[0][0].headers["If-Modified-Since"] == "Thu, 01 Aug 2024 12:00:00 GMT"


def test_304_on_a_full_first_page_still_pages_on(server):
    papers = synthetic_papers(130)

    def paged(request: Request) -> Response:
        number = int(request.args["p"])
        etag = f'"p{number}"'
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        chunk = json.dumps(papers[number * 100 : number * 100 + 100])
        return Response(chunk, content_type="application/json", headers={"ETag": etag})

    server.expect_request(API_PATH).respond_with_handler(paged)
    with HFClient(settings_for(server)) as client:
        client.fetch_api_day(DAY)
        again = client.fetch_api_day(DAY)
    assert [p.http_status for p in again] == [304, 304]


# ---- redirects ----------------------------------------------------------------------------


def test_redirect_to_a_foreign_host_is_refused(server):
    server.expect_request("/papers/trending").respond_with_data(
        "", status=302, headers={"Location": "http://evil.example/papers/trending?sig=secret"}
    )
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError) as caught:
        client.fetch_html("trending")
    assert "redirect to foreign host evil.example refused" in str(caught.value)
    assert "sig=secret" not in str(caught.value)


def test_redirect_to_another_port_of_the_same_host_is_refused(server):
    other = f"http://127.0.0.1:{server.port + 1}/papers"
    server.expect_request("/papers").respond_with_data("", status=301, headers={"Location": other})
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="foreign"):
        client.fetch_html("latest")


def test_same_host_redirect_is_followed(server):
    body = HTML_FIXTURE.read_bytes()
    server.expect_request("/papers").respond_with_data(
        "", status=302, headers={"Location": "/papers/date/2024-08-01"}
    )
    server.expect_request("/papers/date/2024-08-01").respond_with_data(
        body, content_type="text/html"
    )
    with HFClient(settings_for(server)) as client:
        page = client.fetch_html("latest")
    assert page.body == body
    assert page.location == server.url_for("/papers")  # the URL asked for: the validators' key


def test_redirect_loop_stops(server):
    server.expect_request("/papers").respond_with_data(
        "", status=302, headers={"Location": "/papers"}
    )
    with HFClient(settings_for(server)) as client, pytest.raises(FetchError, match="redirects"):
        client.fetch_html("latest")
    assert request_count(server, "/papers") == 6


# ---- rate limit ---------------------------------------------------------------------------


def stamped_empty_days(stamps: list[float]) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        stamps.append(time.monotonic())
        return Response("[]", content_type="application/json")

    return answer


def most_in_any_window(stamps: list[float], window: float) -> int:
    ordered = sorted(stamps)
    return max(sum(1 for t in ordered if start <= t < start + window) for start in ordered)


def test_threads_together_stay_inside_the_rate_limit(server):
    stamps: list[float] = []
    server.expect_request(API_PATH).respond_with_handler(stamped_empty_days(stamps))
    settings = settings_for(server, api_per_5min=4, rate_window_s=1.0)
    days = [date(2024, 7, d) for d in range(1, 13)]

    def fetch_days(client: HFClient, mine: list[date]) -> None:
        for day in mine:
            client.fetch_api_day(day)

    # Two clients, as two flow runs in one process would have: the budget is per process.
    with HFClient(settings) as one, HFClient(settings) as two:
        threads = [
            threading.Thread(target=fetch_days, args=(client, days[i::4]))
            for i, client in enumerate([one, two, one, two])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(stamps) == 12
    assert most_in_any_window(stamps, 1.0 - 0.2) <= 4  # 0.2 s slack for server-side latency
    assert max(stamps) - min(stamps) >= 2 * 1.0 - 0.2  # 12 calls at 4 a second need 3 windows


def test_retries_spend_the_rate_limit_too(server):
    stamps: list[float] = []

    def busy(request: Request) -> Response:
        stamps.append(time.monotonic())
        return Response("busy", status=503)

    for _ in range(2):
        server.expect_oneshot_request(API_PATH).respond_with_handler(busy)
    server.expect_request(API_PATH).respond_with_handler(stamped_empty_days(stamps))
    with HFClient(settings_for(server, api_per_5min=2, rate_window_s=1.0)) as client:
        client.fetch_api_day(DAY)
    assert len(stamps) == 3
    assert stamps[2] - stamps[0] >= 1.0 - 0.1  # the third request waited for a free slot


def test_pages_and_api_have_separate_budgets(server):
    server.expect_request(API_PATH).respond_with_json([])
    server.expect_request("/papers/date/2024-08-01").respond_with_data(
        HTML_FIXTURE.read_bytes(), content_type="text/html"
    )
    slept = SleepRecorder()
    settings = settings_for(server, api_per_5min=1, pages_per_5min=1, rate_window_s=60.0)
    with HFClient(settings, sleep=slept) as client:
        client.fetch_day(DAY, "api")
        client.fetch_day(DAY, "html")
    assert slept.delays == []


# ---- the token ----------------------------------------------------------------------------


def test_token_is_sent_but_never_shown(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.expect_request(API_PATH).respond_with_json([])
    server.expect_request("/papers/date/2024-08-01").respond_with_data(CHALLENGE_PAGE, status=403)
    settings = settings_for(server, token=CANARY)
    with HFClient(settings) as client:
        client.fetch_api_day(DAY)
        with pytest.raises(FetchError) as caught:
            client.fetch_html("day", DAY)
        shown = [repr(settings), str(settings), repr(client), str(caught.value), caplog.text]
    assert server.log[0][0].headers["Authorization"] == f"Bearer {CANARY}"
    assert "HF_TOKEN" in str(caught.value)
    for text in shown:
        assert CANARY not in text


# ---- the same day through both sources ----------------------------------------------------


def api_array_from_html(page: bytes) -> list[dict]:
    """The `dailyPapers` list the website embeds in its DailyPapers data-props."""
    tag = re.search(rb'<[^>]*data-target="DailyPapers"[^>]*>', page).group(0)
    props = re.search(rb'data-props="([^"]*)"', tag).group(1)
    return json.loads(html.unescape(props.decode("utf-8")))["dailyPapers"]


def test_same_day_through_both_sources_gives_the_same_paper_ids(server):
    from flows.parse import parse_page  # imported here so a parser change fails only this test

    page = HTML_FIXTURE.read_bytes()
    array = api_array_from_html(page)
    server.expect_request(API_PATH).respond_with_json(array)
    server.expect_request("/papers/date/2024-08-01").respond_with_data(
        page, content_type="text/html"
    )
    ids = {}
    with HFClient(settings_for(server)) as client:
        for source in ("api", "html"):
            [raw] = client.fetch_day(DAY, source)
            parsed = parse_page(raw.body, name=raw.location, digest_date=DAY)
            assert (parsed.fmt, parsed.rejects) == (source, ())
            ids[source] = {paper.paper_id for paper in parsed.papers}
    assert len(array) == 13
    assert ids["api"] == ids["html"]
    assert len(ids["api"]) == 13


def test_a_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(server, monkeypatch):
    """The environment is read once, when the client is made; what it says still holds."""
    with HTTPServer(host="127.0.0.1") as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url_for("/"))
        proxy.expect_request(API_PATH, query_string=api_query(DAY)).respond_with_json([])
        with HFClient(settings_for(server)) as client:
            assert [p.body for p in client.fetch_day(DAY, "api")] == [b"[]"]
        assert (len(proxy.log), len(server.log)) == (1, 0)

        monkeypatch.setenv("no_proxy", "127.0.0.1")
        server.expect_request(API_PATH, query_string=api_query(DAY)).respond_with_json([])
        with HFClient(settings_for(server)) as client:
            assert [p.body for p in client.fetch_day(DAY, "api")] == [b"[]"]
        assert (len(proxy.log), len(server.log)) == (1, 1)
