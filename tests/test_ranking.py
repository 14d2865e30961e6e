"""Tests of flows.ranking: the order, the "close to" line, the model cache, the embedding
fallback, and the ranking wired into a real delivery (a DuckDB warehouse, the outbox).

The corpus is the recorded API days (tests/fixtures/hf-api) loaded into a real warehouse; the
readers' libraries are the hand-written exports of tests/fixtures/library.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from deliver_fakes import DAY, typical_digest

from flows.cli import main
from flows.config import ConfigError, load_settings
from flows.library import Library, LibraryEntry, read_library_file
from flows.models import CorpusPaper, Recipient, Topics
from flows.pipeline import deliver_run_digest, ingest_files, render_settings_for
from flows.ranking import (
    EMBEDDINGS,
    TFIDF,
    RankStats,
    TfidfBackend,
    choose_backend,
    digest_candidates,
    rank_readers,
    rank_recipients,
)
from flows.render import render_digest
from flows.subscribers import add_subscriber
from flows.warehouse import Warehouse

FIXTURES = Path(__file__).parent / "fixtures"
LIBRARIES = FIXTURES / "library"
API_DAYS = sorted((FIXTURES / "hf-api").glob("daily_papers_*.json"))


@pytest.fixture(scope="module")
def warehouse_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real warehouse with the five recorded API days loaded."""
    path = tmp_path_factory.mktemp("ranking") / "papers.duckdb"
    with Warehouse.open(path) as wh:
        run_id = wh.start_run("import")
        for page in API_DAYS:
            day = date.fromisoformat(page.stem.removeprefix("daily_papers_"))
            outcomes = ingest_files(wh, [page], run_id, day, DAY)
            assert all(o.ok for o in outcomes)
        wh.finish_run(run_id, "ok", {})
    return path


@pytest.fixture(scope="module")
def corpus(warehouse_db: Path) -> list[CorpusPaper]:
    with Warehouse.open(warehouse_db) as wh:
        return wh.ranking_corpus()


def world_models() -> Library:
    return read_library_file(LIBRARIES / "world_models.bib")


def diffusion() -> Library:
    return read_library_file(LIBRARIES / "diffusion.ris")


def candidates():
    return digest_candidates(typical_digest())


# ---- the corpus ---------------------------------------------------------------------------


def test_corpus_has_every_paper_with_title_abstract_and_keywords(
    corpus: list[CorpusPaper], warehouse_db: Path
) -> None:
    assert len(corpus) == 72
    assert [p.paper_id for p in corpus] == sorted(p.paper_id for p in corpus)
    dreamx = next(p for p in corpus if p.paper_id == "2608.13489")
    assert dreamx.title.startswith("DreamX-Phi 1.0")
    assert "robotic manipulation" in dreamx.text  # abstract
    assert "SE(3) transformations" in dreamx.text  # an AI keyword
    with Warehouse.open(warehouse_db) as wh:
        older = wh.ranking_corpus(until=date(2025, 12, 31))
    assert {p.paper_id[:2] for p in older} == {"24", "25"}


# ---- the order and the "close to" line ----------------------------------------------------


def test_world_model_reader_gets_world_model_papers_first(corpus: list[CorpusPaper]) -> None:
    ranked = rank_readers(corpus, candidates(), {"ada@example.org": world_models()}, top_k=5)
    picks = ranked["ada@example.org"].picks
    titles = {p.paper_id: p.title for p in candidates()}
    top3 = [titles[p.paper_id].lower() for p in picks[:3]]
    assert all("world model" in t for t in top3), top3
    scores = [p.score for p in picks]
    assert scores == sorted(scores, reverse=True)
    library_titles = {e.title for e in world_models().entries} | {
        p.title for p in corpus if p.paper_id in ("2405.15223", "2501.08325")
    }
    assert picks[0].close_to in library_titles
    assert ranked["ada@example.org"].n_library == 4  # 2 found in the warehouse, 2 by their text
    assert ranked["ada@example.org"].backend == TFIDF


def test_two_readers_get_different_orders(corpus: list[CorpusPaper]) -> None:
    readers = {"ada@example.org": world_models(), "bo@example.org": diffusion()}
    ranked = rank_readers(corpus, candidates(), readers, top_k=3)
    ada, bo = ranked["ada@example.org"].picks, ranked["bo@example.org"].picks
    assert ada[0].paper_id != bo[0].paper_id
    assert bo[0].close_to in {e.title for e in diffusion().entries}


