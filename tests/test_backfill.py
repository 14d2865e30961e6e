"""Backfill and scheduling under Prefect, against a local replay server (pytest-httpserver)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from werkzeug import Request, Response

from flows import daily as daily_module
from tests.replay import recorded_day, serve_days

ROOT = Path(__file__).resolve().parent.parent
START, END = date(2025, 6, 2), date(2025, 7, 1)  # 30 days, 22 weekdays

pytestmark = pytest.mark.prefect


@pytest.fixture
def replay_env(httpserver, monkeypatch, tmp_path):
    """Point the fetch stage at the local replay server, with fast retries."""
    monkeypatch.setenv("PAPERDIGEST_HF_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("PAPERDIGEST_HTTP_RETRIES", "1")
    monkeypatch.setenv("PAPERDIGEST_TASK_RETRIES", "0")
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "none.json"))
    return tmp_path / "papers.duckdb"


def table(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def expected_papers(start: date, end: date) -> int:
    return sum(len(recorded_day(start + timedelta(n))) for n in range((end - start).days + 1))


def test_a_30_day_backfill_loads_every_day_and_resumes(prefect_harness, httpserver, replay_env):
    from flows.backfill import LOAD_MEMORY_MB, backfill
    from flows.warehouse import Warehouse

    db = replay_env
    requested = serve_days(httpserver)
    limits = []  # DuckDB's memory limit as each batch loaded, and as the site was published
    save_pages, publish = Warehouse.save_pages, daily_module.publish

    def limit(wh: Warehouse) -> str:
        return wh.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    def saving(wh: Warehouse, *args, **kwargs):
        limits.append(limit(wh))
        return save_pages(wh, *args, **kwargs)

    def publishing(wh: Warehouse, *args, **kwargs):
        limits.append(limit(wh))
        return publish(wh, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Warehouse, "save_pages", saving)
        patch.setattr(daily_module, "publish", publishing)
        result = backfill(start=START.isoformat(), end=END.isoformat(), source="api", db=str(db))
    # loads run under the cap; publishing (queries over the whole history) does not
    assert limits[:-1] and set(limits[:-1]) == {f"{LOAD_MEMORY_MB:.1f} MiB"}
    assert limits[-1] != limits[0]
    counts = result["counts"]
    assert (counts["loaded"], counts["skipped"], counts["failed"]) == (30, 0, 0)
    assert counts["entries"] == expected_papers(START, END) == 22 * 12
    assert table(db, "SELECT count(*), count(DISTINCT paper_id) FROM sightings") == [(264, 264)]
    assert table(db, "SELECT count(*) FROM day_loads") == [(30,)]
    assert len(requested) == 30
    # The last step published the archive beside the warehouse: a page per day with papers.
    site = db.parent / "site"
    assert result["site"].startswith("site: ") and f"→ {site / 'index.html'}" in result["site"]
    assert len(list((site / "days").glob("*.html"))) == 22
    assert len(list((site / "papers").glob("*.html"))) == 264

    (site / "index.html").unlink()
    again = backfill(
        start=START.isoformat(), end=END.isoformat(), source="api", db=str(db), publish=False
    )
    assert again["counts"]["skipped"] == 30  # resumable: complete days are not fetched again
    assert again["site"] is None and not (site / "index.html").exists()  # --no-publish
    assert len(requested) == 30
    refreshed = backfill(
        start=START.isoformat(), end=START.isoformat(), source="api", refresh=True, db=str(db)
    )
    assert refreshed["counts"]["loaded"] == 1 and len(requested) == 31
    # the same bytes again: the page is recognised, nothing is appended
    assert table(db, "SELECT count(*) FROM sightings") == [(264,)]


def test_a_failing_day_is_reported_and_the_rest_load(prefect_harness, httpserver, replay_env):
    from flows.backfill import backfill

    bad = date(2025, 6, 4)
    serve_days(httpserver, failing={bad})
    result = backfill(start="2025-06-02", end="2025-06-06", source="api", db=str(replay_env))
    days = {d.day: d for d in result["days"]}
    assert days[bad].status == "failed" and "500" in days[bad].error
    assert [d.day for d in result["days"] if d.status == "loaded"] == [
        date(2025, 6, 2),
        date(2025, 6, 3),
        date(2025, 6, 5),
        date(2025, 6, 6),
    ]
    assert table(replay_env, "SELECT status FROM runs") == [("partial",)]


def test_the_cli_exits_1_naming_the_failed_day(prefect_harness, httpserver, replay_env, capsys):
    from flows.cli import main

    serve_days(httpserver, failing={date(2025, 6, 3)})
    code = main(
        ["--db", str(replay_env), "backfill", "--start", "2025-06-02", "--end", "2025-06-03"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "paperdigest: 2025-06-03 failed: " in captured.err
    assert "backfill" in captured.out  # the summary table


def test_a_daily_run_repairs_a_gap(prefect_harness, httpserver, replay_env, tmp_path):
    from flows.backfill import backfill
    from flows.daily import daily_digest

    requested = serve_days(httpserver)
    today = date(2025, 7, 1)
    backfill(start="2025-06-02", end="2025-06-30", source="api", db=str(replay_env))
    with duckdb.connect(str(replay_env)) as con:  # lose one day, as if its fetch had failed
        gap = date(2025, 6, 10)
        con.execute("DELETE FROM sightings WHERE digest_date = $d", {"d": gap})
        con.execute("DELETE FROM page_archive_1 WHERE page_id IN "
                    "(SELECT page_id FROM pages WHERE digest_date = $d)", {"d": gap})  # fmt: skip
        con.execute("DELETE FROM pages WHERE digest_date = $d", {"d": gap})
        con.execute("DELETE FROM day_loads WHERE digest_date = $d", {"d": gap})
    requested.clear()
    result = daily_digest(
        date=today.isoformat(), db=str(replay_env), outbox=str(tmp_path / "outbox")
    )
    assert result["status"] == "ok"
    assert gap.isoformat() in requested  # looked back 30 days and fetched the gap
    assert table(replay_env, "SELECT count(*) FROM sightings WHERE digest_date = '2025-06-10'") == [
        (12,)
    ]


KILL_DRIVER = """
import sys
from flows.cli import main
sys.exit(main(["--db", sys.argv[1], "backfill", "--start", sys.argv[2], "--end", sys.argv[3],
               "--workers", "2"]))
