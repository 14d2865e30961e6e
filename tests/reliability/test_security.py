"""Security: secrets stay secret, fetches stay on the configured host, page content cannot
script the email, inject headers, or choose where files are written.

* A canary HF token and SMTP password never appear in logs, Prefect artifacts or logs,
  outbox files, the warehouse, results or exceptions, even when a server echoes them back.
* Fetches go only to the configured host: redirects elsewhere are refused, and links inside
  pages are never followed.
* The email rendered from hostile pages has no executable markup, only http(s)/mailto links,
  no injected headers; every file a run writes has a name built from dates and addresses,
  never from page content.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from bs4 import BeautifulSoup
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows import fetch
from flows.deliver import SmtpSettings, SmtpTransport, deliver_digest
from flows.diff import compute_diff
from flows.fetch import FetchError, FetchSettings, HFClient
from flows.models import Recipient
from flows.pipeline import ingest_files
from flows.warehouse import Warehouse

from .support import (
    API_FIXTURES,
    CORPUS,
    SENDER,
    RawServer,
    SinkHandler,
    all_text_in_warehouse,
    smtp_env,
    start_smtp,
    write_subscribers,
)

TOKEN = "hf_CanaryTokenQx7Zr2Lm9Wv4Ks1"
USER = "digest-bot"
PASSWORD = "canary-Smtp-Pa55-8e2f41"
SECRET_FORMS = {
    TOKEN,
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
}
DAY = date(2026, 8, 14)
# The template's own elements (lxml adds tbody); nothing a page could bring in.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "div", "table", "tbody", "tr"}
ALLOWED_TAGS |= {"td", "p", "span", "strong", "a", "h1", "h2", "h3", "h4", "h5", "h6"}
OUTBOX_NAME = re.compile(r"\d{4}-\d{2}-\d{2}_[a-z0-9-]+-[0-9a-f]{8}\.(eml|html)")
SITE_NAME = re.compile(
    r"(index\.html|style\.css|search\.js|search-index\.js|feed\.atom|feed\.json"
    r"|\.paperdigest-site\.json|days/\d{4}-\d\d-\d\d\.html|weeks/\d{4}-W\d\d\.html"
    r"|papers/(\d{4}\.\d{4,5}|t-[0-9a-f]{16})\.html)"
)


def leaks(*texts: object) -> list[str]:
    """The secret forms found in any of the texts."""
    joined = "\n".join(str(t) for t in texts)
    return sorted(form for form in SECRET_FORMS if form in joined)


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    fetch.reset_rate_limits()


def settings_for(server: HTTPServer) -> FetchSettings:
    return FetchSettings(
        base_url=server.url_for("/").rstrip("/"),
        token=TOKEN,
        connect_timeout=1,
        read_timeout=2,
        max_retries=1,
        backoff_factor=0.001,
        retry_after_cap=0.1,
    )


# ---- the HF token ----------------------------------------------------------------------------


def echo_in_401_title(request: Request) -> Response:
    return Response(
        f"<html><head><title>Invalid {request.headers.get('Authorization')}</title></head></html>",
        401,
        content_type="text/html",
    )


def echo_in_json_error(request: Request) -> Response:
    body = {"error": f"token {request.headers.get('Authorization')} is rate limited"}
    return Response(json.dumps(body), content_type="application/json")


def echo_in_500_page(request: Request) -> Response:
    auth = request.headers.get("Authorization")
    return Response(f"<html><title>Error for {auth}</title></html>", 500, content_type="text/html")


def echo_in_challenge_page(request: Request) -> Response:
    auth = request.headers.get("Authorization")
    page = f"<html><head><title>Checking {auth}</title></head><body>wait</body></html>"
    return Response(page, content_type="text/html")


@pytest.mark.parametrize(
    ("handler", "source"),
    [
        (echo_in_401_title, "api"),
        (echo_in_json_error, "api"),
        (echo_in_500_page, "api"),
        (echo_in_challenge_page, "html"),
    ],
    ids=["401-title", "200-json-error", "500-title", "200-challenge-title"],
)
def test_hf_token_echoed_back_by_the_server_never_reaches_errors_or_logs(
    http: HTTPServer, handler, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server puts the Authorization header it got into its error page or JSON: the
    FetchError, its repr and every log record stay free of the token."""
    http.expect_request(re.compile(".*")).respond_with_handler(handler)
    caplog.set_level("DEBUG")
    with HFClient(settings_for(http)) as client, pytest.raises(FetchError) as caught:
        client.fetch_day(DAY, source)
    assert any(TOKEN in r.headers.get("Authorization", "") for r, _ in http.log)  # it was sent
    assert leaks(str(caught.value), repr(caught.value), caught.value.reason, caplog.text) == []