def test_papers_already_in_the_library_are_not_recommended(corpus: list[CorpusPaper]) -> None:
    playworld = "2608.13552"  # a candidate of the day, and in agents.csv
    library = read_library_file(LIBRARIES / "agents.csv")
    assert playworld in {e.arxiv_id for e in library.entries}
    ranked = rank_readers(corpus, candidates(), {"a@example.org": library}, top_k=50)
    picked = [p.paper_id for p in ranked["a@example.org"].picks]
    assert playworld not in picked
    assert len(picked) == len(candidates()) - 1


def test_a_library_with_nothing_to_learn_from_is_skipped(corpus: list[CorpusPaper]) -> None:
    unknown = Library("ids.txt", "ids", (LibraryEntry("1999.00001"), LibraryEntry("1999.00002")))
    stats = RankStats()
    ranked = rank_readers(
        corpus, candidates(), {"a@example.org": unknown, "b@example.org": diffusion()}, stats=stats
    )
    assert set(ranked) == {"b@example.org"}
    assert stats.skipped == [("a@example.org", "no library entry is in the warehouse or has text")]


def test_candidates_missing_from_the_corpus_are_ranked_by_their_text(
    corpus: list[CorpusPaper],
) -> None:
    fresh = replace(
        candidates()[0],
        paper_id="2699.00001",
        arxiv_id="2699.00001",
        title="Scalable interactive world models for robot video prediction",
        abstract="A world model predicts robot manipulation videos from actions.",
        ai_keywords=("world models",),
    )
    ranked = rank_readers(corpus, [*candidates(), fresh], {"a@example.org": world_models()})
    assert "2699.00001" in [p.paper_id for p in ranked["a@example.org"].picks[:3]]


# ---- the cache ----------------------------------------------------------------------------


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_models_are_cached_and_refit_only_when_library_or_corpus_change(
    corpus: list[CorpusPaper], tmp_path: Path
) -> None:
    cache = tmp_path / "rank-cache"
    readers = {"ada@example.org": world_models(), "bo@example.org": diffusion()}
    first = RankStats()
    cold = rank_readers(corpus, candidates(), readers, cache_dir=cache, stats=first)
    assert (first.corpus_fitted, first.fitted, first.cached) == (True, 2, 0)
    files = _mtimes(cache)
    assert len(files) == 3  # the corpus features and two reader models

    again = RankStats()
    warm = rank_readers(corpus, candidates(), readers, cache_dir=cache, stats=again)
    assert (again.corpus_fitted, again.fitted, again.cached) == (False, 0, 2)
    assert warm == cold
    assert _mtimes(cache) == files  # nothing rewritten

    changed = Library("x.bib", "bibtex", (*world_models().entries, LibraryEntry("2608.11216")))
    library_changed = RankStats()
    rank_readers(
        corpus, candidates(), {**readers, "ada@example.org": changed},
        cache_dir=cache, stats=library_changed,
    )  # fmt: skip
    assert (library_changed.corpus_fitted, library_changed.fitted) == (False, 1)
    assert library_changed.cached == 1

    grown = [*corpus, CorpusPaper("2699.00001", "2699.00001", "A new paper", "A new paper")]
    corpus_changed = RankStats()
    rank_readers(grown, candidates(), readers, cache_dir=cache, stats=corpus_changed)
    assert (corpus_changed.corpus_fitted, corpus_changed.fitted) == (True, 2)
    # models of the old corpus can never be used again: they are gone
    assert len(list(cache.glob("corpus-*"))) == 1
    assert len(list(cache.glob("reader-*"))) == 2


def test_a_damaged_cache_file_is_refitted(
    corpus: list[CorpusPaper], tmp_path: Path, caplog
) -> None:
    cache = tmp_path / "rank-cache"
    readers = {"ada@example.org": world_models()}
    expected = rank_readers(corpus, candidates(), readers, cache_dir=cache)
    for path in cache.iterdir():
        path.write_bytes(b"not a cache file")
    stats = RankStats()
    with caplog.at_level(logging.WARNING, logger="paperdigest.ranking"):
        assert rank_readers(corpus, candidates(), readers, cache_dir=cache, stats=stats) == expected
    assert (stats.corpus_fitted, stats.fitted) == (True, 1)
    assert "damaged ranking cache file" in caplog.text


