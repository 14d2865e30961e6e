"""SIGKILL at random (seeded) and at chosen points during import, backfill and delivery.

Each trial starts crash_driver.py in a child process, kills it with SIGKILL, then proves:

1. the warehouse opens and passes every integrity check (no sighting without a page, no page
   without its rows and archived bytes, no send marked sent without a Message-ID);
2. delivery only: every send the ledger marks "sent" really reached the SMTP server, and
   nobody got mail without a ledger row;
3. an undisturbed re-run completes and leaves the same final rows as a clean reference run
   (what "same" means is `support.SNAPSHOT_SQL`: rows compared by content, not by run ids or
   timestamps; page-level refusals compared as a set, since each run logs the bad files it met);
4. delivery only: each recipient got exactly one distinct Message-ID; a second copy of that same
   Message-ID is allowed only when the kill fell in the documented window (the server accepted
   the message but the ledger still said "pending"), never a second different message.

Random kill delays are drawn from a seeded generator over the reference run's duration.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows import fetch
from flows.warehouse import Warehouse

from . import crash_driver
from .support import (
    API_FIXTURES,
    CORPUS,
    HTML_FIXTURE,
    ROOT,
    SEEDS,
    SinkHandler,
    cli_env,
    query,
    run_cli,
    smtp_env,
    snapshot,
    snapshot_diff,
    start_smtp,
    wait_for_line,
    write_subscribers,
)

pytestmark = pytest.mark.slow

SEED = 20260814
DRIVER = Path(crash_driver.__file__)
IMPORT_FILES = [
    *API_FIXTURES,
    HTML_FIXTURE,
    *SEEDS,
    CORPUS / "api-item-without-paper.json",
    CORPUS / "api-truncated-at-9999.json",  # refused: exercises the page-level reject row
    CORPUS / "html-hostile-props.html",
    CORPUS / "seed-cp1252.txt",
]
BACKFILL_DAYS = [date(2026, 8, 10) + timedelta(n) for n in range(6)]
PAGE_LIMIT = 10  # small pages: most days span 2-3 API pages, so a day can be half loaded
DELIVERY_DAY = date(2026, 8, 14)
RECIPIENTS = [f"reader{n}@example.org" for n in range(1, 7)]


@dataclass(frozen=True)
class Trial:
    """One kill: a random delay (a fraction of the reference duration) or a crash point."""

    mode: str
    index: int
    crash_at: str | None = None

    @property
    def name(self) -> str:
        return f"{self.mode}-{self.crash_at or f'random-{self.index}'}"

    def fraction(self) -> float:
        return random.Random(f"{SEED}-{self.mode}-{self.index}").uniform(0.02, 0.98)


TRIALS = [
    *(Trial("import", n) for n in range(8)),
    Trial("import", 0, "Warehouse._insert_rows:5"),  # inside a page's transaction
    Trial("import", 0, "Warehouse.save_refused_page:1"),
    Trial("import", 0, "Warehouse.close:1"),  # all committed, never checkpointed
    *(Trial("backfill", n) for n in range(6)),
    # a batch's pages written, its days not yet marked complete: both roll back together
    Trial("backfill", 0, "Warehouse.mark_days_complete:2"),
    *(Trial("delivery", n) for n in range(8)),
    Trial("delivery", 0, "Warehouse.mark_sent_many:1"),  # a batch accepted, its ledger rows pending
    Trial("delivery", 0, "Warehouse.record_digest:1"),  # everyone sent, digest not recorded
]


# ---- the servers and the reference runs -----------------------------------------------------


def backfill_items(day: date) -> list[dict]:
    """A day's API items: a recorded page, with ids made unique to that day."""
    index = BACKFILL_DAYS.index(day)
    items = json.loads(API_FIXTURES[index % len(API_FIXTURES)].read_bytes())
    for number, item in enumerate(items):
        item["paper"]["id"] = f"2608.{index + 1}{number:04d}"
    return items


def serve_api(request: Request) -> Response:
    """/api/daily_papers?date=…&limit=…&p=…, a little slowly so a kill lands mid-backfill."""
    time.sleep(0.03)
    day = date.fromisoformat(request.args["date"])
    limit, page = int(request.args["limit"]), int(request.args["p"])
    items = backfill_items(day)[page * limit : (page + 1) * limit]
    return Response(json.dumps(items), content_type="application/json")


@pytest.fixture(scope="module")
def api_server() -> HTTPServer:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/api/daily_papers").respond_with_handler(serve_api)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def sink() -> SinkHandler:
    return SinkHandler(delay=0.05)


@pytest.fixture(scope="module")
def smtp_port(sink: SinkHandler) -> int:
    controller = start_smtp(sink)
    yield controller.port
    controller.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kills")


@pytest.fixture(scope="module")
def delivery_template(workdir: Path) -> Path:
    """A warehouse with the five recorded API pages loaded by run 1 (copied for each trial)."""
    template = workdir / "delivery-template.duckdb"
    crash_driver.run_import(template, API_FIXTURES)
    return template


@dataclass
class Reference:
    """A clean, undisturbed run of one mode: its final rows and how long its work took."""

    rows: dict[str, list[tuple]]
    seconds: float


def child_env(workdir: Path, smtp_port: int) -> dict[str, str]:
    env = cli_env(workdir, None, **smtp_env(smtp_port))
    env["PAPERDIGEST_SUBSCRIBERS"] = str(write_subscribers(workdir / "subs.json", RECIPIENTS))
    return env


