"""Tests of the ranking evaluation's readers (bench/bench_rank.py): who counts as a reader,
how a reader's papers are split in time, and what pool each reader is ranked on.

Small hand-made papers pin each rule; the recorded days (tests/fixtures) check the rules hold
on the real readers the judged figure is computed over.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from bench import bench_rank
from bench.bench_rank import (
    MIN_READERS,
    Reader,
    _by_entity,
    _distinct,
    _recorded_reader,
    _shape,
    _synthetic_reader,
)
from bench.harness import Context
from flows.models import CorpusPaper, DigestPaper, Topics
from flows.warehouse import Warehouse

D1, D2, D3 = date(2026, 8, 12), date(2026, 8, 13), date(2026, 8, 14)


def paper(pid: str, day: date, authors: tuple[str, ...] = ("Ada",), upvotes: int = 5):
    return DigestPaper(
        pid, f"title {pid}", f"abstract {pid}", pid, authors, digest_date=day, upvotes=upvotes
    )


def lists_of(*papers: DigestPaper) -> dict[date, list[DigestPaper]]:
    lists: dict[date, list[DigestPaper]] = {}
    for p in papers:
        lists.setdefault(p.digest_date, []).append(p)
    return lists


def test_a_name_listed_twice_on_one_paper_counts_that_paper_once() -> None:
    llama = paper("2407.21783", D1, authors=("Ada", "Bo", "Ada"))
    grouped = _by_entity([llama])
    assert grouped == {"author:Ada": [llama], "author:Bo": [llama]}


def test_the_library_is_the_earlier_half_and_the_pool_starts_on_its_last_day() -> None:
    old, same_day_early, same_day_late = (
        paper("1", D1),
        paper("2608.001", D2),
        paper("2608.002", D2),
    )
    later, other_d1, other_d3 = paper("3", D3), paper("9", D1, ("Cy",)), paper("8", D3, ("Cy",))
    mine = [later, same_day_late, old, same_day_early]
    lists = lists_of(*mine, other_d1, other_d3)
    reader = _recorded_reader("author:Ada", mine, lists)
    assert reader is not None
    assert [e.arxiv_id for e in reader.library] == ["1", "2608.001"]
    assert reader.targets == {"2608.002", "3"}
    assert {p.paper_id for p in reader.pool} == {"2608.002", "3", "8"}  # D2 on, less the library


def test_one_paper_or_papers_without_upvotes_make_no_reader() -> None:
    unlisted = paper("2", D2, upvotes=0)  # a saved text page: corpus only, never a candidate
    assert _recorded_reader("author:Ada", [paper("1", D1), unlisted], lists_of()) is None


def test_co_authors_with_the_same_library_and_targets_are_one_reader() -> None:
    lists = lists_of(paper("1", D1, ("Ada", "Bo")), paper("2", D2, ("Ada", "Bo")))
    readers = [
        _recorded_reader(name, theirs, lists)
        for name, theirs in sorted(_by_entity(p for day in lists.values() for p in day).items())
    ]
    assert len(readers) == 2
    assert [r.name for r in _distinct(readers)] == ["author:Ada"]


def test_a_synthetic_reader_holds_one_paper_out_and_never_sees_its_library() -> None:
    one_copy = {key: paper(key, D1) for key in ("a", "b", "c", "z")}
    pool = {key: paper(f"{key}-pool", D3) for key in ("a", "b", "z")}
    reader = _synthetic_reader("author:Ada", {"a", "b", "c"}, "b", one_copy, pool)
    assert reader is not None
    assert [e.arxiv_id for e in reader.library] == ["a", "c"]
    assert reader.targets == {"b-pool"}
    assert [p.paper_id for p in reader.pool] == ["b-pool", "z-pool"]
    assert _synthetic_reader("author:Ada", {"b"}, "b", one_copy, pool) is None


def test_the_note_states_the_best_precision_any_order_can_reach() -> None:
    readers = [
        Reader("r1", (), (paper("1", D1),), frozenset({"1"}), Topics()),
        Reader("r2", (), (), frozenset({"2", "3"}), Topics()),
    ]
    corpus = [CorpusPaper("1", "1", "t", "t")]
    assert "best possible precision@10 0.150" in _shape(corpus, readers)


def test_recorded_readers_are_split_in_time_and_ranked_on_what_they_saw(tmp_path: Path) -> None:
    corpus, readers = bench_rank.recorded_readers(Context(quick=True, workdir=tmp_path))
    with Warehouse.open(tmp_path / "rank" / "recorded.duckdb") as wh:
        listed = {
            pid: (p.digest_date, pid) for pid, p in bench_rank._papers(wh).items() if p.upvotes
        }
    assert len(readers) >= MIN_READERS  # the judged figure needs this many
    assert len({(r.library, r.targets) for r in readers}) == len(readers)
    in_corpus = {c.paper_id for c in corpus}
    for reader in readers:
        pool = {p.paper_id for p in reader.pool}
        library = {e.arxiv_id for e in reader.library}
        assert library and reader.targets and reader.targets <= pool <= in_corpus
        assert not library & pool
        assert max(listed[i] for i in library) < min(listed[t] for t in reader.targets)
        start = max(listed[i][0] for i in library)
        assert pool == {i for i, (day, _) in listed.items() if day >= start} - library