"""


def test_a_backfill_killed_half_way_resumes_without_duplicates(httpserver, replay_env, tmp_path):
    """SIGKILL the whole process group mid-backfill, then run it again to completion."""
    import threading

    release = threading.Event()
    held = date(2025, 6, 16)

    def held_back(day: date) -> list:
        if day >= held:
            release.wait(60)  # later days wait: the kill lands while they are in flight
        return recorded_day(day)

    requested = serve_days(httpserver, answer=held_back)
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    args = [sys.executable, "-c", KILL_DRIVER, str(replay_env), START.isoformat(), END.isoformat()]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(d >= held.isoformat() for d in requested):
        time.sleep(0.2)
    time.sleep(2)  # let the days already answered be loaded
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    release.set()
    loaded = _loaded_days(replay_env)
    assert 1 <= loaded < 30, loaded

    from flows.warehouse import Warehouse

    with Warehouse.open(replay_env) as wh:
        assert wh.integrity_problems() == []
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sightings = table(
        replay_env, "SELECT count(*), count(DISTINCT (paper_id, digest_date)) FROM sightings"
    )
    assert sightings == [(264, 264)]
    assert table(replay_env, "SELECT count(*) FROM day_loads") == [(30,)]
    assert table(replay_env, "SELECT status FROM runs ORDER BY run_id") == [("abandoned",), ("ok",)]


def _loaded_days(db: Path) -> int:
    try:
        return table(db, "SELECT count(*) FROM day_loads")[0][0]
    except duckdb.Error:  # not created yet, or held by the writer
        return 0


def test_serve_builds_the_deployments_without_blocking(prefect_harness) -> None:
    from flows.backfill import build_deployments
    from flows.config import ConfigError, Settings

    daily, backfill = build_deployments(Settings(), cron="30 6 * * 1-5", timezone="Europe/Paris")
    assert (daily.name, backfill.name) == ("daily", "backfill")
    [schedule] = daily.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 6 * * 1-5", "Europe/Paris")
    assert not backfill.schedules
    with pytest.raises(ConfigError, match="unknown timezone 'Mars/Olympus'"):
        build_deployments(Settings(), timezone="Mars/Olympus")


def test_backfill_on_a_dask_cluster(prefect_harness, httpserver, replay_env) -> None:
    """Fetch tasks on a real distributed.LocalCluster; the warehouse writes stay in the flow."""
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.backfill import backfill

    serve_days(httpserver)
    with LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
    ) as c:
        on_dask = backfill.with_options(task_runner=DaskTaskRunner(address=c.scheduler_address))
        result = on_dask(start="2025-06-02", end="2025-06-08", source="api", db=str(replay_env))
    assert result["counts"]["loaded"] == 7
    assert table(replay_env, "SELECT count(*) FROM sightings") == [(60,)]


def test_a_day_whose_fetch_failed_is_fetched_again_in_a_later_round(
    prefect_harness, httpserver, replay_env, monkeypatch
):
    from flows.backfill import backfill

    monkeypatch.setenv("PAPERDIGEST_TASK_RETRIES", "1")
    monkeypatch.setenv("PAPERDIGEST_TASK_RETRY_DELAY", "0")
    flaky, answered = date(2025, 6, 4), []

    def first_time_down(request: Request) -> Response:
        day = date.fromisoformat(request.args["date"])
        answered.append(day)
        if day == flaky and answered.count(flaky) <= 2:  # the first round: asked, retried once
            return Response("upstream error", status=500)
        return Response(json.dumps(recorded_day(day)), content_type="application/json")

    httpserver.expect_request("/api/daily_papers").respond_with_handler(first_time_down)
    result = backfill(start="2025-06-02", end="2025-06-06", source="api", db=str(replay_env))
    assert result["status"] == "ok"
    assert [d.status for d in result["days"]] == ["loaded"] * 5
    assert answered.count(flaky) == 3  # two answers of 500 in the first round, one in the next
    assert table(replay_env, "SELECT count(*) FROM day_loads") == [(5,)]


def test_batches_are_consecutive_days_a_few_per_worker_and_at_most_two_months():
    from flows.backfill import MAX_BATCH_DAYS, batches_of

    days = [START + timedelta(n) for n in range(1096)]
    batches = batches_of(days, workers=4)
    assert [d for batch in batches for d in batch] == days
    assert {len(b) for b in batches[:-1]} == {MAX_BATCH_DAYS} == {62}
    assert [len(b) for b in batches_of(days[:30], workers=2)] == [4] * 7 + [2]
    assert batches_of(days[:1], workers=4) == [[START]]


def test_fetch_tasks_carry_no_tag():
    from flows.backfill import fetch_backfill_days

    # A tag makes Prefect start its concurrency-lease service and lease a slot for every task
    # run, even with no limit set: 2.2 s before a three-year backfill's first fetch.
    assert not fetch_backfill_days.tags


def test_batches_are_bounded_by_bytes_as_well_as_days(
    prefect_harness, httpserver, replay_env, monkeypatch
):
    from flows import backfill as backfill_module
    from flows.warehouse import Warehouse

    requested = serve_days(httpserver)
    # one byte: every task hands back after its first day, and the rest of its days go back
    monkeypatch.setattr(backfill_module, "MAX_BATCH_BYTES", 1)
    batches, save_pages = [], Warehouse.save_pages

    def saving(wh: Warehouse, pages, *args, **kwargs):
        batches.append({raw.digest_date for raw, _ in pages})
        return save_pages(wh, pages, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "save_pages", saving)
    result = backfill_module.backfill(
        start=START.isoformat(), end=END.isoformat(), source="api", db=str(replay_env)
    )
    assert result["status"] == "ok" and result["counts"]["loaded"] == 30
    assert len(batches) == 30 and all(len(days) == 1 for days in batches)
    assert sorted(requested) == sorted({*requested}) and len(requested) == 30  # each day once
    assert table(replay_env, "SELECT count(*) FROM sightings") == [(22 * 12,)]
    assert table(replay_env, "SELECT count(*) FROM day_loads") == [(30,)]


def test_fetch_days_stops_once_it_holds_max_bytes():
    from flows.models import RawPage
    from flows.pipeline import fetch_days

    class Client:
        def __init__(self) -> None:
            self.asked: list[date] = []

        def fetch_day(self, day: date, source: str) -> list[RawPage]:
            self.asked.append(day)
            return [RawPage("api", f"/api/daily_papers?date={day}", b"[]" * 50, day)]

    days = [START + timedelta(n) for n in range(10)]
    client = Client()
    assert [d.day for d in fetch_days(client, days, "api", max_bytes=250)] == days[:3]
    assert client.asked == days[:3]  # 100 bytes a day: the third day reaches 250
    assert [d.day for d in fetch_days(client, days, "api")] == days  # no bound: every day
    assert [d.day for d in fetch_days(client, days, "api", max_bytes=1)] == days[:1]
    assert [d.day for d in fetch_days(client, days, "api", max_bytes=0)] == days[:1]
