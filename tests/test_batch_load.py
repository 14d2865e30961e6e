"""Loading many pages in one transaction leaves exactly what loading them one by one leaves.

The backfill loads a batch of days per transaction (`Warehouse.save_pages`); the daily run and
imports load fewer pages at a time. These tests load the same sequence of real and tricky pages
one page at a time, all at once, and in uneven chunks, and compare every row.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from flows import warehouse as wh_module
from flows.models import Paper, ParsedPage, RawPage, Reject
from flows.pagebatch import REFRESHED, PendingPage, fields_hash, fold_papers, title_keys
from flows.parse import parse_page, title_key
from flows.pipeline import FetchedDay, ReadyPage, load_days, prepare_page
from flows.warehouse import Warehouse, WarehouseError

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2025, 11, 3, 6, tzinfo=UTC)
TABLES = ("pages", "papers", "sightings", "rejects", "paper_aliases", "day_loads")


def page_sequence() -> list[list[tuple[RawPage, ParsedPage]]]:
    """Runs of pages exercising every order-dependent rule of a load."""
    clock = iter(T0 + timedelta(minutes=n) for n in range(1000))

    def page(body: bytes, location: str, day: date | None, parsed: ParsedPage) -> tuple:
        source = "text" if location.endswith(".txt") else "api"
        return RawPage(source, location, body, day, next(clock), 200), parsed

    recorded = []
    for path in sorted((FIXTURES / "seeds").glob("*.txt")):
        body = path.read_bytes()
        day = date(2025, 11, 3)
        recorded.append(page(body, path.name, day, parse_page(body, name=path.name, today=day)))
    for path in [
        *sorted((FIXTURES / "hf-api").glob("*.json")),
        FIXTURES / "hf-html" / "papers_2024-08-01.html",
    ]:
        body = path.read_bytes()
        recorded.append(page(body, path.name, None, parse_page(body, name=path.name)))

    api = parse_page((FIXTURES / "hf-api" / "daily_papers_2026-08-13.json").read_bytes(), name="a")
    fresh = tuple(
        replace(p, paper_id=f"2612.{i:05d}", arxiv_id=f"2612.{i:05d}", title=f"Merge {p.title}")
        for i, p in enumerate(api.papers[:6])
    )
    title_only = tuple(replace(p, paper_id=title_key(p.title), arxiv_id=None) for p in fresh[:3])
    merging = [  # title-only papers, then their arXiv ids (a merge), then title-only again
        page(b"t1", "t1.txt", date(2026, 8, 12), ParsedPage("text", date(2026, 8, 12), title_only)),
        page(b"a1", "a1", date(2026, 8, 13), ParsedPage("api", date(2026, 8, 13), fresh[:4])),
        page(b"t2", "t2.txt", date(2026, 8, 14), ParsedPage("text", date(2026, 8, 14), title_only)),
    ]

    base = Paper("2601.00001", "Fold", "Abstract one", 1)
    versions = [  # fields appear, change and go missing; digest dates run backwards
        replace(base, digest_date=date(2026, 1, 5), upvotes=1),
        replace(
            base,
            title="Fold v2",
            ai_summary="S",
            authors=("A", "B"),
            upvotes=3,
            digest_date=date(2026, 1, 3),
            github_url="https://github.com/x/y",
        ),
        replace(base, abstract="Abstract two", n_authors=7, ai_keywords=("k",), upvotes=2),
        replace(base, organization="Org", published_on=date(2026, 1, 1), arxiv_id="2601.00001"),
    ]
    folding = []
    for n, version in enumerate(versions):
        day = date(2026, 1, 5) - timedelta(n)
        rejects = (Reject(3, "no title", "{…}"),) if n % 2 else ()
        other = Paper(f"2601.0009{n}", "Other", "Abs", 2)
        folding.append(
            page(f"f{n}".encode(), f"f{n}", day, ParsedPage("api", day, (version, other), rejects))
        )
    folding.append(folding[-1])  # the same bytes again: skipped, even inside one batch
    empty = [
        page(b"[]", f"empty{n}", date(2026, 1, 10 + n), ParsedPage("api", date(2026, 1, 10 + n)))
        for n in range(2)
    ]  # identical bytes, different days: both load
    again = [recorded[3], replace_bytes(recorded[4], b"changed")]  # one known, one new bytes
    return [recorded, merging + folding + empty, again]


def replace_bytes(item: tuple[RawPage, ParsedPage], body: bytes) -> tuple[RawPage, ParsedPage]:
    raw, parsed = item
    return replace(raw, body=body), parsed


def load(db: Path, chunk: int | None) -> dict:
    """Load the sequence in chunks of `chunk` pages (None: each run in one call)."""
    loads = []
    with Warehouse.open(db) as wh:
        for n, run in enumerate(page_sequence()):
            run_id = wh.start_run(f"run {n}")
            size = chunk or len(run)
            for start in range(0, len(run), size):
                loads += wh.save_pages(run[start : start + size], run_id)
        rows = {
            t: sorted(wh.con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES
        }
        archive = wh.con.execute("SELECT page_id, raw_size, raw FROM page_archive").fetchall()
        rows["page_archive"] = sorted((i, size, zlib.decompress(b)) for i, size, b in archive)
        rows["problems"] = wh.integrity_problems()
    return {"loads": loads, **rows}


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory) -> dict:
    return load(tmp_path_factory.mktemp("one") / "w.duckdb", chunk=1)


@pytest.mark.parametrize("chunk", [None, 3, 7])
def test_batches_leave_the_rows_of_one_page_at_a_time(one_by_one, tmp_path, chunk) -> None:
    batched = load(tmp_path / "w.duckdb", chunk)
    assert batched == one_by_one
    assert one_by_one["problems"] == []
    assert len(one_by_one["paper_aliases"]) == 3  # the merges happened
    assert sum(load.skipped for load in one_by_one["loads"]) == 2


def test_the_sequence_covers_the_folding_rules(one_by_one) -> None:
    [row] = [r for r in one_by_one["papers"] if r[0] == "2601.00001"]
    (_, _, arxiv, title, abstract, authors, n_authors, published, github, project, summary,
     keywords, organization, first_seen, _, first_digest, last_seen, first_captured,
     stored_hash) = row  # fmt: skip
    # title and abstract are the latest page's; other fields the latest a page carried
    assert (title, abstract, arxiv) == ("Fold", "Abstract one", "2601.00001")
    assert (authors, n_authors, keywords, summary) == (["A", "B"], 7, ["k"], "S")
    assert (github, organization, published) == ("https://github.com/x/y", "Org", date(2026, 1, 1))
    assert first_digest == date(2026, 1, 2)  # the earliest day any page gave it
    assert last_seen > first_seen
    assert first_captured == first_seen  # fetched pages: captured when they were requested
    fields = [title, abstract, arxiv, n_authors, published, github, project, summary]
    assert stored_hash == fields_hash([*fields, organization, authors, keywords])


def test_fold_papers_matches_the_refresh_rules() -> None:
    day = date(2026, 1, 5)
    first = Paper("2601.1", "T", "A", 1, ai_summary="S", authors=("X",), digest_date=day)
    later = Paper("2601.1", "T2", "A2", 1, ai_summary=None, authors=(), github_url="https://g/h")
    raw = RawPage("api", "u", b"")
    pages = [  # the first page brought the paper; the second, a day earlier, saw it again
        PendingPage(raw, ParsedPage("api", day), "", 1, 7, T0, [first], {"2601.1"}),
        PendingPage(
            raw, ParsedPage("api", day - timedelta(1)), "", 2, 7, T0 + timedelta(1), [later]
        ),
    ]
    writes = fold_papers(pages, title_keys([first, later]), {})
    assert (writes.touched.num_rows, writes.refreshed.num_rows) == (0, 0)
    [row] = writes.new.to_pylist()
    assert (row["title"], row["abstract"], row["ai_summary"], row["authors"]) == (
        "T2",
        "A2",
        "S",
        ("X",),  # the later page's authors, as its Paper holds them
    )
    assert row["github_url"] == "https://g/h" and row["n_authors"] == 1
    assert row["first_digest_date"] == day - timedelta(1)
    assert (row["first_seen_at"], row["last_seen_at"]) == (T0, T0 + timedelta(1))
    assert row["title_key"] == title_key("T")  # the key a paper got first is kept
    assert row["fields_hash"] == fields_hash([row[name] for name in REFRESHED])
    assert writes.new_hashes == {"2601.1": row["fields_hash"]}


def test_a_known_paper_whose_fields_hash_alike_is_touched_not_refreshed() -> None:
    day = date(2026, 1, 5)
    same = Paper("2601.1", "T", "A", 1, ai_summary="S", authors=("X",), digest_date=day)
    edited = replace(same, paper_id="2601.2", abstract="A, revised")
    before = replace(same, paper_id="2601.2")
    raw = RawPage("api", "u", b"")
    keys = title_keys([same])
    brought = PendingPage(raw, ParsedPage("api", day), "", 1, 7, T0, [same, before])
    brought.new_ids = {"2601.1", "2601.2"}
    stored = fold_papers([brought], keys, {}).new_hashes  # what the warehouse records
    page = PendingPage(raw, ParsedPage("api", day), "", 2, 8, T0, [same, edited])
    writes = fold_papers([page], keys, stored)
    assert writes.new.num_rows == 0
    assert [r["paper_id"] for r in writes.touched.to_pylist()] == ["2601.1", "2601.2"]
    assert [r["paper_id"] for r in writes.refreshed.to_pylist()] == ["2601.2"]
    unknown = fold_papers([page], keys, {"2601.1": None})
    assert unknown.refreshed.num_rows == 2  # no stored hash (or none at all): refreshed


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (["a\x1eb", "c"], ["a", "b\x1ec"]),  # a field separator inside a value
        ([("a\x1fb",), "c"], [("a", "b"), "c"]),  # an item separator inside a list item
        ([None, "x"], ["\x00", "x"]),  # None against the text standing for it
        ([[], "x"], [None, "x"]),
        ([("a",), None], [("a",), ""]),
    ],
)
def test_fields_hash_tells_apart_what_its_text_could_confuse(one, other) -> None:
    assert fields_hash(one) != fields_hash(other)


def test_fields_hash_is_stable_and_reads_lists_and_tuples_alike() -> None:
    values = ["T", "A", None, 3, date(2026, 1, 5), ("X", "Y")]
    assert fields_hash(values) == fields_hash([*values[:-1], ["X", "Y"]])
    # A digest stored by one process is compared in another (no per-process salt), and a new
    # text format would make every stored digest stale: each paper refreshed once more.
    assert fields_hash(values) == "a7defe40153cbc18cc0b10f32e313fb37864e914"


def test_a_failure_in_a_batch_writes_none_of_it(tmp_path, monkeypatch) -> None:
    runs = page_sequence()
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        wh.save_pages(runs[0], wh.start_run("first"))
        before = {t: wh.con.execute(f"SELECT count(*) FROM {t}").fetchall() for t in TABLES}
        real = wh_module.query_sql
        monkeypatch.setattr(
            wh_module,
            "query_sql",
            lambda n: "SELECT * FROM nowhere" if n == "refresh_papers" else real(n),
        )
        with pytest.raises(
            WarehouseError, match=r"^t1\.txt and 9 more pages: not loaded, .* unchanged: .*nowhere"
        ):
            wh.save_pages(runs[1], wh.start_run("second"))
        monkeypatch.setattr(wh_module, "query_sql", real)
        after = {t: wh.con.execute(f"SELECT count(*) FROM {t}").fetchall() for t in TABLES}
        assert after == before
        assert wh.integrity_problems() == []
        assert len(wh.save_pages(runs[1], wh.start_run("third"))) == 10  # and it loads afterwards


def api_page(day: date, items: list[dict]) -> RawPage:
    body = json.dumps(items).encode()
    return RawPage("api", f"https://hf.test/api/daily_papers?date={day}", body, day, T0, 200)


def test_load_days_marks_only_days_whose_every_page_loaded(tmp_path) -> None:
    items = json.loads((FIXTURES / "hf-api" / "daily_papers_2026-08-14.json").read_bytes())
    good, refused, unfetched = date(2026, 8, 14), date(2026, 8, 15), date(2026, 8, 16)
    error_page = RawPage("api", "https://hf.test/x", b"<html>503 Service Unavailable</html>")
    fetched = [
        FetchedDay(good, [prepare_page(api_page(good, items))]),
        FetchedDay(refused, [prepare_page(api_page(refused, [])), prepare_page(error_page)]),
        FetchedDay(unfetched, error="https://hf.test/…: HTTP 500"),
    ]
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        run_id = wh.start_run("backfill")
        results = load_days(wh, fetched, run_id, "api")
        assert [(r.day, r.status) for r in results] == [
            (good, "loaded"),
            (refused, "failed"),
            (unfetched, "failed"),
        ]
        assert results[0].entries == results[0].new_papers == 23
        assert "https://hf.test/x" in results[1].error and results[1].pages == 1
        assert results[2].error == "https://hf.test/…: HTTP 500"
        assert wh.complete_days(good, unfetched, "api") == {good}
        marks = wh.con.execute("SELECT digest_date, n_pages, n_entries FROM day_loads").fetchall()
        assert marks == [(good, 1, 23)]


def test_load_days_rolls_back_the_batch_and_its_marks_when_the_warehouse_fails(
    tmp_path, monkeypatch
) -> None:
    items = json.loads((FIXTURES / "hf-api" / "daily_papers_2026-08-14.json").read_bytes())
    days = [date(2026, 8, 14), date(2026, 8, 17)]
    fetched = [FetchedDay(d, [prepare_page(api_page(d, items))]) for d in days]
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        run_id = wh.start_run("backfill")

        def full_disk(*args, **kwargs):
            raise WarehouseError("warehouse w.duckdb: No space left on device")

        monkeypatch.setattr(Warehouse, "mark_days_complete", full_disk)
        with pytest.raises(WarehouseError, match="No space left"):
            load_days(wh, fetched, run_id, "api")
        monkeypatch.undo()
        assert wh.con.execute("SELECT count(*) FROM pages").fetchall() == [(0,)]
        assert [r.status for r in load_days(wh, fetched, run_id, "api")] == ["loaded", "loaded"]
        assert wh.complete_days(days[0], days[-1], "api") == set(days)


def test_a_not_modified_page_is_reported_loaded_without_parsing() -> None:
    raw = RawPage("api", "https://hf.test/u", b"", date(2026, 8, 14), T0, 304)
    assert prepare_page(raw) == ReadyPage(raw)


def test_a_prepared_page_holds_its_bytes_only_compressed_and_archives_them_exactly(
    tmp_path,
) -> None:
    items = json.loads((FIXTURES / "hf-api" / "daily_papers_2026-08-14.json").read_bytes())
    day = date(2026, 8, 14)
    raw = api_page(day, items)
    ready = prepare_page(raw)
    assert ready.raw.body == b"" and ready.stored is not None
    assert ready.stored.size == len(raw.body) and zlib.decompress(ready.stored.archived) == raw.body
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        load_days(wh, [FetchedDay(day, [ready])], wh.start_run("backfill"), "api")
        [(size, archived)] = wh.con.execute("SELECT raw_size, raw FROM page_archive").fetchall()
        assert (size, zlib.decompress(archived)) == (len(raw.body), raw.body)
        assert [a.raw.body for a in wh.iter_archive()] == [raw.body]


def _refetched(day: date, items: list[dict], upvotes: int, at: datetime) -> tuple:
    """The day's API page as fetched again: the same papers, other upvotes."""
    body = json.dumps([item | {"paper": item["paper"] | {"upvotes": upvotes}} for item in items])
    raw = RawPage("api", f"https://hf.test/api/daily_papers?date={day}", body.encode(), day, at)
    return raw, parse_page(raw.body, name="refetch", today=day)


