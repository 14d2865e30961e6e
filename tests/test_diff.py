"""The diff on recorded runs: the same day fetched again with added papers and new upvotes.

Runs are derived from the real API fixtures of 2026-08-13/14: run 1 sees the first 15 papers
of Aug 14 and its digest goes out; run 2 (a day later) sees all 23 (8 late arrivals), changed
upvotes, and an Aug 15 page made of Aug 13 papers plus one Aug 14 paper (a paper on two dates).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from flows.diff import DiffSettings, compute_diff, resolve_since
from flows.models import RawPage
from flows.pipeline import ingest_page
from flows.warehouse import Warehouse

FIXTURES = Path(__file__).parent / "fixtures" / "hf-api"
AUG13, AUG14, AUG15 = date(2026, 8, 13), date(2026, 8, 14), date(2026, 8, 15)
T1 = datetime(2026, 8, 14, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(days=1)
T3 = T2 + timedelta(hours=12)
SETTINGS = DiffSettings(window_days=7, min_gain=5, trending_limit=10)


def items(day: date) -> list[dict]:
    return json.loads((FIXTURES / f"daily_papers_{day}.json").read_text())


def with_upvotes(item: dict, upvotes: int) -> dict:
    item = copy.deepcopy(item)
    item["paper"]["upvotes"] = upvotes
    return item


def page(day: date, day_items: list[dict], at: datetime) -> RawPage:
    body = json.dumps(day_items).encode()
    url = f"https://huggingface.co/api/daily_papers?date={day}"
    return RawPage("api", url, body, day, at, 200, "application/json")


def pid(item: dict) -> str:
    return item["paper"]["id"]


@pytest.fixture
def recorded(db_path: Path):
    """Three runs as described in the module docstring; yields (warehouse, runs, ids)."""
    aug14 = [with_upvotes(it, 3) for it in items(AUG14)]  # quiet figures, then chosen gains
    aug14[0] = with_upvotes(aug14[0], 20)
    aug14[3] = with_upvotes(aug14[3], 10)
    aug14[5] = with_upvotes(aug14[5], 40)
    aug14[7] = with_upvotes(aug14[7], 39)
    aug15 = [with_upvotes(it, 2) for it in items(AUG13)[:5]]
    aug15[2] = with_upvotes(aug15[2], 45)
    aug15.append(copy.deepcopy(aug14[1]))  # an Aug 14 paper listed again on Aug 15
    with Warehouse.open(db_path) as wh:
        run1 = wh.start_run("daily")
        ingest_page(wh, page(AUG14, aug14[:15], T1), run1, AUG14)
        digest1 = compute_diff(wh, run_id=run1, digest_date=AUG14, as_of=T1, settings=SETTINGS)
        _record(wh, digest1, run1, T1 + timedelta(minutes=5))

        run2 = wh.start_run("daily")
        second = copy.deepcopy(aug14)
        second[0] = with_upvotes(second[0], 70)  # +50 in 24 h
        second[3] = with_upvotes(second[3], 40)  # +30 in 24 h
        second[5] = with_upvotes(second[5], 42)  # +2: below the minimum gain
        second[7] = with_upvotes(second[7], 30)  # lost 10 (upvotes can be withdrawn)
        ingest_page(wh, page(AUG14, second, T2), run2, AUG15)
        ingest_page(wh, page(AUG15, aug15, T2), run2, AUG15)
        digest2 = compute_diff(wh, run_id=run2, digest_date=AUG15, as_of=T2, settings=SETTINGS)
        _record(wh, digest2, run2, T2 + timedelta(minutes=5))

        run3 = wh.start_run("daily")
        third = copy.deepcopy(second)
        third[0] = with_upvotes(third[0], 73)  # +3: not enough
        third[7] = with_upvotes(third[7], 38)  # +8 on the last sighting, -1 since last mailed
        ingest_page(wh, page(AUG14, third, T3), run3, AUG15)
        digest3 = compute_diff(wh, run_id=run3, digest_date=AUG15, as_of=T3, settings=SETTINGS)
        yield wh, (digest1, digest2, digest3), (aug14, aug15)


def _record(wh: Warehouse, digest, run_id: int, at: datetime) -> None:
    mailed = [
        (p.paper_id, section, p.upvotes)
        for section, papers in (
            ("trending", digest.trending),
            ("new", digest.new),
            ("late", digest.late),
        )
        for p in papers
    ]
    wh.record_digest(digest.digest_date.isoformat(), digest.digest_date, run_id, mailed, 1, at)


def test_first_run_everything_is_new_and_big_papers_trend_by_age(recorded) -> None:
    _, (digest1, _, _), (aug14, _) = recorded
    # single sightings: ranked by upvotes per hour since the digest day began (9 h)
    assert [p.paper_id for p in digest1.trending] == [
        pid(aug14[5]),
        pid(aug14[7]),
        pid(aug14[0]),
        pid(aug14[3]),
    ]
    assert digest1.trending[0].reason == (
        "40 upvotes in its first 9 h (first sighting: ranked by upvotes for its age, "
        "no earlier figure to compare)"
    )
    trending = {p.paper_id for p in digest1.trending}
    assert [p.paper_id for p in digest1.new] == [
        pid(it) for it in aug14[:15] if pid(it) not in trending
    ]
    assert digest1.late == ()


def test_second_run_new_trending_and_late_arrivals(recorded) -> None:
    _, (_, digest2, _), (aug14, aug15) = recorded
    assert [(p.paper_id, p.upvote_gain, p.reason) for p in digest2.trending] == [
        (pid(aug15[2]), None, "45 upvotes in its first 9 h (first sighting: ranked by upvotes "
                              "for its age, no earlier figure to compare)"),
        (pid(aug14[0]), 50, "+50 upvotes since Fri 09:00, #1 → #1 on Aug 14 "
                            "(+50 since last mailed)"),
        (pid(aug14[3]), 30, "+30 upvotes since Fri 09:00, #4 → #4 on Aug 14 "
                            "(+30 since last mailed)"),
    ]  # fmt: skip
    # the 8 papers added to Aug 14 after its email went out
    assert [p.paper_id for p in digest2.late] == [pid(it) for it in aug14[15:]]
    assert all(
        p.reason == "added to the Aug 14 list after that day's email went out" for p in digest2.late
    )
    # Aug 15's own papers; the Aug 14 paper listed again is one paper, not new again
    assert [p.paper_id for p in digest2.new] == [
        pid(it) for i, it in enumerate(aug15[:5]) if i != 2
    ]
    assert pid(aug15[5]) not in {p.paper_id for p in digest2.new + digest2.late + digest2.trending}


def test_a_mailed_paper_trends_again_only_when_it_gained_since_mailing(recorded) -> None:
    _, (_, _, digest3), _ = recorded
    # aug14[7]: +8 since its previous sighting, but 1 fewer than when it was last mailed
    # aug14[0]: +3, below the minimum gain
    assert digest3.trending == ()
    assert digest3.new == () and digest3.late == ()


def test_the_window_bounds_what_is_read(recorded) -> None:
    wh, _, _ = recorded
    later = T3 + timedelta(days=30)
    digest = compute_diff(wh, run_id=3, digest_date=AUG15, as_of=later, settings=SETTINGS)
    assert digest.trending == digest.new == digest.late == ()


def test_since_widens_what_counts_as_new(recorded) -> None:
    wh, _, (aug14, _) = recorded
    assert resolve_since(wh, "1") == 1
    assert resolve_since(wh, "2000-01-01") == 0
    digest = compute_diff(wh, run_id=2, digest_date=AUG15, as_of=T2, since_run=0, settings=SETTINGS)
    shown = {p.paper_id for p in digest.new + digest.trending + digest.late}
    assert shown >= {pid(it) for it in aug14[:15]}  # run 1's papers count as new again


def test_code_release_and_star_jump_are_changes(db_path: Path) -> None:
    day = items(AUG14)[:2]
    first = [copy.deepcopy(it) for it in day]
    first[0]["paper"].pop("githubRepo", None)
    first[1]["paper"]["githubStars"] = 10
    second = copy.deepcopy(day)
    second[1]["paper"]["githubStars"] = 500
    with Warehouse.open(db_path) as wh:
        r1 = wh.start_run("d")
        ingest_page(wh, page(AUG14, first, T1), r1, AUG14)
        r2 = wh.start_run("d")
        ingest_page(wh, page(AUG14, second, T2), r2, AUG14)
        digest = compute_diff(wh, run_id=r2, digest_date=AUG14, as_of=T2, settings=SETTINGS)
    assert [(c.paper_id, c.kind, c.detail) for c in digest.changes] == [
        (pid(day[0]), "code_released", f"code released: {day[0]['paper']['githubRepo']}"),
        (pid(day[1]), "stars_jump", "+490 GitHub stars (now 500)"),
    ]