def trial_config(mode: str, db: Path, workdir: Path, api_server: HTTPServer) -> dict:
    if mode == "import":
        return {"db": str(db), "files": [str(f) for f in IMPORT_FILES]}
    if mode == "backfill":
        return {
            "db": str(db),
            "base_url": api_server.url_for("/").rstrip("/"),
            "days": [d.isoformat() for d in BACKFILL_DAYS],
            "page_limit": PAGE_LIMIT,
        }
    return {
        "db": str(db),
        "outbox": str(workdir / "outbox"),
        "load_run": 1,
        "day": DELIVERY_DAY.isoformat(),
    }


def fresh_db(mode: str, path: Path, template: Path) -> Path:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    if mode == "delivery":
        shutil.copy(template, path)
    return path


def start_driver(mode: str, config: dict, env: dict[str, str], tmp: Path, crash_at: str | None):
    config_path = tmp / f"{mode}-config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    env = dict(env)
    if crash_at:
        env[crash_driver.CRASH_ENV] = crash_at
    return subprocess.Popen(
        [sys.executable, str(DRIVER), mode, str(config_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def references(workdir, api_server, sink, smtp_port, delivery_template) -> dict[str, Reference]:
    """One undisturbed child run per mode: the rows every trial must end with, and its time."""
    env = child_env(workdir, smtp_port)
    found = {}
    for mode in ("import", "backfill", "delivery"):
        db = fresh_db(mode, workdir / f"reference-{mode}.duckdb", delivery_template)
        fetch.reset_rate_limits()
        sink.received.clear()
        child = start_driver(mode, trial_config(mode, db, workdir, api_server), env, workdir, None)
        wait_for_line(child, "T0")
        started = time.monotonic()
        done = wait_for_line(child, "done", timeout=120)
        seconds = time.monotonic() - started
        child.wait(timeout=60)
        assert child.returncode == 0, child.stderr.read()[-3000:]
        result = json.loads(done.removeprefix("done "))
        if mode == "backfill":
            assert result == {"loaded": [str(d) for d in BACKFILL_DAYS], "failed": []}
        if mode == "delivery":
            assert result["sent"] == len(RECIPIENTS), result
            assert len(sink.received) == len(RECIPIENTS)
        found[mode] = Reference(snapshot(db), seconds)
    return found


# ---- the trials -----------------------------------------------------------------------------

checked_with_cli: set[str] = set()


@pytest.mark.parametrize("trial", TRIALS, ids=[t.name for t in TRIALS])
def test_sigkill_leaves_a_sound_warehouse_and_a_rerun_ends_like_an_undisturbed_run(
    trial: Trial,
    references: dict[str, Reference],
    workdir: Path,
    api_server: HTTPServer,
    sink: SinkHandler,
    smtp_port: int,
    delivery_template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kill, check integrity (and the ledger against the server), re-run, compare final rows."""
    mode = trial.mode
    db = fresh_db(mode, workdir / f"trial-{mode}.duckdb", delivery_template)
    config = trial_config(mode, db, workdir, api_server)
    env = child_env(workdir, smtp_port)
    fetch.reset_rate_limits()
    sink.received.clear()

    child = start_driver(mode, config, env, workdir, trial.crash_at)
    wait_for_line(child, "T0")
    if trial.crash_at is None:
        time.sleep(trial.fraction() * references[mode].seconds)
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=120)
    if trial.crash_at is not None:
        assert child.returncode == -signal.SIGKILL, (
            f"the crash point {trial.crash_at} was never reached: {child.stderr.read()[-2000:]}"
        )

    # 1. it opens, and every integrity check passes (once also through `paperdigest check`)
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []
    if mode not in checked_with_cli:
        checked_with_cli.add(mode)
        check = run_cli(["--db", str(db), "check"], cli_env(workdir, None))
        assert check.returncode == 0, check.stdout + check.stderr

    # 2. the ledger never claims more than the server got, nor the server more than the ledger
    pending: set[str] = set()
    if mode == "delivery":
        sends = query(db, "SELECT recipient, state, message_id FROM sends")
        got = sink.ids_by_recipient()
        for recipient, state, message_id in sends:
            if state == "sent":
                assert message_id in got.get(recipient, []), f"{recipient}: sent, never arrived"
            if state == "pending":
                pending.add(recipient)
        assert set(got) <= {row[0] for row in sends}, "mail went out without a ledger row"

    # 3. an undisturbed re-run ends with the rows of a clean run
    for name, value in env.items():
        if name.startswith("PAPERDIGEST_"):
            monkeypatch.setenv(name, value)
    fetch.reset_rate_limits()
    crash_driver.run(mode, config)
    diff = snapshot_diff(snapshot(db), references[mode].rows)
    assert diff == "", f"{trial.name}: final rows differ from an undisturbed run:\n{diff}"
    assert query(db, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]

    # 4. exactly one distinct message per recipient; a repeat only of the same id, only in the
    #    window where the server had accepted it and the ledger still said "pending"
    if mode == "delivery":
        for recipient, ids in sink.ids_by_recipient().items():
            assert len(set(ids)) == 1, f"{recipient} got different messages: {ids}"
            if len(ids) > 1:
                assert recipient in pending and len(ids) == 2, f"{recipient}: {ids}"
        assert sorted(sink.ids_by_recipient()) == RECIPIENTS
