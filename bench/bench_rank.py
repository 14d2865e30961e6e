"""Personal ranking: how good (precision@10, recall@25) and how fast (1,000 readers).

Quality. Readers are built from signals already in the data: an author's or organisation's
earlier papers are the library, their later papers the targets. Each reader's pool is the
day's candidates; three orders of the pool are scored against the targets:

* the ranking (flows.ranking, TF-IDF + a linear SVM per reader, as a daily run does it);
* upvote order (what everyone's digest shows);
* the keyword-topic filter: the reader's 3 most frequent keywords in their library as include
  topics (flows.render.match_topics), matches first, each part by upvotes.

On the recorded days (tests/fixtures/hf-api plus the recorded HTML day page: real papers, real
authors, and organisations where the newer API eras carry them), a reader is an (author or
organisation, later day) pair: the library is everything they had on earlier days, the pool that
day's list (what a daily run ranks), the targets their papers in it. The data holds only 17 such
readers (no entity appears on three days), every one with a one-paper library and one or two
targets in a pool of 13-20; the pools are under 25 papers, so recall@25 is 1.0 for every order
there. Common names ("Wei Li") may well be different people, so the readers are noisy too.

On a year of synthetic history (bench/history.py), every paper's text is one of the ~85
recorded papers, so a later "paper" of an author is usually a copy of one already in the
library, which would make the test trivial. There, a reader is an (author or organisation,
held-out recorded paper) pair: the library is their other papers, the targets the copies of
the held-out one in the last five weekdays' lists, and copies of library papers are taken out
of the pool and of the corpus. The target (≥ 3× upvote order's precision@10 over ≥ 20
readers) is judged on the recorded days; the synthetic figures are reported beside them.

Speed. 1,000 readers with 50-paper libraries rank the last day of a year of history: once from
cold (the corpus featurised and 1,000 models fitted, written to the cache) and once with every
model cached. Targets: < 60 s cold, < 5 s cached.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bench.harness import Context, Row, peak_rss_mb, timed
from bench.history import history_for
from flows.library import Library, LibraryEntry
from flows.models import CorpusPaper, DigestPaper, Topics
from flows.pipeline import ingest_files
from flows.ranking import RankStats, TfidfBackend, rank_readers
from flows.render import match_topics
from flows.warehouse import Warehouse

SECTION = "Ranking"
ROOT = Path(__file__).resolve().parents[1]
RECORDED_API = sorted((ROOT / "tests" / "fixtures" / "hf-api").glob("daily_papers_*.json"))
RECORDED_SEEDS = sorted((ROOT / "tests" / "fixtures" / "seeds").glob("*.txt"))
RECORDED_HTML = ROOT / "tests" / "fixtures" / "hf-html" / "papers_2024-08-01.html"
TARGET_RATIO = 3.0
MIN_READERS = 20
COLD_LIMIT_S, CACHED_LIMIT_S = 60.0, 5.0
LIBRARY_SIZE = 50
SYNTHETIC_POOL_DAYS = 5

PAPERS_SQL = """
SELECT p.paper_id, p.arxiv_id, p.title, p.abstract, p.ai_keywords, p.authors, p.organization,
       p.first_digest_date, l.upvotes
