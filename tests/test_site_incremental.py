"""A run's incremental publish renders only the pages whose inputs changed, and leaves exactly
the files a full publish would: compared file by file after a next day's run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from site_build import (
    FIRST_DIGEST,
    FIXTURES,
    SECOND_DIGEST,
    add_second_digest,
    build_first_digest,
    publish,
)

from flows import pipeline, site
from flows.site import STATE_FILE, SiteSettings, iso_week, publish_site
from flows.site_outline import read_site_outline
from flows.warehouse import Warehouse

NOW = datetime(2026, 8, 15, 9, 30, tzinfo=UTC)
API_DIR = FIXTURES / "hf-api"


class _FixedClock(datetime):
    """`datetime` whose now() is NOW: both publishes date changed feed entries alike."""

    @classmethod
    def now(cls, tz=None):
        return NOW.astimezone(tz)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pages rendered ("day 2026-08-14", "week 2026-W33", "paper ID", "index"); a fixed
    clock."""
    rendered: list[str] = []
    page = site._Builder._page

    def spy(self, template, context, *args):
        rendered.append(template.split(".")[0] + "".join(f" {_name(a)}" for a in args[:1]))
        return page(self, template, context, *args)

    monkeypatch.setattr(site._Builder, "_page", spy)
    monkeypatch.setattr(site, "datetime", _FixedClock)
    return rendered


def _name(arg: object) -> str:
    """A day page's date, a week's key or a paper's id."""
    return str(arg.day) if isinstance(arg, site.DayDigest) else str(arg)


@pytest.fixture
def next_day(tmp_path: Path) -> tuple[Path, Path]:
    """A site published after the first digest, and the warehouse after the next day's run."""
    db = tmp_path / "papers.duckdb"
    build_first_digest(db)
    publish(db, tmp_path / "site")
    add_second_digest(db, tmp_path / "pages")
    return db, tmp_path / "site"


def publish_into(db: Path, out: Path, *, incremental: bool) -> site.PublishReport:
    with Warehouse.open(db) as wh:
        return publish_site(wh, SiteSettings(out), workers=1, incremental=incremental)


