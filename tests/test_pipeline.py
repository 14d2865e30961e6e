"""Plain pipeline steps, without Prefect."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flows.models import Paper, ParsedPage, RawPage
from flows.pipeline import RunTotals, days_to_fetch, deadman_warning, summary_line
from flows.warehouse import Warehouse

TODAY = date(2025, 7, 1)  # a Tuesday


def load_day(wh: Warehouse, day: date, n_papers: int) -> None:
    papers = tuple(
        Paper(f"2506.{day.day:02d}{j:03d}", f"T {day} {j}", "A.", j + 1, digest_date=day)
        for j in range(n_papers)
    )
    raw = RawPage("api", f"u?{day}", f"{day}:{n_papers}".encode(), day, datetime.now(UTC))
    wh.save_page(raw, ParsedPage("api", day, papers), wh.start_run("t"))


def test_days_to_fetch_adds_missing_and_empty_weekdays(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        for n in range(31):
            day = TODAY - timedelta(n)
            if day in (date(2025, 6, 10), date(2025, 6, 11)):
                continue  # two days never loaded
            empty = day.weekday() >= 5 or day == date(2025, 6, 12)  # weekends, and one weekday
            load_day(wh, day, 0 if empty else 3)
        days = days_to_fetch(wh, TODAY, refetch_days=7, gap_days=30)
    recent = [TODAY - timedelta(n) for n in range(8)]
    assert days == [*recent, date(2025, 6, 12), date(2025, 6, 11), date(2025, 6, 10)]


def test_days_to_fetch_without_gap_repair(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        assert days_to_fetch(wh, TODAY, refetch_days=2, gap_days=0) == [
            TODAY,
            TODAY - timedelta(1),
            TODAY - timedelta(2),
        ]


def test_deadman_switch_counts_weekdays_since_the_last_digest(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        assert deadman_warning(wh, TODAY, 2) is None  # nothing was ever due
        friday = datetime(2025, 6, 27, 7, 0, tzinfo=UTC)
        wh.record_digest("2025-06-27", date(2025, 6, 27), 1, [], 1, friday)
        assert deadman_warning(wh, date(2025, 6, 30), 2) is None  # Monday: 1 weekday missed
        assert deadman_warning(wh, TODAY, 2) == (
            "no digest has gone out for 2 weekdays (last on 2025-06-27 07:00 UTC)"
        )
        assert deadman_warning(wh, TODAY, 0) is None  # switched off


def test_summary_line_says_what_happened() -> None:
    totals = RunTotals(pages=3, pages_skipped=1, entries=409, rejected=2, new_papers=5)
    totals.failures.append("x: bad")
    assert summary_line(totals, 391, "outbox/a.html") == (
        "3 pages (1 already loaded), 409 entries, 391 papers (5 new), 2 quarantined, 1 failed"
        " → outbox/a.html"
    )
    assert summary_line(RunTotals(), 0, None, "nothing new: no email (on_empty=skip)") == (
        "0 pages, 0 entries, 0 papers (0 new); email: nothing new: no email (on_empty=skip)"
    )
