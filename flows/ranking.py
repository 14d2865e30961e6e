"""Personal ranking: order the day's candidates by what each reader already reads.

As arxiv-sanity-lite does: every warehouse paper becomes a TF-IDF vector of its title, abstract
and keywords; for each reader a linear SVM learns their library (positives) against the other
papers of the warehouse (negatives), and scores the day's candidates. "Close to" names the
library paper nearest to a candidate by cosine similarity, so each choice can be explained.

Optional backend: sentence embeddings from fastembed, used only when PAPERDIGEST_EMBED_MODEL_DIR
holds a model (nothing is ever downloaded); otherwise, with one warning, TF-IDF.

Fitting is the slow part, so it is cached as files: the corpus features under a key that is the
hash of the corpus, and each reader's model under the hash of the corpus and of the library.
A run refits only what changed. This module never opens the warehouse: the pipeline reads the
corpus (`Warehouse.ranking_corpus`) and hands it over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from flows.atomic import write_atomic
from flows.library import Library, LibraryEntry, LibraryError, load_stored_library
from flows.models import CorpusPaper, Digest, DigestPaper, ForYou, RankedPaper, Recipient

log = logging.getLogger("paperdigest.ranking")

# Bump when the features or the model change: every cached file becomes stale at once.
MODEL_VERSION = "1"
DEFAULT_TOP_K = 10
MAX_FEATURES = 30_000
# Each reader's SVM sees at most this many negatives (a fixed sample per reader), which keeps
# a cold start of 1,000 readers within a minute on a large warehouse.
MAX_NEGATIVES = 1_500
SVM_C = 0.01
EMBED_MODEL_ENV = "PAPERDIGEST_EMBED_MODEL_DIR"
EMBED_MODEL_NAME = "BAAI/bge-small-en-v1.5"
TFIDF, EMBEDDINGS = "tf-idf", "embeddings"


@dataclass(slots=True)
class RankStats:
    """What a ranking pass did: models fitted, models read from the cache, readers skipped."""

    corpus_fitted: bool = False
    fitted: int = 0
    cached: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (address, reason)


@dataclass(frozen=True, slots=True)
class _ReaderModel:
    """A reader's linear model plus the library vectors and titles for "close to"."""

    weights: np.ndarray  # one weight per feature
    bias: float
    library: sparse.csr_matrix  # one L2-normalised row per library paper
    titles: tuple[str, ...]
    paper_ids: frozenset[str]  # library papers found in the corpus (never recommended)


# ---------------------------------------------------------------------------------------
# Backends: text → L2-normalised feature rows