def test_redirects_to_another_host_are_refused_and_never_followed(http: HTTPServer) -> None:
    """A redirect to another host, another port of this host, or another scheme is refused
    with one line naming only the host; the other server never gets a request (so it never
    sees the token); a redirect on the same host is followed."""
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        base = http.url_for("/").rstrip("/")
        targets = {
            "/api/daily_papers": f"{other.url_for('/steal')}?token=x",  # another port
            "/papers/date/2026-08-14": f"http://localhost:{http.port}/papers/date/2026-08-14",
            "/papers/date/2026-08-13": f"https://127.0.0.1:{http.port}/papers/date/2026-08-13",
        }
        for path, location in targets.items():
            http.expect_request(path).respond_with_response(
                Response(status=302, headers={"Location": location})
            )
        with HFClient(settings_for(http)) as client:
            for day, source in ((DAY, "api"), (DAY, "html"), (DAY - timedelta(1), "html")):
                with pytest.raises(FetchError, match="redirect to foreign host") as caught:
                    client.fetch_day(day, source)
                assert str(caught.value).startswith(base) and "\n" not in str(caught.value)
                assert "token=" not in str(caught.value)
        assert other.log == []
        http.clear()
        page = API_FIXTURES[-1].read_bytes()
        http.expect_request("/moved").respond_with_data(page, content_type="application/json")
        http.expect_request("/api/daily_papers").respond_with_response(
            Response(status=301, headers={"Location": "/moved"})
        )
        with HFClient(settings_for(http)) as client:
            [raw] = client.fetch_day(date(2026, 8, 12), "api")
        assert raw.body == page
    finally:
        other.stop()


def smtp_echoing_auth(conn, stop) -> None:
    """An SMTP server that refuses AUTH and quotes the client's AUTH line in its reply."""
    conn.sendall(b"220 mx.test ESMTP\r\n")
    buffer = b""
    while not stop.is_set():
        chunk = conn.recv(4096)
        if not chunk:
            return
        buffer += chunk
        while b"\r\n" in buffer:
            line, buffer = buffer.split(b"\r\n", 1)
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-mx.test\r\n250-AUTH PLAIN LOGIN\r\n250 OK\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"535 5.7.8 Authentication failed: " + line[:200] + b"\r\n")


def test_smtp_password_echoed_by_the_server_stays_out_of_reports_logs_and_warehouse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """The server answers AUTH with an error quoting the AUTH line (the password, base64):
    the delivery report, the ledger rows, the logs and the output never hold any form of it."""
    db = tmp_path / "papers.duckdb"
    server = RawServer(smtp_echoing_auth)
    caplog.set_level("DEBUG")
    try:
        settings = SmtpSettings(
            host="127.0.0.1",
            port=server.port,
            user=USER,
            password=PASSWORD,
            security="none",
            mail_from=SENDER,
            timeout=5,
        )
        with Warehouse.open(db) as wh:
            run_id = wh.start_run("import")
            ingest_files(wh, [API_FIXTURES[1]], run_id, None, DAY)
            digest = compute_diff(wh, run_id=run_id, digest_date=DAY, since_run=0)
            with SmtpTransport(settings, attempts=2, backoff=0.001) as transport:
                report = deliver_digest(
                    digest,
                    [Recipient("alice@example.org"), Recipient("bob@example.org")],
                    ledger=wh,
                    transport=transport,
                    sender=SENDER,
                    list_id="papers.example.org",
                )
                shown = repr(transport)
    finally:
        server.stop()
    assert [address for address, _ in report.failed] == ["alice@example.org", "bob@example.org"]
    assert "535" in report.failed[0][1]
    out, err = capfd.readouterr()
    found = leaks(report.summary(), shown, caplog.text, out, err, all_text_in_warehouse(db))
    assert found == []