# ---- the optional embedding backend -------------------------------------------------------


def test_no_model_dir_means_tfidf_without_a_word(caplog, monkeypatch) -> None:
    monkeypatch.delenv("PAPERDIGEST_EMBED_MODEL_DIR", raising=False)
    with caplog.at_level(logging.WARNING, logger="paperdigest.ranking"):
        assert choose_backend().name == TFIDF
    assert caplog.text == ""


@pytest.mark.parametrize("state", ["missing", "empty", "no fastembed"])
def test_an_unusable_embedding_model_says_so_once_and_ranks_with_tfidf(
    corpus: list[CorpusPaper], tmp_path: Path, caplog, monkeypatch, state: str
) -> None:
    model_dir = tmp_path / "model"
    if state != "missing":
        model_dir.mkdir()
    if state == "no fastembed":  # a model folder is there; the optional extra is not installed
        (model_dir / "model.onnx").write_bytes(b"onnx")
    monkeypatch.setenv("PAPERDIGEST_EMBED_MODEL_DIR", str(model_dir))
    digest = typical_digest()
    recipients = []
    for address, name in (("a@example.org", "world_models.bib"), ("b@example.org", "agents.csv")):
        recipient = add_subscriber(
            tmp_path / "subs.json", address, library=read_library_file(LIBRARIES / name)
        )
        recipients.append(recipient)
    with caplog.at_level(logging.WARNING, logger="paperdigest.ranking"):
        ranked = rank_recipients(lambda: corpus, digest, recipients, cache_dir=None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "PAPERDIGEST_EMBED_MODEL_DIR" in warnings[0]
    assert str(model_dir) in warnings[0]
    assert "ranking with TF-IDF" in warnings[0]
    if state == "no fastembed":
        assert "fastembed is not installed" in warnings[0]
    plain = rank_readers(
        corpus,
        digest_candidates(digest),
        {
            "a@example.org": world_models(),
            "b@example.org": read_library_file(LIBRARIES / "agents.csv"),
        },
        backend=TfidfBackend(),
    )
    assert ranked == plain
    assert {r.backend for r in ranked.values()} == {TFIDF} != {EMBEDDINGS}


# ---- wired into a delivery ----------------------------------------------------------------


def _run_settings(warehouse_db: Path, tmp_path: Path):
    db = tmp_path / "papers.duckdb"  # a copy: each test has its own send ledger
    shutil.copyfile(warehouse_db, db)
    return load_settings(
        environ={},
        db=db,
        outbox=tmp_path / "outbox",
        subscribers=tmp_path / "subscribers.json",
        rank_cache=tmp_path / "rank-cache",
    )


def test_delivery_ranks_readers_with_a_library_and_leaves_the_others_alone(
    warehouse_db: Path, tmp_path: Path, caplog
) -> None:
    settings = _run_settings(warehouse_db, tmp_path)
    add_subscriber(settings.subscribers_path, "plain@example.org")
    add_subscriber(settings.subscribers_path, "bob@example.org", include=["agent"])
    add_subscriber(settings.subscribers_path, "ada@example.org", library=world_models())
    digest = typical_digest()
    with Warehouse.open(settings.db) as wh:
        run_id = wh.start_run("daily")
        with caplog.at_level(logging.INFO, logger="paperdigest.ranking"):
            outcome = deliver_run_digest(wh, digest, run_id, settings)
        wh.finish_run(run_id, "ok", {})
    assert outcome.sent == 3 and not outcome.failed
    assert "1 model(s) fitted, 0 from the cache" in caplog.text
    outbox = settings.outbox
    ada = next(outbox.glob("*_ada-at-example-org-*.html")).read_text()
    assert ada.index("For you") < ada.index("Trending outside your interests")
    assert "close to: " in ada
    # readers without a library get exactly the email they got before ranking existed
    render_settings = render_settings_for(settings)
    for address, topics in (
        ("plain@example.org", Topics()),
        ("bob@example.org", Topics(("agent",))),
    ):
        expected = render_digest(
            digest, recipient=Recipient(address, topics), settings=render_settings
        ).html
        stem = address.replace("@", "-at-").replace(".", "-")
        written = next(outbox.glob(f"*_{stem}-*.html")).read_text()
        assert written.rstrip("\n") == expected.rstrip("\n")  # MIME ends the part with one

    # a re-run the same day (a resend) reuses the cached model: nothing is refitted
    mtimes = _mtimes(settings.rank_cache_path)
    caplog.clear()
    with Warehouse.open(settings.db) as wh:
        run_id = wh.start_run("daily")
        with caplog.at_level(logging.INFO, logger="paperdigest.ranking"):
            deliver_run_digest(wh, digest, run_id, settings, resend=True)
        wh.finish_run(run_id, "ok", {})
    assert "0 model(s) fitted, 1 from the cache" in caplog.text
    assert _mtimes(settings.rank_cache_path) == mtimes


def test_an_unreadable_stored_library_leaves_that_email_unranked(
    warehouse_db: Path, tmp_path: Path, caplog
) -> None:
    settings = _run_settings(warehouse_db, tmp_path)
    ada = add_subscriber(settings.subscribers_path, "ada@example.org", library=world_models())
    add_subscriber(settings.subscribers_path, "bo@example.org", library=diffusion())
    ada.library.write_text("{not json")
    with Warehouse.open(settings.db) as wh:
        run_id = wh.start_run("daily")
        with caplog.at_level(logging.WARNING):
            outcome = deliver_run_digest(wh, typical_digest(), run_id, settings)
        wh.finish_run(run_id, "ok", {})
    assert outcome.sent == 2
    assert "ada@example.org gets an unranked digest" in caplog.text
    assert "For you" not in next(settings.outbox.glob("*_ada-at-example-org-*.html")).read_text()
    assert "For you" in next(settings.outbox.glob("*_bo-at-example-org-*.html")).read_text()


def test_ranking_settings_and_the_cache_beside_the_warehouse(tmp_path: Path) -> None:
    settings = load_settings(environ={}, db=tmp_path / "w" / "papers.duckdb")
    assert settings.rank_cache_path == tmp_path / "w" / "rank-cache"
    assert load_settings(environ={"PAPERDIGEST_RANK_TOP_K": "5"}).rank_top_k == 5
    assert os.fspath(
        load_settings(environ={"PAPERDIGEST_RANK_CACHE": str(tmp_path)}).rank_cache_path
    ) == str(tmp_path)
    with pytest.raises(ConfigError, match="rank_top_k"):
        load_settings(environ={"PAPERDIGEST_RANK_TOP_K": "0"})


def test_preview_for_a_subscriber_shows_their_ranked_email(
    warehouse_db: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    settings = _run_settings(warehouse_db, tmp_path)
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(settings.subscribers_path))
    monkeypatch.setenv("PAPERDIGEST_RANK_CACHE", str(settings.rank_cache_path))
    add_subscriber(settings.subscribers_path, "ada@example.org", library=world_models())
    out = tmp_path / "preview"
    base = ("--db", str(settings.db), "preview", "--out", str(out))
    assert main([*base, "--for", "ada@example.org"]) == 0
    html_path, text_path = (Path(line) for line in capsys.readouterr().out.splitlines())
    assert html_path.name == "digest-2026-08-14-ada-at-example.org.html"
    text = text_path.read_text()
    assert "== FOR YOU ==" in text and "close to: " in text
    assert main([*base]) == 0  # without --for: the email everyone gets
    plain = Path(capsys.readouterr().out.splitlines()[1]).read_text()
    assert "FOR YOU" not in plain
    assert main([*base, "--for", "nobody@example.org"]) == 1
    assert "nobody@example.org is not in" in capsys.readouterr().err


def test_an_empty_day_ranks_nothing_and_reads_no_corpus(tmp_path: Path, caplog) -> None:
    reader = add_subscriber(tmp_path / "subs.json", "ada@example.org", library=world_models())

    def no_corpus() -> list[CorpusPaper]:
        raise AssertionError("the corpus is read only when there is something to rank")

    empty = replace(typical_digest(), new=(), trending=(), late=())
    with caplog.at_level(logging.WARNING):
        assert rank_recipients(no_corpus, empty, [reader], cache_dir=None) == {}
    assert caplog.text == ""
