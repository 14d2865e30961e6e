"""Replays tell the truth (issue #17): recorded days replayed today read as they did on the day.

2026-08-13 → 08-14 → 08-17 go through `import`, `run --offline` and a backfill from a replay
server, at today's wall clock (no clock is faked). The expected digests come from the pages
alone (`tests.replay_capture`): ages in hours from the listing morning, gains since the previous
capture, late arrivals; never the months between the recording and the test run.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows import cli
from flows.diff import DiffSettings, compute_diff
from flows.render import render_digest
from flows.warehouse import Warehouse
from tests.replay_capture import (
    AUG13,
    AUG14,
    AUG17,
    MORNING,
    captures,
    expected_digests,
    write_capture,
)
from tests.test_render import SETTINGS as RENDER_SETTINGS
from tests.test_render import check_golden

pytestmark = pytest.mark.prefect


@pytest.fixture
def env(monkeypatch, tmp_path: Path) -> Path:
    """No subscribers file: the digest goes to me@localhost, in the outbox."""
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "none.json"))
    return tmp_path


def cli_ok(*args: str) -> None:
    assert cli.main(list(args)) == 0, args


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def diff_of(db: Path, run: int, capsys) -> list[tuple[str, str, str, int]]:
    """`paperdigest diff --run N --json` as (paper, section, reason, upvotes) in its order."""
    capsys.readouterr()
    cli_ok("--db", str(db), "diff", "--run", str(run), "--json")
    digest = json.loads(capsys.readouterr().out)
    return [
        (p["paper_id"], section, p["reason"], p["upvotes"])
        for section in ("trending", "late", "new")
        for p in digest[section]
    ]


def replay(db: Path, outbox: Path, folder: Path) -> None:
    """The user's replay: import 08-13, then the 08-14 and 08-17 mornings offline."""
    saved = {day: write_capture(folder / str(day), pages) for day, pages in captures().items()}
    base = ["--db", str(db), "--outbox", str(outbox)]
    cli_ok(*base, "import", str(saved[AUG13]), "--as-of", "2026-08-13T09:00Z")
    for day in (AUG14, AUG17):
        cli_ok(*base, "run", "--offline", str(saved[day]), "--date", str(day),
               "--as-of", MORNING[day].isoformat())  # fmt: skip


def test_import_and_offline_runs_give_the_reasons_of_the_day(prefect_harness, env, capsys):
    db, outbox = env / "papers.duckdb", env / "outbox"
    replay(db, outbox, env / "saved")
    expected = expected_digests([AUG13, AUG14, AUG17])
    for run, digest in zip((2, 3), expected, strict=True):
        assert diff_of(db, run, capsys) == [
            (e.paper_id, e.section, e.reason, e.upvotes) for e in digest
        ]
    # the model is not vacuous: first sightings aged 9 h, gains since Thu and Fri 09:00 with
    # rank moves, "since last mailed", and the 5 papers added to Aug 14 after its email
    reasons = [e.reason for digest in expected for e in digest]
    assert "61 upvotes in its first 9 h" in reasons[0]  # not "in its first 113 days"
    assert any(r.startswith("+40 upvotes since Thu 09:00, #1 → #1 on Aug 13") for r in reasons)
    assert any(r.endswith("(+36 since last mailed)") for r in reasons)
    assert [e.section for e in expected[1]].count("late") == 5
    # what the reader got says the same: every reason is in the mailed text
    for day, digest in zip((AUG14, AUG17), expected, strict=True):
        [eml] = outbox.glob(f"{day}_*.eml")
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        mailed = " ".join(message.get_body(preferencelist=("plain",)).get_content().split())
        for e in digest:
            if e.section != "new":
                assert e.reason in mailed, e.reason
        assert not re.search(r"\d+ days", mailed)  # no age beyond the data
    # every page's capture time is the stated morning, not its load time
    stated = "SELECT DISTINCT captured_at, capture_basis, capture_estimated FROM pages ORDER BY 1"
    assert rows(db, stated) == [(MORNING[d], "as-of", False) for d in (AUG13, AUG14, AUG17)]
    capsys.readouterr()
    cli_ok("--db", str(db), "status")
    assert "captured 2026-08-17 09:00 UTC (as-of)" in capsys.readouterr().out


