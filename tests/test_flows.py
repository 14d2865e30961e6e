"""The real Prefect flows under `prefect_test_harness`, into temporary warehouses and outboxes."""

from __future__ import annotations

import email
import email.policy
from datetime import date
from pathlib import Path

import duckdb
import pytest

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
DAY = date(2025, 11, 3)

pytestmark = pytest.mark.prefect


@pytest.fixture
def places(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    db, outbox = tmp_path / "papers.duckdb", tmp_path / "outbox"
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "no-subscribers.json"))
    monkeypatch.setenv("PAPERDIGEST_MAIL_TO", "reader@example.org")
    return db, outbox


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def only_email(outbox: Path) -> email.message.EmailMessage:
    emls = sorted(outbox.glob("*.eml"))
    assert len(emls) == 1, emls
    return email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)


def test_daily_flow_offline_loads_diffs_renders_and_delivers(prefect_harness, places) -> None:
    from flows.daily import daily_digest

    db, outbox = places
    result = daily_digest(
        date=DAY.isoformat(), offline_dir=str(SEEDS), db=str(db), outbox=str(outbox)
    )
    assert result["status"] == "ok"
    assert result["summary"].startswith("3 pages, 409 entries, 391 papers (391 new) → ")
    # The run's last step published the archive beside the warehouse; the line ends with it.
    site = db.parent / "site"
    assert result["summary"].endswith(f"; site → {site / 'index.html'}")
    assert (site / "index.html").is_file() and (site / "days" / f"{DAY}.html").is_file()
    assert result["site_files"] == result["site_written"] > 391  # a page per paper, and more

    pages = rows(
        db,
        "SELECT source, fmt, location, digest_date, n_entries, n_rejected FROM pages "
        "ORDER BY page_id",
    )
    assert pages == [
        ("text", "text", str(SEEDS / "000_9e473fa17dbd8c2f.txt"), DAY, 229, 0),
        ("text", "text", str(SEEDS / "001_817413739b35ed18.txt"), DAY, 113, 0),
        ("text", "text", str(SEEDS / "002_55e7857e2ab8d0d2.txt"), date(2025, 3, 11), 67, 0),
    ]  # fmt: skip
    assert rows(db, "SELECT count(*), count(DISTINCT paper_id) FROM sightings") == [(409, 391)]
    reason_rank = rows(
        db,
        "SELECT title, n_authors, published_on, upvotes, first_seen_run FROM paper_latest "
        "WHERE title LIKE 'ReasonRank%'",
    )
    title = "ReasonRank: Empowering Passage Ranking with Strong Reasoning Ability"
    assert reason_rank == [(title, 7, date(2025, 8, 9), 4, 1)]
    # The saved pages' capture times are their digest days (estimated): the Mar 11 page is not
    # news on Nov 3, so the digest holds the papers of the two Nov 3 pages.
    [(on_the_day,)] = rows(
        db, "SELECT count(DISTINCT paper_id) FROM sightings WHERE digest_date = '2025-11-03'"
    )
    assert on_the_day == 341
    run = rows(db, "SELECT run_id, flow, status, counts->>'new', counts->>'sent' FROM runs")
    assert run == [(1, "daily", "ok", str(on_the_day), "1")]
    assert rows(db, "SELECT recipient, digest_key, state FROM sends") == [
        ("reader@example.org", "2025-11-03", "sent")
    ]

    message = only_email(outbox)
    assert message["To"] == "reader@example.org"
    assert message["Subject"].startswith("Daily Papers · Mon Nov 3")
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    # a title from each of the two Nov 3 pages, none from the Mar 11 page
    for title in (
        "DualPrompt: Complementary Prompting",  # 000
        "ReasonRank: Empowering Passage Ranking",  # 001
    ):
        assert title in html or title in text, title
    # 002 was captured on Mar 11: its papers that no Nov 3 page lists are history, not news
    for title in ("VLANet: Video-Language Alignment", "PyMAF-X: Towards Well-aligned"):
        assert title not in html + text, title
    # A busy day: the first 25 new papers keep their summary (the saved text pages name no
    # authors or links), the rest are listed compactly under the budget.
    assert html.count('class="excerpt"') == 25
    assert html.count('class="compact-item"') > 0


