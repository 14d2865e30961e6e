"""Hostile and broken input: the corpus in tests/fixtures/hostile/ (see make_corpus.py).

Every corpus file is loaded in ONE run together with the real recorded pages, interleaved, the
way `paperdigest import DIR` would meet them. Each file must end as its manifest entry says:
refused as a whole (a one-line error naming the file and the reason; only a `rejects` row), or
parsed into exactly N papers and M quarantined entries (with reasons). Every good page of the
same run still loads, nothing raises, nothing logs a traceback. A 50 MB page of repeated cards
is generated at test time and must be handled in bounded memory.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path

import pytest

from flows.pipeline import PageOutcome, ingest_files
from flows.warehouse import Warehouse

from .support import (
    API_FIXTURES,
    CORPUS,
    HOSTILE,
    HTML_FIXTURE,
    ROOT,
    SEEDS,
    cli_env,
    manifest,
    paperdigest_lines,
    peak_rss_mb,
    query,
    run_cli,
)

CASES = manifest()
REFUSED = [case for case in CASES if case["expect"] == "refused"]
# The recorded pages and what they hold (tests/test_flows.py and tests/test_warehouse.py agree).
GOOD_PAGES = {
    "daily_papers_2024-05-27.json": 13,
    "daily_papers_2025-01-21.json": 1,
    "daily_papers_2025-03-31.json": 15,
    "daily_papers_2026-08-13.json": 20,
    "daily_papers_2026-08-14.json": 23,
    "papers_2024-08-01.html": 13,
    "000_9e473fa17dbd8c2f.txt": 229,
    "001_817413739b35ed18.txt": 113,
    "002_55e7857e2ab8d0d2.txt": 67,
}
BIG_PAGE_MB = 50
RSS_GROWTH_LIMIT_MB = 400


@dataclass
class CorpusRun:
    """One import run over the whole corpus and the good pages, and what it left behind."""

    db: Path
    outcomes: dict[str, PageOutcome]
    log: list[logging.LogRecord]
    unexpected: list[str]  # anything raised while importing: there must be nothing


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    """Import every hostile file and every recorded page in one run, good and bad interleaved."""
    db = tmp_path_factory.mktemp("corpus") / "papers.duckdb"
    good = [*API_FIXTURES, HTML_FIXTURE, *SEEDS]
    hostile = [CORPUS / case["file"] for case in CASES]
    step = max(1, len(hostile) // len(good))
    order: list[Path] = []
    for index, path in enumerate(hostile):
        order.append(path)
        if index % step == step - 1 and good:
            order.append(good.pop(0))
    order += good
    collect = _Collect()
    logging.getLogger().addHandler(collect)
    unexpected: list[str] = []
    outcomes: dict[str, PageOutcome] = {}
    try:
        with Warehouse.open(db) as wh:
            run_id = wh.start_run("import", {"paths": ["corpus"]})
            try:
                for outcome in ingest_files(wh, order, run_id, None, date.today()):
                    outcomes[Path(outcome.location).name] = outcome
            except Exception as exc:  # ingest_files must report, never raise
                unexpected.append(f"{type(exc).__name__}: {exc}")
            wh.finish_run(run_id, "partial", {})
    finally:
        logging.getLogger().removeHandler(collect)
    return CorpusRun(db, outcomes, collect.records, unexpected)


# ---- the corpus itself ----------------------------------------------------------------------


def test_corpus_has_forty_plus_files_under_two_megabytes_all_in_the_manifest() -> None:
    """The committed corpus is big enough to mean something and small enough to commit."""
    on_disk = sorted(p.name for p in CORPUS.iterdir())
    assert sorted(case["file"] for case in CASES) == on_disk
    assert len(on_disk) >= 40
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 2_000_000
    names = " ".join(on_disk)
    assert len(re.findall(r"api-truncated-at-\d+", names)) >= 6
    assert len(re.findall(r"html-truncated-", names)) >= 5


def test_committed_corpus_is_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    """make_corpus.py is the corpus's source of truth: regenerating changes no byte."""
    subprocess.run(
        [sys.executable, str(HOSTILE / "make_corpus.py"), "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "corpus").iterdir()}
    committed = {p.name: p.read_bytes() for p in CORPUS.iterdir()}
    assert fresh.keys() == committed.keys()
    assert [name for name in fresh if fresh[name] != committed[name]] == []
    assert (tmp_path / "manifest.json").read_bytes() == (HOSTILE / "manifest.json").read_bytes()


# ---- each hostile file ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_hostile_file_is_refused_or_quarantined_as_its_manifest_says(
    corpus_run: CorpusRun, case: dict
) -> None:
    """Refused: one line `<file>: <reason>` and only a rejects row. Parsed: N papers, M rejects."""
    path = CORPUS / case["file"]
    outcome = corpus_run.outcomes.get(case["file"])
    assert outcome is not None, f"{case['file']} was not processed: {corpus_run.unexpected}"
    pages = query(
        corpus_run.db,
        "SELECT page_id, fmt, n_entries, n_rejected FROM pages WHERE location = $l",
        {"l": str(path)},
    )
    rejects = query(
        corpus_run.db,
        "SELECT page_id, position, reason FROM rejects WHERE location = $l ORDER BY position",
        {"l": str(path)},
    )
    if case["expect"] == "refused":
        assert outcome.load is None, (
            f"{case['what']}: must be refused as a whole, but it loaded "
            f"{outcome.load.n_entries} entries and {outcome.load.n_rejected} rejects"
        )
        error = outcome.error or ""
        assert error.startswith(f"{path}: "), error
        reason = error.removeprefix(f"{path}: ")
        assert "\n" not in error and "\r" not in error and "Traceback" not in error
        assert re.search(case["reason"], reason), f"reason {reason!r} !~ {case['reason']!r}"
        assert pages == [], "a refused input must leave no page row"
        assert rejects == [(None, 0, reason)], "a refused input leaves exactly one rejects row"
    else:
        assert outcome.error is None, f"{case['what']}: must load, but: {outcome.error}"
        assert outcome.load is not None
        assert (outcome.load.n_entries, outcome.load.n_rejected) == (
            case["entries"],
            case["quarantined"],
        )
        [(page_id, fmt, n_entries, n_rejected)] = pages
        assert (fmt, n_entries, n_rejected) == (case["fmt"], case["entries"], case["quarantined"])
        sightings = query(
            corpus_run.db, "SELECT count(*) FROM sightings WHERE page_id = $p", {"p": page_id}
        )
        assert sightings == [(case["entries"],)]
        assert all(r[0] == page_id and r[1] >= 1 for r in rejects)
        assert dict(Counter(r[2] for r in rejects)) == case["reject_reasons"]


def test_every_good_page_of_the_same_run_still_loads_completely(corpus_run: CorpusRun) -> None:
    """The recorded pages interleaved with the hostile ones load whole; the warehouse is sound."""
    assert corpus_run.unexpected == []
    loaded = {
        name: (o.load.n_entries if o.load else o.error)
        for name, o in corpus_run.outcomes.items()
        if name in GOOD_PAGES
    }
    assert loaded == GOOD_PAGES
    with Warehouse.open(corpus_run.db) as wh:
        assert wh.integrity_problems() == []


def test_no_traceback_and_one_line_per_refusal_in_the_logs(corpus_run: CorpusRun) -> None:
    """Refusals are logged as single lines; nothing in the run logged an exception."""
    with_traceback = [r.getMessage() for r in corpus_run.log if r.exc_info]
    assert with_traceback == []
    refusals = [r.getMessage() for r in corpus_run.log if r.getMessage().startswith("refused ")]
    assert len(refusals) == sum(1 for o in corpus_run.outcomes.values() if o.error)
    assert all("\n" not in line for line in refusals)


def test_hostile_text_is_stored_inertly(corpus_run: CorpusRun) -> None:
    """Markup stays literal text, controls and invisible characters go, bad links are dropped."""
    location = str(CORPUS / "api-hostile-entries.json")
    rows = query(
        corpus_run.db,
        "SELECT p.paper_id, p.title, p.abstract, p.github_url, p.project_url, p.authors,"
        " p.ai_keywords FROM papers p JOIN sightings s USING (paper_id)"
        " JOIN pages g USING (page_id) WHERE g.location = $l",
        {"l": location},
    )
    titles = {row[1] for row in rows}
    assert "<script>alert('paperdigest')</script>Scripted Diffusion Models" in titles
    assert "Header Injection Bcc: victim@example.org Subject: pwned" in titles
    assert "evil Right-to-Left Isolate Title" in titles
    for paper_id, title, abstract, github, project, authors, keywords in rows:
        for text in (title, abstract, *authors, *keywords):
            assert not re.search("[\r\n\x00\u200b-\u200f\u202a-\u202e\u2066-\u2069]", text)
        for url in (github, project):
            assert url is None or re.match(r"https?://[^\s]+$", url), url
        # "../../../../etc/passwd" as an id is no id: the entry falls back to its title key
        # (or the arXiv id already known for that title); no path ever becomes a paper id
        assert re.fullmatch(r"\d{4}\.\d{4,5}|t:[0-9a-f]{16}", paper_id), paper_id


# ---- files that cannot even be read ---------------------------------------------------------


@pytest.mark.prefect
def test_oversized_and_missing_files_are_reported_with_their_real_reason(
    prefect_harness, tmp_path: Path
) -> None:
    """`import` names why a file could not be read (too large, missing), not "empty file"."""
    from flows.daily import import_pages

    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:  # sparse: 70 MB on paper, nothing on disk
        handle.truncate(70 * 1024 * 1024)
    missing = tmp_path / "gone.json"
    good = API_FIXTURES[1]
    result = import_pages(
        paths=[str(huge), str(missing), str(good)], db=str(tmp_path / "papers.duckdb")
    )
    failures = sorted(result["failures"])
    assert len(failures) == 2
    assert failures[0].startswith(f"{missing}: ") and "No such file" in failures[0], failures
    assert failures[1].startswith(f"{huge}: ") and "too large" in failures[1], failures
    assert result["entries"] == 1


# ---- the command line over the whole corpus ---------------------------------------------------


@pytest.mark.slow
def test_cli_import_reports_each_refusal_in_one_line_and_loads_the_rest(
    corpus_run: CorpusRun, prefect_api_url: str, tmp_path: Path
) -> None:
    """`paperdigest import CORPUS GOOD...`: exit 1, one stderr line per refused file naming it
    and its reason, no traceback, every other page loaded (the same outcome as in-process)."""
    db = tmp_path / "papers.duckdb"
    good = [str(p) for p in (*API_FIXTURES, HTML_FIXTURE, *SEEDS)]
    proc = run_cli(
        ["--db", str(db), "import", str(CORPUS), *good], cli_env(tmp_path, prefect_api_url)
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    refused = {name: o.error for name, o in corpus_run.outcomes.items() if o.error}
    lines = paperdigest_lines(proc.stderr)
    assert sorted(lines) == sorted(f"paperdigest: {error}" for error in refused.values())
    loaded = {name for name, o in corpus_run.outcomes.items() if o.load}
    assert query(db, "SELECT count(*) FROM pages") == [(len(loaded),)]
    entries = sum(o.load.n_entries for o in corpus_run.outcomes.values() if o.load)
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{len(loaded)} pages, {entries} entries, "), summary
    assert summary.endswith(f", {len(refused)} failed"), summary
    check = run_cli(["--db", str(db), "check"], cli_env(tmp_path, None))
    assert check.returncode == 0, check.stdout + check.stderr


# ---- 50 MB of repeated cards ----------------------------------------------------------------


def big_cards_page(path: Path, megabytes: int) -> int:
    """Write an HF papers page of ~`megabytes` MB: the 23 papers of 2026-08-14 as cards
    (current layout), repeated. Returns how many distinct papers it holds."""
    items = json.loads(API_FIXTURES[-1].read_bytes())
    cards = []
    for item in items:
        paper = item["paper"]
        cards.append(
            '<article class="relative flex flex-col overflow-hidden rounded-xl border">'
            f'<a href="/papers/{paper["id"]}" class="block h-40"><img alt="" src="https://cdn-'
            f'thumbnails.huggingface.co/social-thumbnails/papers/{paper["id"]}.png"></a>'
            '<div class="flex gap-4 px-5 pb-5 pt-6"><div class="flex h-14 w-12 flex-col">'
            f'<div class="leading-none">{paper.get("upvotes", 0)}</div></div><div class="w-full">'
            f'<h3 class="mb-1 text-lg font-semibold"><a href="/papers/{paper["id"]}" '
            f'class="line-clamp-3">{escape(paper["title"])}</a></h3>'
            f'<p class="line-clamp-2 text-sm text-gray-600">{escape(paper["summary"])}</p>'
            f'<ul class="flex items-center text-sm"><li>· {len(paper["authors"])} authors</li>'
            "</ul></div></div></article>\n"
        )
    block = "".join(cards).encode("utf-8")
    head = (
        b"<!DOCTYPE html><html><head><title>Daily Papers - Hugging Face</title>"
        b'<meta property="og:url" content="https://huggingface.co/papers/date/2026-08-14">'
        b'</head><body><main><div class="grid">\n'
    )
    with path.open("wb") as handle:
        handle.write(head)
        for _ in range(megabytes * 1024 * 1024 // len(block) + 1):
            handle.write(block)
        handle.write(b"</div></main></body></html>\n")
    return len(items)


# Peak RSS is read from /proc/self/status (VmHWM): ru_maxrss would carry over the parent's peak
# (Linux keeps it across fork and exec), and pytest with a Prefect server is already ~300 MB.
BIG_PAGE_CHILD = """
import json, sys
from datetime import date
from pathlib import Path
from flows.pipeline import ingest_files
from flows.warehouse import Warehouse

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

page, db = Path(sys.argv[1]), Path(sys.argv[2])
wh = Warehouse.open(db)
run_id = wh.start_run("import")
print("baseline", peak_mb(), flush=True)
try:
    [outcome] = ingest_files(wh, [page], run_id, None, date.today())
    result = {"error": outcome.error,
              "entries": outcome.load.n_entries if outcome.load else None,
              "rejected": outcome.load.n_rejected if outcome.load else None}
except Exception as exc:
    result = {"raised": f"{type(exc).__name__}: {exc}"}
wh.close()
result["peak_mb"] = peak_mb()
print("result", json.dumps(result), flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_fifty_megabytes_of_repeated_cards_in_bounded_memory(tmp_path: Path) -> None:
    """A 50 MB page of repeated cards is loaded (its distinct papers once) or refused in one
    line, and the importing process grows by less than 400 MB doing it. The page is generated
    here, never committed. A watchdog stops the child as soon as it crosses the bound."""
    page = tmp_path / "papers-50mb.html"
    distinct = big_cards_page(page, BIG_PAGE_MB)
    assert page.stat().st_size >= BIG_PAGE_MB * 1024 * 1024
    child = subprocess.Popen(
        [sys.executable, "-c", BIG_PAGE_CHILD, str(page), str(tmp_path / "papers.duckdb")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True).start()
    baseline = float(lines.get(timeout=60).split()[1])
    deadline, peak, result = time.monotonic() + 200, baseline, None
    try:
        while result is None and time.monotonic() < deadline:
            peak = max(peak, peak_rss_mb(child.pid) or peak)
            if peak - baseline > RSS_GROWTH_LIMIT_MB:
                break
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line.startswith("result "):
                result = json.loads(line.removeprefix("result "))
    finally:
        child.kill()
        _, stderr = child.communicate(timeout=30)
    assert result is not None, (
        f"the import of a {BIG_PAGE_MB} MB page grew the process by {peak - baseline:.0f} MB "
        f"(limit {RSS_GROWTH_LIMIT_MB} MB) and was stopped; stderr: {stderr[-500:]}"
    )
    growth = max(peak, result["peak_mb"]) - baseline
    assert growth < RSS_GROWTH_LIMIT_MB, f"grew by {growth:.0f} MB"
    assert "raised" not in result, result["raised"]
    if result["error"] is not None:  # refused as a whole: one line, one rejects row
        assert result["error"].startswith(f"{page}: ") and "\n" not in result["error"]
        assert query(tmp_path / "papers.duckdb", "SELECT count(*) FROM pages") == [(0,)]
        rejects = query(tmp_path / "papers.duckdb", "SELECT page_id, position FROM rejects")
        assert rejects == [(None, 0)]
    else:
        assert (result["entries"], result["rejected"]) == (distinct, 0)