def test_a_refetched_page_with_the_same_fields_never_runs_the_refresh(tmp_path, monkeypatch):
    """New upvotes only (the usual re-fetch): the papers are touched and sighted, and
    refresh_papers.sql is not run. A revised abstract is refreshed, and the paper's fields hash
    becomes that of its stored fields."""
    day = date(2026, 8, 14)
    items = json.loads((FIXTURES / "hf-api" / "daily_papers_2026-08-14.json").read_bytes())
    db = tmp_path / "w.duckdb"
    with Warehouse.open(db) as wh:
        wh.save_pages([_refetched(day, items, 1, T0)], wh.start_run("first"))
        real = wh_module.query_sql
        monkeypatch.setattr(
            wh_module,
            "query_sql",
            lambda n: "SELECT * FROM nowhere" if n == "refresh_papers" else real(n),
        )
        [again] = wh.save_pages([_refetched(day, items, 5, T0 + timedelta(1))], wh.start_run("2"))
        assert not again.skipped
        last_seen = wh.con.execute("SELECT DISTINCT last_seen_at FROM papers").fetchall()
        assert last_seen == [(T0 + timedelta(1),)]  # touched
        with pytest.raises(WarehouseError, match="nowhere"):  # a change needs the refresh
            items[0]["paper"]["summary"] = "A revised abstract."
            wh.save_pages([_refetched(day, items, 6, T0 + timedelta(2))], wh.start_run("3"))
        monkeypatch.setattr(wh_module, "query_sql", real)
        wh.save_pages([_refetched(day, items, 6, T0 + timedelta(2))], wh.start_run("4"))
        paper_id = items[0]["paper"]["id"]
        stored = wh.con.execute(
            f"SELECT fields_hash, {', '.join(REFRESHED)} FROM papers WHERE paper_id = $id",
            {"id": paper_id},
        ).fetchone()
        assert stored[2] == "A revised abstract."
        assert stored[0] == fields_hash(list(stored[1:]))
        assert wh.integrity_problems() == []