def test_a_second_daily_run_changes_nothing_and_sends_nothing(prefect_harness, places) -> None:
    from flows.daily import daily_digest

    db, outbox = places
    kwargs = {
        "date": DAY.isoformat(),
        "offline_dir": str(SEEDS),
        "db": str(db),
        "outbox": str(outbox),
    }
    daily_digest(**kwargs)
    tables = ("pages", "papers", "sightings", "sends", "digest_items")
    before = {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    eml_before = {p.name: p.read_bytes() for p in outbox.iterdir()}
    result = daily_digest(**kwargs)
    assert result["status"] == "ok"
    assert result["summary"] == (
        "3 pages (3 already loaded), 409 entries, 391 papers (0 new); "
        f"email: 1 already sent earlier, not sent again; site → {db.parent / 'site' / 'index.html'}"
    )
    assert result["site_written"] == 0 and result["site_files"] > 391
    assert {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in tables} == before
    assert {p.name: p.read_bytes() for p in outbox.iterdir()} == eml_before


def test_import_flow_loads_every_seed_exactly(prefect_harness, places) -> None:
    from flows.daily import import_pages

    db, _ = places
    result = import_pages(paths=[str(SEEDS)], date=DAY.isoformat(), db=str(db))
    assert result["summary"] == "3 pages, 409 entries, 391 papers (391 new)"
    assert result["failures"] == []
    assert rows(db, "SELECT count(*) FROM papers") == [(391,)]
    assert rows(db, "SELECT count(*) FROM sightings") == [(409,)]
    assert rows(db, "SELECT flow, status FROM runs") == [("import", "ok")]


def test_import_flow_reports_a_bad_file_and_loads_the_rest(
    prefect_harness, places, tmp_path
) -> None:
    from flows.daily import import_pages

    db, _ = places
    bad = tmp_path / "challenge.html"
    bad.write_text("<html><head><title>Just a moment...</title></head><body>cf</body></html>")
    result = import_pages(paths=[str(SEEDS / "001_817413739b35ed18.txt"), str(bad)], db=str(db))
    assert len(result["failures"]) == 1
    assert result["failures"][0].startswith(f"{bad}: ")
    assert rows(db, "SELECT count(*) FROM sightings") == [(113,)]
    assert rows(db, "SELECT page_id, location, position FROM rejects") == [(None, str(bad), 0)]


def test_the_cli_freezes_prefects_import_once_and_exits_clean() -> None:
    """Prefect's objects are frozen (not walked by every collection), DuckDB's are not (its
    bindings would print them as leaks at exit), and a second call freezes nothing more."""
    import subprocess
    import sys

    code = (
        "import gc, sys; from flows.cli import _prefect_flows; _prefect_flows(); "
        "frozen = gc.get_freeze_count(); _prefect_flows(); import duckdb; "
        "con = duckdb.connect(); con.execute('SELECT 1').fetchall(); con.close(); "
        "print(frozen, gc.get_freeze_count(), 'flows.ranking' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    first, second, ranking = done.stdout.split()
    assert int(first) > 10_000 and second == first
    assert ranking == "False"  # scikit-learn and SciPy only for readers with a library
    assert "leak" not in done.stderr, done.stderr


def test_flow_modules_never_import_the_cli() -> None:
    """The CLI imports the flows, never the other way (issue #16: `flows/cli.py` and
    `flows/backfill.py` imported each other; Prefect's environment is `flows.prefect_env`)."""
    import subprocess
    import sys

    code = (
        "import sys; import flows.daily, flows.backfill, flows.heartbeats, flows.prefect_server; "
        "print('flows.cli' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False"]