class TfidfBackend:
    """TF-IDF over words and word pairs (scikit-learn), as arxiv-sanity-lite does."""

    name = TFIDF

    def __init__(self) -> None:
        self.vectorizer: Any = None

    def fit(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Learn the vocabulary from the corpus and return its rows."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            stop_words="english",
            strip_accents="unicode",
            sublinear_tf=True,
            ngram_range=(1, 2),
            max_features=MAX_FEATURES,
            max_df=0.5 if len(texts) >= 50 else 1.0,
            dtype=np.float32,
        )
        return sparse.csr_matrix(self.vectorizer.fit_transform(texts))

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Rows for texts outside the corpus (library entries, unseen candidates)."""
        return sparse.csr_matrix(self.vectorizer.transform(texts))


class EmbeddingBackend:
    """Sentence embeddings from a fastembed model already on disk (never downloaded)."""

    name = EMBEDDINGS

    def __init__(self, model_dir: Path) -> None:
        from fastembed import TextEmbedding

        self.model_dir = model_dir
        self.model = TextEmbedding(
            # local_files_only: a model that is not on disk raises instead of downloading
            model_name=EMBED_MODEL_NAME,
            cache_dir=str(model_dir),
            local_files_only=True,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir}  # the model itself is reloaded, never pickled

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_dir"])

    def fit(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Embed the corpus (an embedding model has nothing to learn from it)."""
        return self.transform(texts)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Embeddings as unit-length rows."""
        if not texts:
            return sparse.csr_matrix((0, 0), dtype=np.float32)
        rows = np.asarray(list(self.model.embed(list(texts))), dtype=np.float32)
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return sparse.csr_matrix(rows)


def choose_backend(model_dir: str | Path | None = None) -> TfidfBackend | EmbeddingBackend:
    """The embedding backend when a usable model is on disk, else TF-IDF (saying why, once)."""
    if model_dir is None:
        model_dir = os.environ.get(EMBED_MODEL_ENV, "").strip() or None
    if not model_dir:
        return TfidfBackend()
    path = Path(model_dir).expanduser()
    try:
        if not path.is_dir() or not any(path.iterdir()):
            raise FileNotFoundError(f"no model in {path}")
        return EmbeddingBackend(path)
    except ImportError:
        reason = "fastembed is not installed (pip install 'paperdigest[embed]')"
    except Exception as err:  # a broken or partial model folder: any error means "unusable"
        reason = " ".join(str(err).split())[:200] or type(err).__name__
    log.warning(
        "%s=%s: embedding model unusable (%s); ranking with TF-IDF", EMBED_MODEL_ENV, path, reason
    )
    return TfidfBackend()


# ---------------------------------------------------------------------------------------
# The corpus


@dataclass(slots=True)
class _Corpus:
    """The corpus as features: one row per paper, a row index by paper id, the backend."""

    key: str
    backend: Any
    matrix: sparse.csr_matrix
    row_of: dict[str, int]
    titles: list[str]
    ids: list[tuple[str, str | None]]  # (paper_id, arxiv_id) of each row
    text_hashes: np.ndarray  # a hash of each row's text, to tell duplicates


def corpus_key(corpus: Sequence[CorpusPaper], backend_name: str) -> str:
    """SHA-256 of the corpus (ids and text, in order) and of how it is featurised."""
    digest = hashlib.sha256(f"{MODEL_VERSION}|{backend_name}|{MAX_FEATURES}\n".encode())
    for paper in corpus:
        digest.update(f"{paper.paper_id}\x1f{paper.text}\x1e".encode())
    return digest.hexdigest()


def _load_corpus(
    corpus: Sequence[CorpusPaper], backend: Any, cache_dir: Path | None, stats: RankStats
) -> _Corpus:
    # another embedding model means other features: its folder is part of the key
    key = corpus_key(corpus, f"{backend.name}:{getattr(backend, 'model_dir', '')}")
    path = cache_dir / f"corpus-{backend.name}-{key[:24]}.pkl" if cache_dir else None
    cached = _read_pickle(path) if path else None
    if cached is not None:
        fitted_backend, matrix = cached
    else:
        stats.corpus_fitted = True
        matrix = backend.fit([p.text for p in corpus])
        # liblinear wants sorted column indices; sorted once here, every row taken from the
        # matrix stays sorted and no per-reader fit has to sort its copy again (~40% of it)
        matrix.sort_indices()
        fitted_backend = backend
        if path:
            _prune(cache_dir, keep=key[:24])
            write_atomic(path, pickle.dumps((backend, matrix), protocol=5))
    row_of = {p.paper_id: i for i, p in enumerate(corpus)}
    for i, p in enumerate(corpus):  # library entries name arXiv ids, candidates paper ids
        if p.arxiv_id:
            row_of.setdefault(p.arxiv_id, i)
    ids = [(p.paper_id, p.arxiv_id) for p in corpus]
    hashes = np.array([_text_hash(p.text) for p in corpus], dtype=np.uint64)
    return _Corpus(key, fitted_backend, matrix, row_of, [p.title for p in corpus], ids, hashes)


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# ---------------------------------------------------------------------------------------
# Ranking


def rank_readers(
    corpus: Sequence[CorpusPaper],
    candidates: Sequence[DigestPaper],
    libraries: Mapping[str, Library],
    *,
    cache_dir: Path | None = None,
    top_k: int = DEFAULT_TOP_K,
    backend: Any = None,
    stats: RankStats | None = None,
) -> dict[str, ForYou]:
    """Each reader's top-k of the candidates, best first, each with its nearest library paper.

    Readers whose library has nothing to learn from (no entry found in the corpus and none with
    text) are left out of the answer, so their email stays unranked; `stats` says why.
    """
    stats = stats if stats is not None else RankStats()
    if not libraries or not candidates or not corpus:
        for address in libraries:
            stats.skipped.append((address, "nothing to rank" if corpus else "empty warehouse"))
        return {}
    backend = backend or choose_backend()
    if cache_dir:
        cache_dir.mkdir(parents=True, exist_ok=True)
    loaded = _load_corpus(corpus, backend, cache_dir, stats)
    features = _candidate_rows(loaded, candidates)
    ranked: dict[str, ForYou] = {}
    for address, library in libraries.items():
        model = _reader_model(loaded, library, cache_dir, stats)
        if model is None:
            stats.skipped.append((address, "no library entry is in the warehouse or has text"))
            continue
        ranked[address] = ForYou(
            picks=_top_k(model, features, candidates, top_k),
            n_library=model.library.shape[0],
            backend=backend.name,
        )
    log.info(
        "ranked %d reader(s) with %s: %d model(s) fitted, %d from the cache, %d skipped",
        len(ranked),
        backend.name,
        stats.fitted,
        stats.cached,
        len(stats.skipped),
    )
    return ranked


def rank_recipients(
    read_corpus: Callable[[], Sequence[CorpusPaper]],
    digest: Digest,
    recipients: Sequence[Recipient],
    *,
    cache_dir: Path | None,
    top_k: int = DEFAULT_TOP_K,
    model_dir: Path | None = None,
) -> dict[str, ForYou]:
    """Rank a digest for every recipient with a library (the corpus is read only if needed).

    Ranking is an extra: a reader whose stored library cannot be read, or any failure of the
    ranking itself, is logged and leaves that email unranked rather than unsent.
    """
    candidates = digest_candidates(digest)
    if not candidates:  # nothing new today: nothing to rank, and nothing to say about it
        return {}
    libraries: dict[str, Library] = {}
    for recipient in recipients:
        if recipient.library is None:
            continue
        try:
            libraries[recipient.address] = load_stored_library(recipient.library)
        except LibraryError as err:
            log.warning("%s gets an unranked digest: %s", recipient.address, err)
    if not libraries:
        return {}
    try:
        stats = RankStats()
        ranked = rank_readers(
            read_corpus(),
            candidates,
            libraries,
            cache_dir=cache_dir,
            top_k=top_k,
            backend=choose_backend(model_dir),
            stats=stats,
        )
    except Exception:
        log.exception("personal ranking failed: every reader gets the unranked digest")
        return {}
    for address, reason in stats.skipped:
        log.warning("%s gets an unranked digest: %s", address, reason)
    return ranked


def digest_candidates(digest: Digest) -> list[DigestPaper]:
    """The papers a digest can recommend: new, trending and late, each paper once."""
    seen: set[str] = set()
    papers = []
    for paper in (*digest.trending, *digest.new, *digest.late):
        if paper.paper_id not in seen:
            seen.add(paper.paper_id)
            papers.append(paper)
    return papers


def _candidate_rows(loaded: _Corpus, candidates: Sequence[DigestPaper]) -> sparse.csr_matrix:
    """The candidates' rows: from the corpus when there, else featurised from their text."""
    rows = [loaded.row_of.get(p.paper_id) for p in candidates]
    missing = [i for i, row in enumerate(rows) if row is None]
    known = loaded.matrix[[row if row is not None else 0 for row in rows]]
    if not missing:
        return sparse.csr_matrix(known)
    texts = [_paper_text(candidates[i]) for i in missing]
    fresh = loaded.backend.transform(texts).tolil()
    known = known.tolil()
    for j, i in enumerate(missing):
        known[i] = fresh[j]
    return sparse.csr_matrix(known)


