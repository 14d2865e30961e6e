"""The site's outline (`warehouse/queries/site_outline.sql`): each change to what a page is
rendered from moves the fingerprints of exactly the pages that show it, and nothing else does."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from site_build import FIRST_DIGEST, build_warehouse

from flows.site_outline import SiteOutline, read_site_outline
from flows.warehouse import Warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed pages, the recorded API days and two mailed digests (tests change copies)."""
    folder = tmp_path_factory.mktemp("outline")
    build_warehouse(folder / "papers.duckdb", folder / "pages")
    return folder / "papers.duckdb"


@pytest.fixture
def db(warehouse: Path, tmp_path: Path) -> Path:
    """A copy of the warehouse a test may change."""
    copy = tmp_path / "papers.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    return copy


def outline(db: Path, *changes: str, **params: object) -> SiteOutline:
    """The outline after running `changes` (SQL with bound parameters) on the warehouse."""
    with Warehouse.open(db) as wh:
        for sql in changes:
            wh.con.execute(sql, params)
        return read_site_outline(wh)


def moved(before: SiteOutline, after: SiteOutline) -> tuple[set[str], set[str]]:
    """The papers and the days whose fingerprints differ."""
    papers = {i for i, p in after.papers.items() if before.papers[i].fingerprint != p.fingerprint}
    days = {
        d.day.isoformat()
        for d, e in zip(before.days, after.days, strict=True)
        if d.fingerprint != e.fingerprint
    }
    return papers, days


def mailed_paper(before: SiteOutline) -> tuple[str, set[str]]:
    """A paper of the first mailed digest, and every day page that shows it."""
    paper_id = next(d for d in before.days if d.day == FIRST_DIGEST).paper_ids[0]
    return paper_id, {d.day.isoformat() for d in before.days if paper_id in d.paper_ids}


def test_the_outline_lists_every_day_page_and_the_papers_it_shows(db: Path) -> None:
    site = outline(db)
    assert [d.day for d in site.days] == sorted((d.day for d in site.days), reverse=True)
    first = next(d for d in site.days if d.day == FIRST_DIGEST)
    assert first.mailed and first.paper_ids
    assert not all(d.mailed for d in site.days)  # the imported seed day was not mailed
    assert {i for d in site.days for i in d.paper_ids} == set(site.papers)
    assert outline(db) == site  # the same warehouse, the same fingerprints


def test_a_days_content_changed_when_its_digest_went_out_or_its_list_was_loaded(db: Path) -> None:
    """The feeds' first `updated` time of a day."""
    site = outline(db)
    with Warehouse.open(db) as wh:
        sent = dict(wh.con.execute("SELECT digest_date, delivered_at FROM digests").fetchall())
        loaded = dict(
            wh.con.execute(
                "SELECT digest_date, max(fetched_at) FROM pages WHERE n_entries > 0 GROUP BY ALL"
            ).fetchall()
        )
    assert loaded[FIRST_DIGEST] > sent[FIRST_DIGEST]  # re-loaded by the next day's run
    for day in site.days:
        assert day.changed_at == (sent[day.day] if day.mailed else loaded[day.day]), day.day


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE papers SET abstract = 'A revised abstract.' WHERE paper_id = $id",
        "UPDATE sightings SET upvotes = upvotes + 1 WHERE paper_id = $id",
        "UPDATE digest_items SET upvotes = upvotes + 1 WHERE paper_id = $id",
    ],
    ids=["paper text", "sighting", "mailing"],
)
def test_a_change_moves_the_pages_that_show_the_paper(db: Path, change: str) -> None:
    before = outline(db)
    paper_id, shown_on = mailed_paper(before)
    after = outline(db, change, id=paper_id)
    assert moved(before, after) == ({paper_id}, shown_on)


def test_a_changed_digest_moves_its_day_and_its_papers(db: Path) -> None:
    """Its papers' pages too: a later digest's reasons read their earlier mailings."""
    before = outline(db)
    mailed = next(d for d in before.days if d.day == FIRST_DIGEST)
    sql = (
        "UPDATE digests SET delivered_at = delivered_at + INTERVAL 1 MINUTE "
        "WHERE digest_date = $day"
    )
    papers, days = moved(before, outline(db, sql, day=FIRST_DIGEST))
    assert papers == set(mailed.paper_ids)
    assert days == {d.day.isoformat() for d in before.days if papers & set(d.paper_ids)}
    assert len(days) < len(before.days)