def site_files(out: Path) -> dict[str, bytes]:
    """Every file of a site but its state file, by path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != STATE_FILE
    }


def test_an_incremental_publish_leaves_the_files_of_a_full_publish(next_day, renders) -> None:
    db, out = next_day
    full = out.with_name("full")
    shutil.copytree(out, full)  # the same site the run found, published in full
    incremental = publish_into(db, out, incremental=True)
    n_incremental = len(renders)
    complete = publish_into(db, full, incremental=False)
    assert site_files(out) == site_files(full)  # file by file, feeds included
    assert sorted(incremental.written) == sorted(complete.written)
    assert incremental.files == complete.files and n_incremental < len(renders) - n_incremental
    rebuilt = out.with_name("rebuilt")
    publish_into(db, rebuilt, incremental=False)  # from nothing: same pages (feeds' times differ)
    pages = {k: v for k, v in site_files(rebuilt).items() if not k.startswith("feed.")}
    assert pages == {k: v for k, v in site_files(out).items() if not k.startswith("feed.")}


def test_only_the_pages_whose_inputs_changed_are_rendered(next_day, renders) -> None:
    db, out = next_day
    publish_into(db, out, incremental=True)
    # The new digest, the re-fetched day (and the new digest's "older" link), their week, and
    # the papers whose figures the re-fetch changed.
    refetched = json.loads((API_DIR / f"daily_papers_{FIRST_DIGEST}.json").read_text())
    on_page = {f"paper {item['paper']['id']}" for item in refetched}
    papers = {r for r in renders if r.startswith("paper ")}
    assert sorted(set(renders) - papers) == [
        f"day {FIRST_DIGEST}",
        f"day {SECOND_DIGEST}",
        "index",
        f"week {iso_week(SECOND_DIGEST)}",
    ]
    assert papers and papers <= on_page
    renders.clear()
    again = publish_into(db, out, incremental=True)
    assert renders == ["index"] and again.written == []  # nothing changed: no page rendered


def test_a_page_removed_or_edited_by_hand_is_rendered_again(next_day, renders) -> None:
    db, out = next_day
    publish_into(db, out, incremental=False)
    expected = site_files(out)
    day_page = out / "days" / f"{FIRST_DIGEST.isoformat()}.html"
    paper_page = next((out / "papers").glob("*.html"))
    day_page.write_text("edited by hand", encoding="utf-8")
    paper_page.unlink()
    report = publish_into(db, out, incremental=True)
    assert site_files(out) == expected
    assert sorted(report.written) == sorted(str(p.relative_to(out)) for p in (day_page, paper_page))


def test_new_templates_or_code_render_every_page_again(next_day, renders, monkeypatch) -> None:
    db, out = next_day
    publish_into(db, out, incremental=False)
    renders.clear()
    monkeypatch.setattr(site, "_code_fingerprint", lambda settings: "an upgrade")
    report = publish_into(db, out, incremental=True)
    n_pages = sum(1 for name in site_files(out) if name.startswith(("days/", "weeks/", "papers")))
    assert len(renders) == n_pages + 1  # every page, and the index
    assert report.written == []  # the same code in truth: same bytes, nothing rewritten


def test_a_runs_publish_is_incremental(next_day, renders) -> None:
    from flows.config import load_settings
    from flows.site import publish_after_run

    db, out = next_day
    settings = load_settings({"PAPERDIGEST_SITE_DIR": str(out)}, db=db)
    with Warehouse.open(db) as wh:
        publish_after_run(wh, settings)
        renders.clear()
        report = publish_after_run(wh, settings)
    assert renders == ["index"] and report.written == [] and report.error is None


def _load_without_digest(db: Path, files: list[Path]) -> None:
    """A run that loads pages and mails nothing (an import): their days are listed, not mailed."""
    with Warehouse.open(db) as wh:
        run = wh.start_run("import", {})
        outcomes = pipeline.ingest_files(wh, files, run, None, SECOND_DIGEST)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        wh.finish_run(run, "ok", {})


def _api_day(source: str, work: Path, name: str, edit=None) -> Path:
    """A recorded API day saved as `name`, changed by `edit` (applied to its item list)."""
    items = json.loads((API_DIR / f"daily_papers_{source}.json").read_text(encoding="utf-8"))
    if edit:
        edit(items)
    work.mkdir(parents=True, exist_ok=True)
    path = work / name
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def _revise_first(items: list[dict]) -> None:
    items[0]["paper"]["summary"] = "A revised abstract: the authors rewrote it."
    items[0]["paper"]["upvotes"] += 5


def _listed_again(items: list[dict]) -> None:
    """The papers of 2026-08-13 on the list of 2026-08-16, with one more upvote each."""
    for item in items:
        item["paper"]["upvotes"] += 1
        for holder, key in ((item, "publishedAt"), (item["paper"], "submittedOnDailyAt")):
            if holder.get(key):
                holder[key] = holder[key].replace("2026-08-13", "2026-08-16")


def test_an_incremental_publish_after_imports_leaves_the_files_of_a_full_publish(
    next_day, renders, tmp_path
) -> None:
    """Days listed but not mailed change with their papers' latest figures and texts, and a new
    date shows papers already on other days (whose pages gain a sighting with a page)."""
    db, out = next_day
    publish_into(db, out, incremental=True)
    revised = _api_day("2025-03-31", tmp_path / "in", "daily_papers_2025-03-31.json", _revise_first)
    repeated = _api_day(
        "2026-08-13", tmp_path / "in", "daily_papers_2026-08-16.json", _listed_again
    )
    _load_without_digest(db, [revised, repeated])
    full = out.with_name("full")
    shutil.copytree(out, full)
    renders.clear()
    incremental = publish_into(db, out, incremental=True)
    complete = publish_into(db, full, incremental=False)
    assert site_files(out) == site_files(full)
    assert sorted(incremental.written) == sorted(complete.written)
    assert "days/2026-08-16.html" in incremental.written
    assert "days/2025-03-31.html" in incremental.written
    item = json.loads((API_DIR / "daily_papers_2025-03-31.json").read_text())[0]["paper"]
    page = (out / "papers" / f"{item['id']}.html").read_text(encoding="utf-8")
    assert "A revised abstract" in page
    again = json.loads((API_DIR / "daily_papers_2026-08-13.json").read_text())[0]["paper"]
    assert f"papers/{again['id']}.html" in incremental.written  # a sighting on a new day page
    assert "days/2026-08-15.html" in incremental.written  # its "older" link is the new day


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """The paper ids and digest dates each publish reads texts and figures of."""
    read: dict[str, list] = {"papers": [], "days": []}
    papers, items = Warehouse.site_papers, Warehouse.site_digest_items

    def site_papers(self, ids=None):
        read["papers"].append(ids)
        return papers(self, ids)

    def site_digest_items(self, stars_jump, days=None):
        read["days"].append(days)
        return items(self, stars_jump, days)

    monkeypatch.setattr(Warehouse, "site_papers", site_papers)
    monkeypatch.setattr(Warehouse, "site_digest_items", site_digest_items)
    return read


def test_an_incremental_publish_reads_only_what_changed(next_day, renders, reads) -> None:
    db, out = next_day
    publish_into(db, out, incremental=True)
    [ids], [days] = reads["papers"], reads["days"]
    with Warehouse.open(db) as wh:
        outline = read_site_outline(wh)
    on_days = {d.day: set(d.paper_ids) for d in outline.days}
    paper_pages = {r.removeprefix("paper ") for r in renders if r.startswith("paper ")}
    assert sorted(days) == [FIRST_DIGEST, SECOND_DIGEST]  # the mailed days it renders
    assert set(ids) == on_days[FIRST_DIGEST] | on_days[SECOND_DIGEST] | paper_pages
    assert len(ids) < len(outline.papers) / 2
    reads["papers"].clear(), reads["days"].clear()
    publish_into(db, out, incremental=True)
    assert reads == {"papers": [[]], "days": [[]]}  # nothing changed: only the outline read
    reads["papers"].clear(), reads["days"].clear()
    publish_into(db, out, incremental=False)
    assert reads == {"papers": [None], "days": [None]}  # a full publish reads everything


def test_a_damaged_state_file_means_a_full_render_with_the_same_files(next_day, renders) -> None:
    db, out = next_day
    publish_into(db, out, incremental=True)
    expected = site_files(out)
    state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    state["days"] = {day: ["0", 1, None] for day in state["days"]}  # not what it wrote
    state["inputs"] = {path: "stale" for path in state["inputs"]}
    (out / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    renders.clear()
    report = publish_into(db, out, incremental=True)
    assert site_files(out) == expected and report.written == []
    assert len([r for r in renders if r.startswith("day ")]) == len(state["days"])