def test_a_replayed_day_renders_its_golden_email(prefect_harness, env):
    db = env / "papers.duckdb"
    replay(db, env / "outbox", env / "saved")
    with Warehouse.open(db) as wh:
        digest = compute_diff(wh, run_id=3, digest_date=AUG17, since_run=2, settings=DiffSettings())
    assert digest.as_of == MORNING[AUG17]
    rendered = render_digest(digest, settings=RENDER_SETTINGS)
    check_golden("digest_replayed_2026-08-17.html", rendered.html)
    check_golden("digest_replayed_2026-08-17.txt", rendered.text)
    assert not re.search(r"\d+ days", rendered.text)


def test_saved_pages_without_as_of_say_their_times_are_estimated(prefect_harness, env, capsys):
    db = env / "papers.duckdb"
    saved = {day: write_capture(env / str(day), pages) for day, pages in captures().items()}
    cli_ok("--db", str(db), "import", str(saved[AUG13]))
    cli_ok("--db", str(db), "--outbox", str(env / "outbox"), "run", "--offline", str(saved[AUG14]),
           "--date", "2026-08-14")  # fmt: skip
    # each page is estimated at its digest day's end (the pages state nothing later)
    assert rows(
        db, "SELECT DISTINCT digest_date, captured_at, capture_basis FROM pages ORDER BY 1"
    ) == [
        (AUG13, datetime(2026, 8, 13, 23, 59, tzinfo=UTC), "digest-day"),
        (AUG14, datetime(2026, 8, 14, 23, 59, tzinfo=UTC), "digest-day"),
    ]
    digest = diff_of(db, 2, capsys)
    first = [(pid, reason) for pid, section, reason, _ in digest if "first sighting" in reason]
    gains = [reason for _, _, reason, _ in digest if reason.startswith("+")]
    assert first and gains
    for pid, reason in first:  # no age: the capture time is a guess
        upvotes = {p["paper"]["id"]: p["paper"]["upvotes"] for p in captures()[AUG14][
            "daily_papers_2026-08-14"]}[pid]  # fmt: skip
        assert reason == (
            f"{upvotes} upvotes on the Aug 14 list "
            "(first sighting; capture time estimated, so no age is given)"
        )
    assert all("since an earlier capture (its time is estimated)" in r for r in gains)


def test_a_backfill_from_a_replay_server_is_timed_by_the_servers_clock(
    prefect_harness, env, httpserver, monkeypatch, capsys
):
    """Today's backfill of the three days: each page is captured now (the server's Date), so a
    first sighting's age is the months since its listing morning, which is the truth."""
    from tests.replay import serve_days

    latest = captures()[AUG17] | {"daily_papers_2026-08-13": captures()[AUG14][
        "daily_papers_2026-08-13"]}  # fmt: skip
    by_day = {AUG13: "daily_papers_2026-08-13", AUG14: "daily_papers_2026-08-14",
              AUG17: "daily_papers_2026-08-17"}  # fmt: skip
    serve_days(httpserver, answer=lambda day: latest[by_day[day]] if day in by_day else [])
    monkeypatch.setenv("PAPERDIGEST_HF_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("PAPERDIGEST_RATE_LIMIT", "off")  # a local mirror: no client-side limit
    monkeypatch.setenv("PAPERDIGEST_OUTBOX", str(env / "outbox"))
    db = env / "papers.duckdb"
    before = datetime.now(UTC).replace(microsecond=0)
    cli_ok("--db", str(db), "backfill", "--start", "2026-08-13", "--end", "2026-08-17", "--email")
    after = datetime.now(UTC)
    pages = rows(db, "SELECT digest_date, captured_at, capture_basis FROM pages "
                     "WHERE n_entries > 0 ORDER BY 1")  # fmt: skip
    assert [p[0] for p in pages] == [AUG13, AUG14, AUG17]
    for _, captured, basis in pages:
        assert basis == "date-header" and before <= captured <= after
    captured_at = {day: captured for day, captured, _ in pages}
    digest = diff_of(db, 2, capsys)
    trending = [(pid, reason) for pid, section, reason, _ in digest if section == "trending"]
    assert trending
    listed = {p["paper"]["id"]: (day, p["paper"]["upvotes"])
              for day, stem in by_day.items() for p in latest[stem]}  # fmt: skip
    for pid, reason in trending:
        day, upvotes = listed[pid]
        age = captured_at[day] - datetime(day.year, day.month, day.day, tzinfo=UTC)
        assert age > timedelta(days=2)
        assert reason.startswith(
            f"{upvotes} upvotes in its first {age / timedelta(days=1):.0f} days"
        )