def test_papers_stored_before_fields_hashes_get_one_on_their_next_page(tmp_path, monkeypatch):
    """Schema version 6 leaves every stored paper without a fields hash (NULL): its next page
    rewrites it once and records the hash, even when nothing else changes; after that a page
    with the same fields no longer needs the refresh."""
    day = date(2026, 8, 14)
    items = json.loads((FIXTURES / "hf-api" / "daily_papers_2026-08-14.json").read_bytes())
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        wh.save_pages([_refetched(day, items, 1, T0)], wh.start_run("first"))
        wh.con.execute("UPDATE papers SET fields_hash = NULL")  # as the migration leaves them
        wh.save_pages([_refetched(day, items, 2, T0 + timedelta(1))], wh.start_run("second"))
        stored = wh.con.execute(f"SELECT fields_hash, {', '.join(REFRESHED)} FROM papers")
        rows = stored.fetchall()
        assert len(rows) == len(items)
        assert [r[0] for r in rows] == [fields_hash(list(r[1:])) for r in rows]
        real = wh_module.query_sql
        monkeypatch.setattr(
            wh_module,
            "query_sql",
            lambda n: "SELECT * FROM nowhere" if n == "refresh_papers" else real(n),
        )
        wh.save_pages([_refetched(day, items, 3, T0 + timedelta(2))], wh.start_run("third"))