# ---- a whole daily run with canaries -------------------------------------------------------


def accept_canary(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.mark.slow
@pytest.mark.prefect
def test_daily_run_with_canary_secrets_leaks_them_nowhere(
    prefect_harness,
    clean_env: Path,
    http: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture,
) -> None:
    """`daily_digest` fetching with HF_TOKEN (one day's server echoes it in an error page) and
    mailing with an SMTP password: neither appears in the run's result, the Prefect artifacts
    or logs, the warehouse, the outbox or anything printed or logged; the links inside the
    fetched pages (pointing at a second server) are never fetched."""
    from prefect.logging.handlers import APILogWorker

    from flows.daily import daily_digest

    bystander = HTTPServer(host="127.0.0.1", port=0)
    bystander.start()
    items = json.loads(API_FIXTURES[-1].read_bytes())
    for item in items:  # links and media a page mentions: never to be fetched
        item["paper"]["githubRepo"] = bystander.url_for(f"/repo/{item['paper']['id']}")
        item["paper"]["projectPage"] = bystander.url_for("/project")
        item["thumbnail"] = bystander.url_for("/thumb.png")

    def api(request: Request) -> Response:
        if request.args["date"] == DAY.isoformat():
            return Response(json.dumps(items), content_type="application/json")
        return echo_in_401_title(request)

    http.expect_request("/api/daily_papers").respond_with_handler(api)
    sink = SinkHandler()
    controller = start_smtp(
        sink, auth_required=True, auth_require_tls=False, authenticator=accept_canary
    )
    env = smtp_env(
        controller.port, PAPERDIGEST_SMTP_USER=USER, PAPERDIGEST_SMTP_PASSWORD=PASSWORD
    ) | {
        "PAPERDIGEST_HF_URL": http.url_for("/").rstrip("/"),
        "HF_TOKEN": TOKEN,
        "PAPERDIGEST_REFETCH_DAYS": "1",
        "PAPERDIGEST_GAP_DAYS": "0",
        "PAPERDIGEST_TASK_RETRIES": "0",
        "PAPERDIGEST_HTTP_RETRIES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caplog.set_level("DEBUG")
    db, outbox = clean_env / "papers.duckdb", clean_env / "outbox"
    try:
        state = daily_digest(
            date=DAY.isoformat(), db=str(db), outbox=str(outbox), return_state=True
        )
    finally:
        controller.stop()
        bystander.stop()
    result = state.result()
    APILogWorker.drain_all(timeout=10)  # the run's logs reach the server in the background
    assert len(sink.received) == 1, result["summary"]  # the run did fetch, fail a day, and mail
    assert result["status"] == "partial"
    assert bystander.log == [], "a link inside a fetched page was followed"
    artifacts, logs = prefect_records(state.state_details.flow_run_id)
    assert logs, "the run's Prefect logs were not found"
    outbox_files = [p.read_bytes().decode("utf-8", "replace") for p in outbox.rglob("*")]
    out, err = capfd.readouterr()
    places = {
        "result": result,
        "artifacts": artifacts,
        "prefect logs": logs,
        "warehouse": all_text_in_warehouse(db),
        "outbox": outbox_files,
        "log records": caplog.text,
        "stdout/stderr": out + err,
        "mail": [m.data.decode("utf-8", "replace") for m in sink.received],
    }
    assert {place: leaks(text) for place, text in places.items() if leaks(text)} == {}


def prefect_records(flow_run_id) -> tuple[list[str], list[str]]:
    """The artifacts and every log line Prefect's server holds for one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    logs: list[str] = []
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        while batch := client.read_logs(log_filter=log_filter, limit=200, offset=len(logs)):
            logs += [entry.message for entry in batch]
    return [str(a.data) for a in artifacts], logs


# ---- what page content can and cannot do to the email and the file system ------------------

HOSTILE_PAGES = ["api-hostile-entries.json", "html-hostile-props.html", "seed-hostile-title.txt"]


@pytest.fixture(scope="module")
def hostile_run(prefect_harness, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A daily run over the hostile pages into a sandbox folder; mail to the outbox, for two
    subscribers, one with path characters in its address."""
    from flows.daily import daily_digest

    sandbox = tmp_path_factory.mktemp("sandbox")
    pages = sandbox / "pages"
    pages.mkdir()
    for name in HOSTILE_PAGES:
        shutil.copy(CORPUS / name, pages / name)
    subscribers = write_subscribers(
        sandbox / "subscribers.json", ["reader@example.org", "../../../evil/x@example.org"]
    )
    before = {p for p in sandbox.rglob("*")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAPERDIGEST_SUBSCRIBERS", str(subscribers))
        mp.delenv("PAPERDIGEST_SMTP_HOST", raising=False)
        mp.chdir(sandbox)
        result = daily_digest(
            date="2025-03-31",
            offline_dir=str(pages),
            db=str(sandbox / "papers.duckdb"),
            outbox=str(sandbox / "outbox"),
        )
    created = {p for p in sandbox.rglob("*")} - before
    return {"sandbox": sandbox, "result": result, "created": created}


def messages(run: dict) -> list[email.message.EmailMessage]:
    emls = sorted((run["sandbox"] / "outbox").glob("*.eml"))
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in emls]


@pytest.mark.prefect
def test_email_from_hostile_pages_has_no_executable_markup_or_foreign_schemes(
    hostile_run: dict,
) -> None:
    """Only the template's own elements, no event handlers, only http(s)/mailto links; the
    hostile titles are there, but as escaped text."""
    mails = messages(hostile_run)
    assert len(mails) == 2, hostile_run["result"]["summary"]
    for message in mails:
        html = message.get_body(preferencelist=("html",)).get_content()
        soup = BeautifulSoup(html, "lxml")
        assert {tag.name for tag in soup.find_all(True)} <= ALLOWED_TAGS
        for tag in soup.find_all(True):
            for name, value in tag.attrs.items():
                assert not name.lower().startswith("on"), (tag.name, name)
                if name in ("href", "src", "action", "background", "formaction"):
                    assert re.match(r"(https?|mailto):", str(value).strip(), re.I), value
        for style in soup.find_all("style"):
            assert "display:none}" not in style.get_text().replace(" ", "")
        assert "&lt;script&gt;alert(" in html  # the hostile title is there, as inert text
        assert "<script" not in html.lower() and "<iframe" not in html.lower()
        assert "<img src=x" not in html.lower()


@pytest.mark.prefect
def test_page_content_cannot_inject_email_headers(hostile_run: dict) -> None:
    """A title with CR/LF and "Bcc:" stays inside the body; the headers are the expected set,
    each on one line."""
    expected = {
        "Subject", "From", "To", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
        "Auto-Submitted", "MIME-Version", "Content-Type",
    }  # fmt: skip
    for message in messages(hostile_run):
        assert set(message.keys()) <= expected | {"List-Unsubscribe-Post"}, message.keys()
        assert message.get_all("Bcc") is None and message.get_all("X-Injected") is None
        for name, value in message.items():
            assert "\r" not in str(value) and "\n" not in str(value), (name, value)
        assert str(message["To"]) in ("reader@example.org", "../../../evil/x@example.org")


@pytest.mark.prefect
def test_file_names_never_come_from_page_content(hostile_run: dict) -> None:
    """Everything the run wrote is the warehouse and outbox files named from the date and a
    slug of the address; nothing escaped the sandbox's outbox, nothing is named after a page."""
    sandbox: Path = hostile_run["sandbox"]
    outbox = sandbox / "outbox"
    site = sandbox / "site"
    for path in hostile_run["created"]:
        if path.parent == outbox:
            assert OUTBOX_NAME.fullmatch(path.name), path.name
        elif path.is_relative_to(site):  # the published archive: names from dates and ids
            relative = path.relative_to(site).as_posix()
            assert path.is_dir() or SITE_NAME.fullmatch(relative), relative
        else:
            assert path in (outbox, site) or path.name.startswith("papers.duckdb"), path
    assert len([p for p in outbox.iterdir() if p.suffix == ".eml"]) == 2
    assert not (sandbox.parent / "evil").exists() and not (sandbox / "evil").exists()