def assert_outline_reads_as_the_site_queries(db: Path) -> None:
    """The outline's days, papers and dates are those the site's own queries give."""
    site = outline(db)
    with Warehouse.open(db) as wh:
        items = wh.site_digest_items(100)
        latest = {row["paper_id"]: row["digest_date"] for row in wh.site_papers()}
        listed = wh.con.execute(
            "SELECT digest_date, list(DISTINCT paper_id ORDER BY paper_id) FROM sightings "
            "WHERE digest_date IS NOT NULL GROUP BY ALL"
        ).fetchall()
    mailed: dict = {}
    for item in items:
        mailed.setdefault(item["d_date"], set()).add(item["paper_id"])
    for day in site.days:
        assert day.mailed == (day.day in mailed), day.day
        expected = mailed[day.day] if day.mailed else set(dict(listed).get(day.day, []))
        assert set(day.paper_ids) == expected, day.day
    assert {i: p.digest_date for i, p in site.papers.items()} == {i: latest[i] for i in site.papers}


def test_the_outline_agrees_with_the_site_queries(db: Path) -> None:
    assert_outline_reads_as_the_site_queries(db)


def test_a_papers_latest_sighting_without_a_date_dates_it_none(db: Path) -> None:
    """A page that stated no date (an import without --date) seen last: no date, as the site's
    paper query says (the search index shows none)."""
    before = outline(db)
    paper_id = next(d for d in before.days if not d.mailed).paper_ids[0]
    with Warehouse.open(db) as wh:
        add_undated_sighting(wh, paper_id, page_id=900, at="2027-01-01 08:00:00+00")
    assert outline(db).papers[paper_id].digest_date is None
    assert_outline_reads_as_the_site_queries(db)


def test_a_digest_with_no_paper_seen_by_its_data_shows_the_days_list(db: Path) -> None:
    """site_digest_items.sql reads a digest as it went out: a paper counts only with a sighting
    captured by the digest's data, from a run no later than its own. With none, the day is
    listed, not mailed."""
    sql = "UPDATE digests SET captured_at = TIMESTAMPTZ '2000-01-01' WHERE digest_date = $day"
    day = next(d for d in outline(db, sql, day=FIRST_DIGEST).days if d.day == FIRST_DIGEST)
    assert not day.mailed and day.paper_ids
    assert_outline_reads_as_the_site_queries(db)


def add_undated_sighting(
    wh: Warehouse, paper_id: str, page_id: int, at: str, listed_on: date | None = None
) -> None:
    """A page that stated no digest date, loaded at `at`, listing the paper (under the date
    `listed_on` when its entry carried one)."""
    wh.con.execute(
        "INSERT INTO pages (page_id, run_id, source, fmt, location, digest_date, fetched_at, "
        "content_sha256, n_entries, n_rejected) "
        "VALUES ($page, 9, 'text', 'text', 'undated.txt', NULL, $at, $sha, 1, 0)",
        {"page": page_id, "at": at, "sha": f"undated-{page_id}"},
    )
    wh.con.execute(
        "INSERT INTO sightings (run_id, page_id, paper_id, digest_date, rank, upvotes, seen_at, "
        "captured_at, capture_estimated) VALUES (9, $page, $paper, $day, 1, 1, $at, $at, false)",
        {"page": page_id, "paper": paper_id, "at": at, "day": listed_on},
    )


def test_a_change_shared_by_two_sightings_moves_the_paper(db: Path) -> None:
    """A paper listed twice under a date with no page of its own: when a digest mailed for that
    date gives it one, both sightings now link to it, and the paper's page must change. (hash()
    mixes in by XOR: without hashing each row's hash again, the two changes cancel out.)"""
    day = date(2026, 8, 20)
    first = outline(db)
    paper_id = next(d for d in first.days if not d.mailed).paper_ids[0]
    other = next(d for d in first.days if d.mailed).paper_ids[0]
    with Warehouse.open(db) as wh:
        for page_id, hour in ((901, 1), (902, 2)):
            add_undated_sighting(wh, paper_id, page_id, f"2026-08-20 0{hour}:00:00+00", day)
    before = outline(db)
    assert day not in {d.day for d in before.days}
    with Warehouse.open(db) as wh:
        wh.con.execute(
            "INSERT INTO digests VALUES ('2026-08-20', $day, 9, $at, 1, 1, $at)",
            {"day": day, "at": "2026-08-20 09:00:00+00"},
        )
        wh.con.execute(
            "INSERT INTO digest_items VALUES ('2026-08-20', $paper, 'trending', 1, $at)",
            {"paper": other, "at": "2026-08-20 09:00:00+00"},
        )
    after = outline(db)
    assert day in {d.day for d in after.days}
    assert after.papers[paper_id].fingerprint != before.papers[paper_id].fingerprint