FROM papers p JOIN paper_latest l USING (paper_id)
ORDER BY p.paper_id
"""


@dataclass(frozen=True, slots=True)
class Reader:
    """An evaluation reader: a library, a pool of candidates and the targets among them."""

    name: str
    library: tuple[LibraryEntry, ...]
    pool: tuple[DigestPaper, ...]
    targets: frozenset[str]
    topics: Topics


@dataclass(frozen=True, slots=True)
class Scores:
    """Mean precision@10 and recall@25 of one ordering over the readers."""

    precision10: float
    recall25: float


def run(ctx: Context) -> list[Row]:
    """Quality on the recorded days and synthetic history, then speed for 1,000 readers."""
    rows = [*quality_rows("recorded days", *recorded_readers(ctx), judged=True)]
    rows += quality_rows("synthetic history", *synthetic_readers(ctx), judged=True)
    rows += speed_rows(ctx)
    return rows


# ---------------------------------------------------------------------------------------
# Quality


def evaluate(corpus: Sequence[CorpusPaper], readers: Sequence[Reader]) -> dict[str, Scores]:
    """Mean precision@10 and recall@25 of the ranking and of the two baselines."""
    results: dict[str, list[tuple[float, float]]] = defaultdict(list)
    backend = TfidfBackend()
    cache = Path(tempfile.mkdtemp(prefix="rank-eval-"))  # the corpus is featurised once
    for reader in readers:
        ranked = rank_readers(
            corpus,
            reader.pool,
            {reader.name: _library(reader)},
            top_k=25,
            backend=backend,
            cache_dir=cache,
        )
        order = [p.paper_id for p in ranked[reader.name].picks] if ranked else []
        results["ranking"].append(_at_k(order, reader.targets))
        results["upvotes"].append(_at_k(_by_upvotes(reader.pool), reader.targets))
        results["topics"].append(_at_k(_by_topics(reader.pool, reader.topics), reader.targets))
    shutil.rmtree(cache, ignore_errors=True)
    return {
        name: Scores(statistics.mean(p for p, _ in pairs), statistics.mean(r for _, r in pairs))
        for name, pairs in results.items()
    }


def quality_rows(
    label: str, corpus: Sequence[CorpusPaper], readers: Sequence[Reader], *, judged: bool
) -> list[Row]:
    """Two rows: precision@10 and recall@25 of the ranking, next to both baselines."""
    scores = evaluate(corpus, readers)
    ours, upvotes, topics = scores["ranking"], scores["upvotes"], scores["topics"]
    ratio = ours.precision10 / upvotes.precision10 if upvotes.precision10 else float("inf")
    verdict, missed = "no target", False
    if judged:
        missed = ratio < TARGET_RATIO or len(readers) < MIN_READERS
        verdict = (
            f"≥ {TARGET_RATIO:g}× upvote order over ≥ {MIN_READERS} readers: {ratio:.2f}× "
            f"over {len(readers)} {'❌ missed' if missed else '✅ met'}"
        )
    n_targets = statistics.mean(len(r.targets) for r in readers)
    n_pool = statistics.mean(len(r.pool) for r in readers)
    note = (
        f"{len(readers)} readers (authors and organisations), libraries of "
        f"{statistics.mean(len(r.library) for r in readers):.1f} papers, pools of "
        f"{n_pool:.0f} candidates with {n_targets:.1f} targets; corpus {len(corpus):,} papers"
    )
    return [
        Row(
            SECTION,
            f"{label}: precision@10",
            f"{ours.precision10:.3f}",
            baseline=f"upvote order {upvotes.precision10:.3f}; keyword topics "
            f"{topics.precision10:.3f}",
            verdict=verdict,
            peak_mb=peak_rss_mb(),
            note=note,
            missed=missed,
            figures={
                "ranking": ours.precision10,
                "upvotes": upvotes.precision10,
                "topics": topics.precision10,
                "readers": len(readers),
            },
        ),
        Row(
            SECTION,
            f"{label}: recall@25",
            f"{ours.recall25:.3f}",
            baseline=f"upvote order {upvotes.recall25:.3f}; keyword topics {topics.recall25:.3f}",
            verdict="no target",
            peak_mb=peak_rss_mb(),
            note=f"the same {len(readers)} readers",
            figures={
                "ranking": ours.recall25,
                "upvotes": upvotes.recall25,
                "topics": topics.recall25,
            },
        ),
    ]


def _at_k(order: Sequence[str], targets: frozenset[str]) -> tuple[float, float]:
    precision = len(set(order[:10]) & targets) / 10
    recall = len(set(order[:25]) & targets) / len(targets)
    return precision, recall


def _by_upvotes(pool: Iterable[DigestPaper]) -> list[str]:
    return [p.paper_id for p in sorted(pool, key=lambda p: (-(p.upvotes or 0), p.paper_id))]


def _by_topics(pool: Iterable[DigestPaper], topics: Topics) -> list[str]:
    ordered = sorted(pool, key=lambda p: (-(p.upvotes or 0), p.paper_id))
    matches = [p.paper_id for p in ordered if match_topics(p, topics)]
    return matches + [p.paper_id for p in ordered if p.paper_id not in set(matches)]


def _library(reader: Reader) -> Library:
    return Library(source=reader.name, fmt="ids", entries=reader.library)


def _topics(papers: Iterable[DigestPaper]) -> Topics:
    """The reader's 3 most frequent keywords (their papers' AI keywords, else title words)."""
    counts: Counter[str] = Counter()
    for paper in papers:
        words = paper.ai_keywords or tuple(w for w in paper.title.split() if len(w) > 5)
        counts.update(k.lower() for k in words)
    return Topics(include=tuple(k for k, _ in counts.most_common(3)))


# ---- the recorded days ------------------------------------------------------------------


def recorded_readers(ctx: Context) -> tuple[list[CorpusPaper], list[Reader]]:
    """Authors and organisations with papers on two or more recorded digest days."""
    path = ctx.folder("rank") / "recorded.duckdb"
    path.unlink(missing_ok=True)
    with Warehouse.open(path) as wh:
        run_id = wh.start_run("import")
        for page in RECORDED_API:
            day = date.fromisoformat(page.stem.removeprefix("daily_papers_"))
            ingest_files(wh, [page], run_id, day, day)
        ingest_files(wh, [RECORDED_HTML], run_id, date(2024, 8, 1), date(2024, 8, 1))
        ingest_files(wh, RECORDED_SEEDS, run_id, None, date(2025, 11, 3))
        wh.finish_run(run_id, "ok", {})
        corpus, papers = wh.ranking_corpus(), _papers(wh)
    # saved text pages carry no upvotes or authors: corpus only, never candidates
    lists: dict[date, list[DigestPaper]] = defaultdict(list)
    for paper in papers.values():
        if paper.upvotes:
            lists[paper.digest_date].append(paper)
    readers = []
    for name, theirs in sorted(_by_entity(papers.values()).items()):
        # one reader per later day with their papers: the library is everything they had
        # before that day, the pool that day's list (what a daily run ranks), the targets
        # their papers in it
        for day in sorted({p.digest_date for p in theirs}):
            earlier = [p for p in theirs if p.digest_date < day]
            targets = frozenset(p.paper_id for p in theirs if p.digest_date == day)
            if not earlier:
                continue
            readers.append(
                Reader(
                    name=f"{name} @ {day}",
                    library=tuple(LibraryEntry(arxiv_id=p.arxiv_id) for p in earlier),
                    pool=tuple(sorted(lists[day], key=lambda p: p.paper_id)),
                    targets=targets,
                    topics=_topics(earlier),
                )
            )
    return corpus, readers


def _papers(wh: Warehouse) -> dict[str, DigestPaper]:
    """Every paper with its latest upvotes, as the digest would show it."""
    papers = {}
    for row in wh.fetch_dicts(PAPERS_SQL):
        papers[row["paper_id"]] = DigestPaper(
            paper_id=row["paper_id"],
            arxiv_id=row["arxiv_id"],
            title=row["title"] or "",
            abstract=row["abstract"] or "",
            authors=tuple(row["authors"] or ()),
            digest_date=row["first_digest_date"],
            upvotes=row["upvotes"],
            ai_keywords=tuple(row["ai_keywords"] or ()),
            organization=row["organization"],
        )
    return papers


def _by_entity(papers: Iterable[DigestPaper]) -> dict[str, list[DigestPaper]]:
    """Papers by author ("author:NAME") and by organisation ("org:NAME")."""
    grouped: dict[str, list[DigestPaper]] = defaultdict(list)
    for paper in papers:
        for author in paper.authors:
            grouped[f"author:{author}"].append(paper)
        if paper.organization:
            grouped[f"org:{paper.organization}"].append(paper)
    return grouped


# ---- synthetic history ------------------------------------------------------------------


def synthetic_readers(ctx: Context) -> tuple[list[CorpusPaper], list[Reader]]:
    """(author or organisation, held-out recorded paper) readers over synthetic history."""
    history = history_for(ctx, ctx.scaled(365, 30))
    with Warehouse.open(history.path) as wh:
        corpus, papers = wh.ranking_corpus(), _papers(wh)
    pool_start = _weekdays_back(history.last_day, SYNTHETIC_POOL_DAYS)
    in_pool = [p for p in papers.values() if p.digest_date >= pool_start]
    texts = {p.paper_id: _text_key(p) for p in papers.values()}
    one_copy = {texts[p.paper_id]: p for p in sorted(papers.values(), key=lambda p: p.paper_id)}
    readers, held_out_texts = [], set()
    for name, theirs in sorted(_by_entity(one_copy.values()).items()):
        own = {texts[p.paper_id]: p for p in theirs}
        if len(own) < 2:
            continue
        for held_out in sorted(own):
            targets = frozenset(p.paper_id for p in in_pool if texts[p.paper_id] == held_out)
            if not targets:
                continue
            library = [p for key, p in own.items() if key != held_out]
            library_texts = {texts[p.paper_id] for p in library}
            held_out_texts.add(held_out)
            readers.append(
                Reader(
                    name=f"{name} / {own[held_out].paper_id}",
                    library=tuple(_text_entry(p) for p in library),
                    pool=tuple(p for p in in_pool if texts[p.paper_id] not in library_texts),
                    targets=targets,
                    topics=_topics(library),
                )
            )
    # Before the pool's days, a held-out paper did not exist yet: it is no negative example.
    pool_ids = {p.paper_id for p in in_pool}
    kept = [
        c for c in corpus if c.paper_id in pool_ids or texts.get(c.paper_id) not in held_out_texts
    ]
    return kept, readers


def _text_entry(paper: DigestPaper) -> LibraryEntry:
    """A library entry by its text only (its copies may not be in the corpus)."""
    return LibraryEntry(
        title=paper.title, abstract=paper.abstract, keywords=tuple(paper.ai_keywords)
    )


def _text_key(paper: DigestPaper) -> str:
    return hashlib.sha256(paper.abstract.encode()).hexdigest()


def _weekdays_back(last: date, n: int) -> date:
    day, seen = last, 0
    while True:
        if day.weekday() < 5:
            seen += 1
            if seen == n:
                return day
        day -= timedelta(days=1)


# ---------------------------------------------------------------------------------------
# Speed


def speed_rows(ctx: Context) -> list[Row]:
    """Rank the last day of a year of history for 1,000 readers: cold, then cached."""
    history = history_for(ctx, ctx.scaled(365, 30))
    n_readers = ctx.scaled(1000, 100)
    with Warehouse.open(history.path) as wh:
        corpus, papers = wh.ranking_corpus(), _papers(wh)
    candidates = [p for p in papers.values() if p.digest_date == history.last_day]
    libraries = speed_libraries(corpus, n_readers)
    cache = ctx.folder("rank") / "rank-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cold_stats, warm_stats = RankStats(), RankStats()
    cold = timed(lambda: rank_readers(corpus, candidates, libraries, cache_dir=cache,
                                      stats=cold_stats))  # fmt: skip
    cached = timed(lambda: rank_readers(corpus, candidates, libraries, cache_dir=cache,
                                        stats=warm_stats))  # fmt: skip
    size_mb = sum(p.stat().st_size for p in cache.iterdir()) / 1e6
    case = (
        f"{n_readers:,} readers × {LIBRARY_SIZE}-paper libraries, {len(candidates)} candidates, "
        f"corpus {len(corpus):,} papers"
    )
    judged = not ctx.quick
    return [
        _speed_row(f"cold: {case}", cold, COLD_LIMIT_S, judged,
                   f"{cold_stats.fitted:,} models fitted; cache {size_mb:.0f} MB"),
        _speed_row(f"cached: {case}", cached, CACHED_LIMIT_S, judged,
                   f"{warm_stats.cached:,} models from the cache, {warm_stats.fitted} fitted"),
    ]  # fmt: skip


def speed_libraries(corpus: Sequence[CorpusPaper], n_readers: int) -> dict[str, Library]:
    """Readers with 50-paper libraries (random corpus papers, a fixed seed)."""
    rng = random.Random(15)
    ids = [c.arxiv_id or c.paper_id for c in corpus]
    libraries = {}
    for i in range(n_readers):
        picked = rng.sample(ids, min(LIBRARY_SIZE, len(ids)))
        libraries[f"reader{i}@bench.test"] = Library(
            "bench", "ids", tuple(LibraryEntry(arxiv_id=a) for a in picked)
        )
    return libraries


def _speed_row(case: str, seconds: float, limit: float, judged: bool, note: str) -> Row:
    missed = judged and seconds >= limit
    verdict = (
        f"< {limit:g} s: {'❌ missed' if missed else '✅ met'}" if judged else "quick: no target"
    )
    return Row(
        SECTION,
        case,
        f"{seconds:.2f} s",
        verdict=verdict,
        peak_mb=peak_rss_mb(),
        note=note,
        missed=missed,
        figures={"seconds": seconds},
    )
