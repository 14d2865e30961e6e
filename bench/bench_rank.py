"""Personal ranking: how good (precision@10, recall@25) and how fast (1,000 readers).

Quality. Readers are built from signals already in the data: an author's or organisation's
earlier papers are the library, their later papers the targets. Each reader's pool is the
candidates they would have been shown (below); three orders of it are scored against the
targets:

* the ranking (flows.ranking, TF-IDF + a linear SVM per reader, as a daily run does it);
* upvote order (what everyone's digest shows);
* the keyword-topic filter: the reader's 3 most frequent keywords in their library as include
  topics (flows.render.match_topics), matches first, each part by upvotes.

On the recorded days (tests/fixtures/hf-api plus the recorded HTML day page: real papers, real
authors and upvotes, and organisations where the newer API eras carry them), a reader is an
author or organisation with two or more listed papers, split in time (digest day, then arXiv
id): the earlier half is the library, the rest the targets. Their pool is every recorded list
from the day of their last library paper on, as a reader who subscribed that day was shown
them (a single day's list of 13-23 papers with one target caps precision@10 at 0.1 for any
order, and top-10 of it is half the list). Co-authors with the same library and targets are
one reader, not five; a name listed twice on one paper counts the paper once. The data allows
no more: only 85 recorded papers carry authors, no entity has more than three, so libraries
are one paper and the best precision@10 any order can reach is ~0.1, below 3× upvote order's.
Common names ("Wei Li") may well be different people, so the readers are noisy too.

Synthetic history (bench/history.py) is not more data: every synthetic paper is a copy of one
of those ~85 recorded papers under a new id and title suffix, with upvotes made by a hash. It
is evaluated on one copy of each text (see synthetic_readers) and reported, not judged: its
"upvote order" is a random order. The target is judged on the recorded days.

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
RECORDED_RULE = (
    "each author or organisation with ≥ 2 listed papers, in time order (day, then arXiv id): "
    "library the earlier half, targets the rest (no entity has > 3 papers, so none has ≥ 3 "
    "library papers); pool every list from the library's last day on; co-authors with the "
    "same library and targets counted once"
)
SYNTHETIC_RULE = (
    "no target: the ~85 recorded papers again, one copy each, upvotes made by a hash (upvote "
    "order is random order); each author or organisation with ≥ 2 papers, one held out as "
    "the target, the rest the library; pool the last 5 weekdays' papers"
)

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
    # The target is judged on the recorded days: real papers, real authors, real upvotes.
    # Synthetic history is the same ~85 papers again with hash-made upvotes, so its upvote
    # order is a random order, and it is reported beside them, not judged.
    rows = [*quality_rows("recorded days", *recorded_readers(ctx), rule=RECORDED_RULE)]
    rows += quality_rows("synthetic history", *synthetic_readers(ctx), rule=SYNTHETIC_RULE)
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
    label: str, corpus: Sequence[CorpusPaper], readers: Sequence[Reader], *, rule: str
) -> list[Row]:
    """Two rows: precision@10 and recall@25 of the ranking, next to both baselines.

    A rule that starts with "no target" is reported, not judged.
    """
    scores = evaluate(corpus, readers)
    ours, upvotes, topics = scores["ranking"], scores["upvotes"], scores["topics"]
    ratio = ours.precision10 / upvotes.precision10 if upvotes.precision10 else float("inf")
    verdict, missed = "no target", False
    if not rule.startswith("no target"):
        missed = ratio < TARGET_RATIO or len(readers) < MIN_READERS
        verdict = (
            f"≥ {TARGET_RATIO:g}× upvote order over ≥ {MIN_READERS} readers: {ratio:.2f}× "
            f"over {len(readers)} {'❌ missed' if missed else '✅ met'}"
        )
    note = f"{_shape(corpus, readers)}. Readers: {rule}"
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


def _shape(corpus: Sequence[CorpusPaper], readers: Sequence[Reader]) -> str:
    """Readers, library, pool and target sizes, and the best precision@10 any order can get."""
    n_library = statistics.mean(len(r.library) for r in readers)
    n_targets = statistics.mean(len(r.targets) for r in readers)
    n_pool = statistics.mean(len(r.pool) for r in readers)
    best = statistics.mean(min(len(r.targets), 10) / 10 for r in readers)
    return (
        f"{len(readers)} readers, libraries of {n_library:.1f} papers, pools of {n_pool:.0f} "
        f"candidates with {n_targets:.2f} targets (best possible precision@10 {best:.3f}); "
        f"corpus {len(corpus):,} papers"
    )


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
    """Authors and organisations with two or more listed papers on the recorded days."""
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
    entities = sorted(_by_entity(papers.values()).items())
    return corpus, _distinct(_recorded_reader(name, theirs, lists) for name, theirs in entities)


def _recorded_reader(
    name: str, theirs: Sequence[DigestPaper], lists: dict[date, list[DigestPaper]]
) -> Reader | None:
    """One reader per author or organisation with ≥ 2 papers, split in time.

    Time order is the digest day, then the arXiv id (arXiv numbers papers as they are
    submitted), so two papers of one day are split too. The library is the earlier half
    (at least one paper) and the targets the rest: no entity of the recorded days has more
    than 3 papers, so "≥ 3 library papers and ≥ 2 targets" would leave no reader at all. The
    pool is every recorded list from the day of the last library paper on (what a reader who
    subscribed that day was shown, as one period), less the library: a single day's list of
    13-23 papers with one target caps precision@10 at 0.1 whatever the order.
    """
    listed = sorted((p for p in theirs if p.upvotes), key=lambda p: (p.digest_date, p.paper_id))
    if len(listed) < 2:
        return None
    split = len(listed) // 2
    library, later = listed[:split], listed[split:]
    start = library[-1].digest_date
    own = {p.paper_id for p in library}
    pool = [p for day in sorted(lists) if day >= start for p in lists[day] if p.paper_id not in own]
    return Reader(
        name=name,
        library=tuple(LibraryEntry(arxiv_id=p.arxiv_id) for p in library),
        pool=tuple(sorted(pool, key=lambda p: p.paper_id)),
        targets=frozenset(p.paper_id for p in later),
        topics=_topics(library),
    )


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
    """Papers by author ("author:NAME") and by organisation ("org:NAME"), each paper once.

    A name can appear twice in one author list (the Llama 3 paper lists some twice): counted
    twice, the paper would be both the library and the target of the same reader.
    """
    grouped: dict[str, dict[str, DigestPaper]] = defaultdict(dict)
    for paper in papers:
        names = [f"author:{a}" for a in paper.authors]
        names += [f"org:{paper.organization}"] if paper.organization else []
        for name in names:
            grouped[name][paper.paper_id] = paper
    return {name: list(theirs.values()) for name, theirs in grouped.items()}


def _distinct(readers: Iterable[Reader | None]) -> list[Reader]:
    """One reader per distinct (library, targets) pair.

    Co-authors of the same papers make the same reader: five authors of one paper pair would
    count that one test five times. The first name (in sorted order) stands for them all.
    """
    seen: dict[tuple, Reader] = {}
    for reader in readers:
        if reader is not None:
            seen.setdefault((reader.library, reader.targets), reader)
    return list(seen.values())


# ---- synthetic history ------------------------------------------------------------------


def synthetic_readers(ctx: Context) -> tuple[list[CorpusPaper], list[Reader]]:
    """(author or organisation, held-out paper) readers over synthetic history's distinct texts.

    Every synthetic paper is a copy of one of the ~85 recorded papers (same abstract and
    authors, a new id and title suffix, hash-made upvotes), so the history holds ~85 papers,
    each listed ~85 times. Copies are kept out: one copy of each text is the corpus (the one
    in the pool where there is one), or a library paper's copies would be its own negative
    examples and a target would count two or three times. The pool is that one copy of each
    text listed in the last five weekdays, less the library; the target is the held-out paper.
    Copies are spread over the whole year, so there is no time order to split by.
    """
    history = history_for(ctx, ctx.scaled(365, 30))
    with Warehouse.open(history.path) as wh:
        corpus, papers = wh.ranking_corpus(), _papers(wh)
    pool_start = _weekdays_back(history.last_day, SYNTHETIC_POOL_DAYS)
    in_time = sorted(papers.values(), key=lambda p: (p.digest_date, p.paper_id))
    pool = {_text_key(p): p for p in reversed(in_time) if p.digest_date >= pool_start}
    one_copy = {_text_key(p): p for p in in_time} | pool  # the pool's copy, else the latest
    readers = [
        _synthetic_reader(name, {_text_key(p) for p in theirs}, held_out, one_copy, pool)
        for name, theirs in sorted(_by_entity(one_copy.values()).items())
        for held_out in sorted({_text_key(p) for p in theirs} & pool.keys())
    ]
    kept = {p.paper_id for p in one_copy.values()}
    return [c for c in corpus if c.paper_id in kept], _distinct(readers)


def _synthetic_reader(
    name: str,
    own: set[str],
    held_out: str,
    one_copy: dict[str, DigestPaper],
    pool: dict[str, DigestPaper],
) -> Reader | None:
    """The reader of `name` whose target is the held-out text (None without a library)."""
    library = [one_copy[key] for key in sorted(own - {held_out})]
    if not library:
        return None
    candidates = [p for key, p in pool.items() if key not in own or key == held_out]
    return Reader(
        name=f"{name} / {pool[held_out].paper_id}",
        library=tuple(LibraryEntry(arxiv_id=p.arxiv_id) for p in library),
        pool=tuple(sorted(candidates, key=lambda p: p.paper_id)),
        targets=frozenset({pool[held_out].paper_id}),
        topics=_topics(library),
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
