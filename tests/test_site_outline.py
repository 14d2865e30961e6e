"""The site's outline (`warehouse/queries/site_outline.sql`): each change to what a page is
rendered from moves the fingerprints of exactly the pages that show it, and nothing else does."""

from __future__ import annotations

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