def _top_k(
    model: _ReaderModel,
    features: sparse.csr_matrix,
    candidates: Sequence[DigestPaper],
    top_k: int,
) -> tuple[RankedPaper, ...]:
    scores = features @ model.weights + model.bias
    nearest = (features @ model.library.T).toarray() if model.library.shape[0] else None
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i].paper_id))
    picks = []
    for i in order:
        paper = candidates[i]
        if paper.paper_id in model.paper_ids or paper.arxiv_id in model.paper_ids:
            continue  # already in the reader's library
        close_to = ""
        if nearest is not None and nearest[i].max() > 0:
            close_to = model.titles[int(nearest[i].argmax())]
        picks.append(RankedPaper(paper.paper_id, float(scores[i]), close_to))
        if len(picks) == top_k:
            break
    return tuple(picks)


def _paper_text(paper: DigestPaper) -> str:
    return " ".join(p for p in (paper.title, paper.abstract, " ".join(paper.ai_keywords)) if p)


# ---------------------------------------------------------------------------------------
# Per-reader models


def model_key(corpus_hash: str, library: Library) -> str:
    """The cache key of one reader's model: the corpus hash and the library hash together."""
    return hashlib.sha256(f"{corpus_hash}|{library.sha256}".encode()).hexdigest()


def _reader_model(
    loaded: _Corpus, library: Library, cache_dir: Path | None, stats: RankStats
) -> _ReaderModel | None:
    key = model_key(loaded.key, library)
    path = cache_dir / f"reader-{loaded.key[:24]}-{key[:24]}.pkl" if cache_dir else None
    if path and path.exists():
        model = _read_model(path)
        if model is not None:
            stats.cached += 1
            return model
    model = _fit(loaded, library.entries, seed=int(key[:8], 16))
    if model is None:
        return None
    stats.fitted += 1
    if path:
        _write_model(path, model)
    return model


def _fit(loaded: _Corpus, entries: Sequence[LibraryEntry], seed: int) -> _ReaderModel | None:
    """A linear SVM: the library (found in the corpus, or by its own text) against the rest."""
    from sklearn.svm import LinearSVC

    rows, texts, titles = [], [], []
    for entry in entries:
        row = loaded.row_of.get(entry.arxiv_id or "")
        if row is not None:
            rows.append(row)
            titles.append(loaded.titles[row] or entry.title)
        elif entry.text:
            texts.append(entry.text)
            titles.append(entry.title or entry.arxiv_id or "")
    if not rows and not texts:
        return None
    positives = loaded.matrix[rows]
    if texts:
        positives = sparse.vstack([positives, loaded.backend.transform(texts)], format="csr")
    negatives = _negative_rows(loaded, rows, seed)
    if not negatives:  # the library is the whole corpus: rank by closeness to its centre
        centre = np.asarray(positives.mean(axis=0)).ravel().astype(np.float32)
        weights, bias = _half(centre), 0.0
    else:
        x = sparse.vstack([positives, loaded.matrix[negatives]], format="csr")
        y = np.r_[np.ones(positives.shape[0]), np.zeros(len(negatives))]
        # arxiv-sanity-lite's SVM (C=0.01); a looser tolerance than its 1e-6 ranks the same
        svm = LinearSVC(class_weight="balanced", C=SVM_C, tol=1e-3, random_state=0)
        svm.fit(x, y)
        weights, bias = _half(svm.coef_.ravel()), float(svm.intercept_[0])
    ids = frozenset(i for row in rows for i in loaded.ids[row] if i)
    library = sparse.csr_matrix(positives)
    library.data = _half(library.data)
    return _ReaderModel(weights, bias, library, tuple(titles), ids)


def _half(weights: np.ndarray) -> np.ndarray:
    """Weights at the precision the cache keeps (float16), so cached and fresh agree."""
    return weights.astype(np.float16).astype(np.float32)


def _negative_rows(loaded: _Corpus, positives: list[int], seed: int) -> list[int]:
    """The corpus rows that are not the reader's, a fixed random sample when there are many.

    A paper with the very text of a library paper (a re-listing under another id) is no
    negative example: learning it both ways only slows the fit down.
    """
    mask = ~np.isin(loaded.text_hashes, loaded.text_hashes[positives])
    others = np.flatnonzero(mask)
    if len(others) > MAX_NEGATIVES:
        others = np.sort(np.random.default_rng(seed).choice(others, MAX_NEGATIVES, replace=False))
    return others.tolist()


# ---------------------------------------------------------------------------------------
# Cache files


def default_cache_dir(warehouse: Path) -> Path:
    """The model cache: `rank-cache/` beside the warehouse file."""
    return warehouse.parent / "rank-cache"


def _write_model(path: Path, model: _ReaderModel) -> None:
    """One small pickle per reader: plain arrays and strings (faster to read than .npz)."""
    lib = model.library
    record = {
        "weights": model.weights.astype(np.float16),  # half the size; ample for an order
        "bias": model.bias,
        "data": lib.data.astype(np.float16),
        "indices": lib.indices,
        "indptr": lib.indptr,
        "shape": lib.shape,
        "titles": model.titles,
        "paper_ids": sorted(model.paper_ids),
    }
    write_atomic(path, pickle.dumps(record, protocol=5))


def _read_model(path: Path) -> _ReaderModel | None:
    record = _read_pickle(path)
    if record is None:
        return None
    try:
        data = record["data"].astype(np.float32)
        library = sparse.csr_matrix((data, record["indices"], record["indptr"]), record["shape"])
        return _ReaderModel(
            weights=record["weights"].astype(np.float32),
            bias=float(record["bias"]),
            library=library,
            titles=tuple(record["titles"]),
            paper_ids=frozenset(record["paper_ids"]),
        )
    except Exception as err:  # a damaged cache file is refitted, never trusted
        log.warning("ignoring the damaged ranking cache file %s: %s", path, err)
        return None


def _read_pickle(path: Path) -> Any:
    """A cache file written by this module (the cache folder is ours alone); None if unusable."""
    if not path.exists():
        return None
    try:
        return pickle.loads(path.read_bytes())
    except Exception as err:
        log.warning("ignoring the damaged ranking cache file %s: %s", path, err)
        return None


def _prune(cache_dir: Path, keep: str) -> None:
    """Remove cached corpora and models of other corpora: they can never be used again."""
    for stale in cache_dir.glob("corpus-*.pkl"):
        if keep not in stale.name:
            stale.unlink(missing_ok=True)
    for stale in cache_dir.glob("reader-*.pkl"):
        if not stale.name.startswith(f"reader-{keep}-"):
            stale.unlink(missing_ok=True)
