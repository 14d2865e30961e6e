"""Publish the digests as a static site: an index, a page per digest date, per ISO week and per
paper (with an inline SVG chart), Atom and JSON feeds, and a small optional search.

Everything is read from the warehouse through `flows.warehouse` (the recorded digests as they
went out, every paper's latest figures and its sightings), rendered with the email's own
section views (`flows.render.section_views`) into the templates of `templates/site/`, and
written incrementally: a file is rewritten only when its content hash changed, atomically
(a temporary file renamed over it). A run's publish reads and renders only the pages whose
fingerprints (`flows.site_outline`) moved since the last publish. Every internal link is
relative, so the folder works from `file://`, from `python -m http.server` and from any static
host.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flows import PROJECT_URL, __version__
from flows.atomic import write_atomic
from flows.config import Settings
from flows.diff import change_line, digest_paper, reason_for
from flows.feeds import FeedEntry, atom_feed, json_feed
from flows.models import Change, Digest, DigestPaper
from flows.render import (
    TEMPLATE_DIR,
    RenderSettings,
    change_views,
    date_label,
    paper_view,
    safe_url,
    section_views,
    template_environment,
)
from flows.site_chart import history_chart
from flows.site_outline import OutlineDay, OutlinePaper, SiteOutline, read_site_outline
from flows.warehouse import Warehouse

log = logging.getLogger("paperdigest.site")

# Forked processes that render and write pages: rendering is pure Python (one core each).
PUBLISH_WORKERS = min(4, os.cpu_count() or 1)
STATE_FILE = ".paperdigest-site.json"  # content hashes of the files written, feed entry times
STATIC_FILES = ("style.css", "search.js")
STARS_JUMP = 100  # GitHub stars gained between two sightings worth a line (as the diff's)
_SAFE_SLUG = re.compile(r"\d{4}\.\d{4,5}")  # an arXiv id; any other id is hashed
# The site shows more of each paper than the email: longer summaries, more authors.
CARD_SETTINGS = RenderSettings(excerpt_chars=700, max_authors=8, max_keywords=8)
# A week lists many more papers: shorter cards (the paper's page has the rest).
WEEK_SETTINGS = RenderSettings(excerpt_chars=200, max_authors=3, max_keywords=0)


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """Where the site goes and what it is called."""

    out_dir: Path
    site_url: str | None = None  # the root URL it is served from (feeds' absolute links)
    title: str = "Daily Papers"
    feed_entries: int = 30

    def __post_init__(self) -> None:
        if self.site_url is not None and safe_url(self.site_url) is None:
            raise ValueError(f"site URL must be an http(s) URL, got {self.site_url!r}")


@dataclass(frozen=True, slots=True)
class Sighting:
    """A paper seen on a digest page: when, at which rank, with how many upvotes."""

    digest_date: date | None  # None for a page that said no date
    captured_at: datetime
    rank: int
    upvotes: int | None


@dataclass(frozen=True, slots=True)
class DayDigest:
    """One digest date's content: the digest that went out, or the day's list."""

    digest: Digest
    mailed: bool  # True: a digest was mailed for this date; False: the list as loaded
    changed_at: datetime  # when its content last changed (the feed's first `updated`)

    @property
    def day(self) -> date:
        """The digest date."""
        return self.digest.digest_date


@dataclass(frozen=True, slots=True)
class SiteData:
    """Everything the site shows, read from the warehouse in a few bulk queries."""

    days: tuple[DayDigest, ...]  # newest first
    papers: dict[str, DigestPaper]
    sightings: dict[str, list[Sighting]]


@dataclass(frozen=True, slots=True)
class DaySummary:
    """What the index and the feeds show of a day besides its date."""

    counts: str  # like "3 trending, 12 new"
    top: str  # the title of its most upvoted paper


@dataclass(slots=True)
class PublishReport:
    """What a publish did: files written, left alone (same content) and removed."""

    out_dir: Path
    files: int = 0
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    note: str = ""
    error: str | None = None  # why the site could not be written (the run goes on)

    @property
    def index(self) -> Path:
        """The site's front page."""
        return self.out_dir / "index.html"

    def line(self) -> str:
        """One line for the terminal and the run summary."""
        if self.error:
            return f"site: not published: {self.error}"
        text = (
            f"site: {self.files:,} files ({len(self.written):,} written, "
            f"{self.unchanged:,} unchanged, {len(self.removed):,} removed) → {_shown(self.index)}"
        )
        return f"{text}; {self.note}" if self.note else text


# ---------------------------------------------------------------------------------------
# Public API


def publish_site(
    wh: Warehouse,
    settings: SiteSettings,
    workers: int = PUBLISH_WORKERS,
    *,
    incremental: bool = False,
) -> PublishReport:
    """Build the site from the warehouse and write what changed.

    A full publish reads everything, renders every page and compares it by content hash. An
    incremental one (a run's last step) reads the site's outline (`flows.site_outline`), then
    only the days and papers whose pages' inputs changed since the last publish
    (`page_inputs`), renders those, the index, the feeds and the search index, and keeps the
    rest as recorded: the same files. Pages are rendered by `workers` forked processes when
    there are many (rendering is pure Python, so threads would share one core); this process
    records the hashes and removes what is no longer built.
    """
    outline = read_site_outline(wh)
    state = _read_state(settings.out_dir)
    code = _code_fingerprint(settings)
    inputs = page_inputs(outline)
    same_code = incremental and state.get("code") == code
    kept = _kept(settings.out_dir, inputs, state) if same_code else {}
    summaries = _kept_summaries(outline, state) if same_code else {}
    reuse = _kept_entries(settings.out_dir, state, kept)
    # Nothing kept (a full publish): every day and paper, read without lists of them.
    days, papers = (
        _to_read(outline, kept, summaries, reuse, settings.feed_entries) if kept else (None, None)
    )
    data = read_site_data(wh, outline, days, papers)
    builder = _Builder(data, settings, outline, summaries)
    entries, entry_times = builder.feed_entries(state.get("entries", {}), reuse)
    jobs = builder.jobs() + _feed_jobs(entries, settings)
    known = state.get("files", {})
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    todo = [(relative, render) for relative, render in jobs if relative not in kept]
    results = _run_jobs(todo, settings.out_dir, known, workers)
    results += [(relative, record, False) for relative, record in kept.items()]
    remembered = {"code": code, "inputs": inputs, "days": builder.summary_state()}
    report = _finish(settings.out_dir, results, known, entry_times, remembered)
    if not settings.site_url:
        report.note = "feeds use relative links: set PAPERDIGEST_SITE_URL for absolute ones"
    return report


def site_settings_for(settings: Settings, out_dir: Path | None = None) -> SiteSettings:
    """The site's settings from the run settings (`--out` beats PAPERDIGEST_SITE_DIR)."""
    return SiteSettings(out_dir or settings.site_path, settings.site_url)


def publish_after_run(wh: Warehouse, settings: Settings) -> PublishReport:
    """Publish the site as a run's last step, incrementally: a failure to write it is
    reported, not raised, so the run's email and data stand (the next run publishes again)."""
    site_settings = site_settings_for(settings)
    try:
        report = publish_site(wh, site_settings, incremental=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        error = f"{exc.filename or site_settings.out_dir}: {reason}"
        return PublishReport(site_settings.out_dir, error=error)
    if report.note:
        log.warning("%s", report.note)
    return report


def read_site_data(
    wh: Warehouse,
    outline: SiteOutline | None = None,
    days: Collection[date] | None = None,
    papers: Collection[str] | None = None,
) -> SiteData:
    """The digests, papers and sightings the site shows, from the warehouse: every one, or
    only the days of `days` and the papers of `papers` (with their sightings), which must
    hold the papers those days show (`_to_read` sees to it)."""
    outline = outline or read_site_outline(wh)
    wanted = [d for d in outline.days if days is None or d.day in days]
    ids = None if papers is None else sorted(papers)
    paper_rows = {row["paper_id"]: row for row in wh.site_papers(ids)}
    latest = {paper_id: _latest_paper(row) for paper_id, row in paper_rows.items()}
    sightings: dict[str, list[Sighting]] = defaultdict(list)
    for paper_id, day, captured_at, rank, upvotes in wh.site_sightings(ids):
        sightings[paper_id].append(Sighting(day, captured_at, rank, upvotes))
    dates = None if days is None else [d.day for d in wanted if d.mailed]
    mailed = _mailed_digests(wh.site_digest_items(STARS_JUMP, dates), paper_rows)
    del paper_rows
    read = [
        mailed.get(d.day) or _listed_day(d.day, d.changed_at, [latest[i] for i in d.paper_ids])
        for d in wanted
    ]
    # Only papers a day page shows get a page of their own (`outline.papers`): one seen only
    # on pages that stated no digest date has no day to be reached from.
    shown = {paper_id: paper for paper_id, paper in latest.items() if paper_id in outline.papers}
    return SiteData(tuple(read), shown, dict(sightings))


def build_site(
    data: SiteData, settings: SiteSettings, entry_state: dict[str, dict[str, str]] | None = None
) -> tuple[Iterator[tuple[str, bytes]], dict[str, dict[str, str]]]:
    """Every file of the site as (relative path, bytes), rendered one at a time as the
    iterator is consumed (memory holds one page, not the site), and the feed entries'
    hashes and times.

    `entry_state` is what the last publish recorded per feed entry; an entry keeps its
    `updated` time while its content hash is the same.
    """
    builder = _Builder(data, settings)
    entries, entry_times = builder.feed_entries(entry_state or {})
    jobs = builder.jobs() + _feed_jobs(entries, settings)
    return ((relative, render()) for relative, render in jobs), entry_times


def write_site(
    files: Iterable[tuple[str, bytes]] | Mapping[str, bytes],
    out_dir: Path,
    known: dict[str, str] | None = None,
    entry_times: dict[str, dict[str, str]] | None = None,
) -> PublishReport:
    """Write the files whose content changed (atomically), remove the ones no longer built.

    `known` maps paths to what the last publish recorded (content hash, size, mtime): a file
    whose size and mtime on disk are still those is compared by hash without being read;
    any other existing file is read and compared byte for byte.
    """
    known = known or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = files.items() if isinstance(files, Mapping) else files
    results = [_write_one(out_dir, relative, content, known) for relative, content in pairs]
    return _finish(out_dir, results, known, entry_times)


def _write_one(
    out_dir: Path, relative: str, content: bytes, known: dict[str, str]
) -> tuple[str, str, bool]:
    """Write one file if its content changed: (path, what the state records, written?)."""
    digest = hashlib.sha256(content).hexdigest()
    path = out_dir / relative
    stamp = _same_on_disk(path, content, digest, known.get(relative))
    written = stamp is None
    if written:
        write_atomic(path, content, mode=0o644)  # served to anyone
        stamp = path.stat().st_mtime_ns
    return relative, f"{digest}:{len(content)}:{stamp}", written


def _finish(
    out_dir: Path,
    results: list[tuple[str, str, bool]],
    known: dict[str, str],
    entry_times: dict[str, dict[str, str]] | None,
    remembered: dict[str, Any] | None = None,
) -> PublishReport:
    """Count what was written, remove the files no longer built, record the new state (with
    what an incremental publish compares: `remembered`)."""
    report = PublishReport(out_dir, files=len(results))
    recorded = {}
    for relative, record, written in results:
        recorded[relative] = record
        if written:
            report.written.append(relative)
        else:
            report.unchanged += 1
    for relative in sorted(set(known) - set(recorded)):
        path = out_dir / relative
        if _is_inside(path, out_dir) and path.is_file():
            path.unlink()
            report.removed.append(relative)
    state = {"files": recorded, "entries": entry_times or {}} | (remembered or {})
    _write_state(out_dir, state)
    return report


def _kept(out_dir: Path, inputs: dict[str, str], state: dict[str, Any]) -> dict[str, str]:
    """The pages an incremental publish need not render, with what the state records of them:
    their inputs are those of the last publish and the file on disk is still the one it wrote
    (same size and mtime; a file edited or removed by hand is rendered again)."""
    known, previous = state.get("files", {}), state.get("inputs", {})
    kept = {}
    for relative, fingerprint in inputs.items():
        record = known.get(relative)
        if record and previous.get(relative) == fingerprint and _on_disk(out_dir, relative, record):
            kept[relative] = record
    return kept


def _kept_summaries(outline: SiteOutline, state: dict[str, Any]) -> dict[date, DaySummary]:
    """What the index and feeds show of each day, as the last publish recorded it, for the days
    whose fingerprint is still the one it was recorded with."""
    recorded = state.get("days")
    if not isinstance(recorded, dict):
        return {}
    kept = {}
    for day in outline.days:
        entry = recorded.get(day.day.isoformat())
        valid = isinstance(entry, list) and len(entry) == 3
        if valid and entry[0] == f"{day.fingerprint:x}" and all(isinstance(t, str) for t in entry):
            kept[day.day] = DaySummary(entry[1], entry[2])
    return kept


def _to_read(
    outline: SiteOutline,
    kept: Mapping[str, str],
    summaries: Mapping[date, DaySummary],
    entries: Mapping[str, str],
    n_entries: int,
) -> tuple[set[date], set[str]]:
    """The days and papers a publish must read: those of every page it renders (a week's
    days, a day's papers), the feed entries it cannot reuse, and the days with no summary."""
    days = {
        d.day
        for d in outline.days
        if d.day not in summaries
        or _day_path(d.day) not in kept
        or _week_path(iso_week(d.day)) not in kept
    }
    days.update(d.day for d in outline.days[:n_entries] if d.day.isoformat() not in entries)
    papers = {i for i in outline.papers if _paper_path(i) not in kept}
    papers.update(i for d in outline.days if d.day in days for i in d.paper_ids)
    return days, papers


def page_inputs(outline: SiteOutline) -> dict[str, str]:
    """What each day, week and paper page is rendered from, as a short text by path: a page
    whose text is the one the last publish recorded (with the same code) renders to the same
    bytes.

    A day page shows its digest and links to its neighbours; a week page shows its days; a
    paper page shows its own figures (see `warehouse/queries/site_outline.sql`).
    """
    inputs = {}
    days = outline.days
    for position, day in enumerate(days):
        newer = days[position - 1].day if position > 0 else None
        older = days[position + 1].day if position + 1 < len(days) else None
        inputs[_day_path(day.day)] = f"{day.fingerprint:x}:{newer}:{older}"
    for week, week_days in _weeks(days).items():
        inputs[_week_path(week)] = ":".join(f"{d.fingerprint:x}" for d in week_days)
    for paper in outline.papers.values():
        inputs[_paper_path(paper.paper_id)] = f"{paper.fingerprint:x}"
    return inputs


def _kept_entries(out_dir: Path, state: dict[str, Any], kept: dict[str, str]) -> dict[str, str]:
    """The feed entries of the days whose page is kept, read back from the last feed.json (each
    checked against the content hash recorded for it), by date."""
    if not any(relative.startswith("days/") for relative in kept):
        return {}
    try:
        items = json.loads((out_dir / "feed.json").read_text(encoding="utf-8"))["items"]
        recorded = {key: entry["sha256"] for key, entry in state["entries"].items()}
        found = {Path(item["url"]).stem: item["content_html"] for item in items}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no feed, or not one this code wrote: render every entry
    return {
        key: html
        for key, html in found.items()
        if f"days/{key}.html" in kept
        and isinstance(html, str)
        and hashlib.sha256(html.encode("utf-8")).hexdigest() == recorded.get(key)
    }


def _on_disk(out_dir: Path, relative: str, record: str) -> bool:
    """True when the file is still the size and mtime the state recorded for it."""
    try:
        stat = os.stat(os.path.join(out_dir, relative))  # not pathlib: a run does 30,000
    except OSError:
        return False
    return record.endswith(f":{stat.st_size}:{stat.st_mtime_ns}")


# The jobs the forked workers share (set before the fork, so nothing is pickled but results).
_JOBS: list[tuple[str, Callable[[], bytes]]] = []


def _run_jobs(
    jobs: list[tuple[str, Callable[[], bytes]]], out_dir: Path, known: dict[str, str], workers: int
) -> list[tuple[str, str, bool]]:
    """Render and write every job, in `workers` forked processes when there are several."""
    workers = min(workers, max(1, len(jobs) // 200))  # a small site is not worth a fork
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_write_one(out_dir, relative, render(), known) for relative, render in jobs]
    global _JOBS
    _JOBS = jobs
    try:
        with multiprocessing.get_context("fork").Pool(workers, _quiet_on_sigterm) as pool:
            shares = pool.map(_run_share, [(i, workers, out_dir, known) for i in range(workers)])
            pool.close()  # let the workers exit on their own rather than be terminated
            pool.join()
    finally:
        _JOBS = []
    return [result for share in shares for result in share]


def _quiet_on_sigterm() -> None:
    """In a worker: die quietly when the pool terminates it.

    A fork inherits the SIGTERM handler Prefect installs while a flow runs, which raises in the
    worker and prints "Process ForkPoolWorker-N:" on the user's terminal.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_share(args: tuple[int, int, Path, dict[str, str]]) -> list[tuple[str, str, bool]]:
    """In a worker: every `step`-th job from `first` (interleaved, so shares cost alike)."""
    first, step, out_dir, known = args
    return [
        _write_one(out_dir, relative, render(), known) for relative, render in _JOBS[first::step]
    ]


def _feed_jobs(
    entries: list[FeedEntry], settings: SiteSettings
) -> list[tuple[str, Callable[[], bytes]]]:
    def atom() -> bytes:
        return atom_feed(entries, settings.title, settings.site_url, _feed_id(settings))

    def feed_json() -> bytes:
        return json_feed(entries, settings.title, settings.site_url)

    return [("feed.atom", atom), ("feed.json", feed_json)]


def paper_slug(paper_id: str) -> str:
    """The file name (without .html) of a paper's page: its arXiv id, or a hash of its id."""
    if _SAFE_SLUG.fullmatch(paper_id):
        return paper_id
    return "t-" + hashlib.sha1(paper_id.encode("utf-8")).hexdigest()[:16]


def iso_week(day: date) -> str:
    """The ISO week of a date, like 2025-W45."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


# ---------------------------------------------------------------------------------------
# Reading: rows into digests


def _latest_paper(row: dict[str, Any]) -> DigestPaper:
    return digest_paper(row | {"gain": None, "section": "new"})


def _mailed_digests(
    rows: list[dict[str, Any]], paper_rows: dict[str, dict[str, Any]]
) -> dict[date, DayDigest]:
    """Each recorded daily digest's papers by section, with the diff's reasons and changes.

    An item row holds the figures of its mailing; the paper's texts come from its paper row
    (shared, not copied per digest).
    """
    grouped: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for item in rows:
        grouped[item["d_date"]].append(paper_rows[item["paper_id"]] | item)
    days = {}
    for day, items in grouped.items():
        sections: dict[str, list[DigestPaper]] = {"trending": [], "new": [], "late": []}
        changes: list[Change] = []
        for row in items:
            sections[row["section"]].append(digest_paper(row))
            if row["change"]:
                changes.append(change_line(row))
        digest = Digest(
            digest_date=day,
            data_through=max((r["digest_date"] for r in items if r["digest_date"]), default=day),
            new=tuple(sections["new"]),
            trending=tuple(sections["trending"]),
            late=tuple(sections["late"]),
            changes=tuple(changes),
        )
        days[day] = DayDigest(digest, True, items[0]["delivered_at"])
    return days


def _listed_day(day: date, changed_at: datetime, listed: list[DigestPaper]) -> DayDigest:
    """A date no digest was mailed for (a backfilled or imported day): its list, best first."""
    listed.sort(key=lambda p: (-(p.upvotes or 0), p.rank or 0, p.paper_id))
    reason = reason_for({"section": "new", "digest_date": day})
    new = tuple(replace(p, reason=reason) for p in listed)
    return DayDigest(Digest(digest_date=day, data_through=day, new=new), False, changed_at)


# ---------------------------------------------------------------------------------------
# Building pages


class _Builder:
    """Renders every page of the site from one SiteData."""

    def __init__(
        self,
        data: SiteData,
        settings: SiteSettings,
        outline: SiteOutline | None = None,
        summaries: Mapping[date, DaySummary] | None = None,
    ) -> None:
        """`data` holds the days and papers to render; `outline` every day and paper of the
        site (the pages link to them) and `summaries` what the index shows of the days not in
        `data`. Without an outline, `data` is the whole site."""
        self.data = data
        self.settings = settings
        self.outline = outline or _outline_of(data)
        self.env = template_environment()
        self.env.filters["date_label"] = lambda d: date_label(d, year=True)
        self.loaded = {d.day: d for d in data.days}
        self.weeks = _weeks(self.outline.days)
        self.dates = [d.day for d in self.outline.days]  # newest first
        self.known = set(self.dates)  # dates that have a day page
        self.position = {day: i for i, day in enumerate(self.dates)}
        self.summaries = dict(summaries or {}) | {d.day: _summary(d.digest) for d in data.days}

    def jobs(self) -> list[tuple[str, Callable[[], bytes]]]:
        """The static files, the index, the search index and every page whose content was read:
        its path and how to render it."""
        jobs: list[tuple[str, Callable[[], bytes]]] = [
            (name, partial((_site_templates() / name).read_bytes)) for name in STATIC_FILES
        ]
        jobs.append(("index.html", partial(self._page, "index.html.j2", self._index_context)))
        jobs += [
            (_day_path(d.day), partial(self._page, "day.html.j2", self._day, d))
            for d in self.data.days
        ]
        for week, days in self.weeks.items():
            if all(d.day in self.loaded for d in days):
                read = [self.loaded[d.day] for d in days]
                job = partial(self._page, "week.html.j2", self._week_context, week, read)
                jobs.append((_week_path(week), job))
        jobs += [
            (_paper_path(i), partial(self._page, "paper.html.j2", self._paper, i))
            for i in self.data.papers
        ]
        jobs.append(("search-index.js", self._search_index))
        return jobs

    def summary_state(self) -> dict[str, list[str]]:
        """What the index shows of each day, for the next publish (`_kept_summaries`)."""
        state = {}
        for day in self.outline.days:
            summary = self.summaries[day.day]
            state[day.day.isoformat()] = [f"{day.fingerprint:x}", summary.counts, summary.top]
        return state

    def _page(self, template: str, context: Callable[..., dict[str, Any]], *args: Any) -> bytes:
        return self._render(template, context(*args))

    def _day(self, day: DayDigest) -> dict[str, Any]:
        return self._day_context(day, "../")

    def _paper(self, paper_id: str) -> dict[str, Any]:
        return self._paper_context(self.data.papers[paper_id])

    def feed_entries(
        self, state: dict[str, dict[str, str]], kept: Mapping[str, str] | None = None
    ) -> tuple[list[FeedEntry], dict[str, dict[str, str]]]:
        """The latest digests as feed entries; `updated` moves only when the content does.

        `kept` holds entries' HTML as the last publish wrote it, by date, for days whose
        inputs did not change since: they are not rendered again.
        """
        root = self.settings.site_url.rstrip("/") + "/" if self.settings.site_url else ""
        entries, times = [], {}
        template = self.env.get_template("site/digest_content.html.j2")
        for day in self.outline.days[: self.settings.feed_entries]:
            key = day.day.isoformat()
            if key in (kept or {}):
                html = kept[key]
            else:
                html = template.render(self._day_context(self.loaded[day.day], root)).strip()
            sha = hashlib.sha256(html.encode("utf-8")).hexdigest()
            previous = state.get(key, {})
            if previous.get("sha256") == sha and previous.get("updated"):
                updated = datetime.fromisoformat(previous["updated"])
            elif previous:
                updated = datetime.now(UTC).replace(microsecond=0)
            else:
                updated = day.changed_at.astimezone(UTC).replace(microsecond=0)
            times[key] = {"sha256": sha, "updated": updated.isoformat()}
            entries.append(
                FeedEntry(
                    id=_tag_uri(self.settings, f"digest/{key}"),
                    title=f"{self.settings.title} · {date_label(day.day, year=True)} · "
                    f"{self.summaries[day.day].counts}",
                    link=f"{root}days/{key}.html",
                    html=html,
                    updated=updated,
                    published=datetime.combine(day.day, time(), tzinfo=UTC),
                )
            )
        return entries, times

    # ---- contexts

    def _base(self, root: str, title: str) -> dict[str, Any]:
        return {
            "root": root,
            "site_title": self.settings.title,
            "page_title": title,
            "version": __version__,
            "project_url": PROJECT_URL,
        }

    def _render(self, template: str, context: dict[str, Any]) -> bytes:
        page = self.env.get_template(f"site/{template}").render(context)
        return page.encode("utf-8")

    def _index_context(self) -> dict[str, Any]:
        days = [
            {
                "date": d.day.isoformat(),
                "label": date_label(d.day, year=True),
                "counts": self.summaries[d.day].counts,
                "mailed": d.mailed,
                "top": self.summaries[d.day].top,
                "week": iso_week(d.day),
            }
            for d in self.outline.days
        ]
        weeks = [{"key": k, "days": len(v)} for k, v in self.weeks.items()]
        return self._base("", self.settings.title) | {"days": days, "weeks": weeks}

    def _day_context(self, day: DayDigest, root: str) -> dict[str, Any]:
        digest = day.digest
        sections = section_views(digest, CARD_SETTINGS)
        if not day.mailed:
            for section in sections:
                section["title"], section["intro"] = "On the list", _LISTED_INTRO
        self._link_papers(sections, root)
        changes = change_views(digest, CARD_SETTINGS)
        for change, source in zip(changes, digest.changes, strict=True):
            change["page"] = self._paper_page(source.paper_id, root)
        newer, older = self._neighbours(day)
        title = f"{self.settings.title} · {date_label(day.day, year=True)}"
        return self._base(root, title) | {
            "label": date_label(day.day, year=True),
            "date": day.day.isoformat(),
            "counts": _counts(digest),
            "mailed": day.mailed,
            "sections": sections,
            "changes": changes,
            "week": iso_week(day.day),
            "newer": newer.isoformat() if newer else None,
            "older": older.isoformat() if older else None,
            "hf_day_url": f"https://huggingface.co/papers/date/{day.day.isoformat()}",
        }

    def _neighbours(self, day: DayDigest) -> tuple[date | None, date | None]:
        """The digest dates just newer and just older than `day` (its page links to them)."""
        index, position = self.dates, self.position[day.day]
        newer = index[position - 1] if position > 0 else None
        older = index[position + 1] if position + 1 < len(index) else None
        return newer, older

    def _week_context(self, week: str, days: list[DayDigest]) -> dict[str, Any]:
        start = date.fromisocalendar(int(week[:4]), int(week[6:]), 1)
        end = start + timedelta(days=7)
        seen: dict[str, tuple[int, DigestPaper]] = {}
        for day in days:
            for paper in _shown_papers(day.digest):
                if paper.paper_id not in seen:
                    gain = _gain_between(self.data.sightings.get(paper.paper_id, []), start, end)
                    seen[paper.paper_id] = (gain, self.data.papers.get(paper.paper_id, paper))
        ranked = sorted(seen.values(), key=lambda g: (-g[0], -(g[1].upvotes or 0), g[1].paper_id))
        cards = []
        for gain, paper in ranked:
            view = paper_view(paper, WEEK_SETTINGS)
            view["gain"] = gain
            view["page"] = self._paper_page(paper.paper_id, "../")
            cards.append(view)
        title = f"{self.settings.title} · week {week}"
        return self._base("../", title) | {
            "week": week,
            "label": f"{date_label(start, year=True)} – {date_label(end - timedelta(1))}",
            "papers": cards,
            "days": [{"date": d.day.isoformat(), "label": date_label(d.day)} for d in days],
        }

    def _paper_context(self, paper: DigestPaper) -> dict[str, Any]:
        sightings = self.data.sightings.get(paper.paper_id, [])
        view = paper_view(paper, CARD_SETTINGS)
        view["excerpt"] = " ".join((paper.ai_summary or "").split())
        view["abstract"] = " ".join(paper.abstract.split())
        view["authors"] = ", ".join(" ".join(a.split()) for a in paper.authors)
        days = sorted({s.digest_date for s in sightings if s.digest_date})
        known = self.known
        return self._base("../", f"{view['title']} · {self.settings.title}") | {
            "paper": view,
            "chart": history_chart(
                [(s.captured_at, s.rank, s.upvotes) for s in sightings], view["title"]
            ),
            "sightings": [
                {
                    "date": s.digest_date.isoformat() if s.digest_date else "undated",
                    "on_site": s.digest_date in known,
                    "seen": s.captured_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "rank": s.rank,
                    "upvotes": s.upvotes,
                }
                for s in sightings
            ],
            "days": [{"date": d.isoformat(), "on_site": d in known} for d in days],
        }

    def _link_papers(self, sections: list[dict[str, Any]], root: str) -> None:
        for section in sections:
            for card in section["papers"]:
                card["page"] = self._paper_page(card["paper_id"], root)

    def _paper_page(self, paper_id: str, root: str) -> str | None:
        if paper_id not in self.outline.papers:
            return None
        return f"{root}{_paper_path(paper_id)}"

    def _search_index(self) -> bytes:
        rows = [
            [" ".join(p.title.split()), _paper_path(p.paper_id), _iso(p)]
            for p in sorted(
                self.outline.papers.values(), key=lambda p: (_iso(p), p.paper_id), reverse=True
            )
        ]
        payload = json.dumps(rows, ensure_ascii=True, separators=(",", ":"))
        # ASCII-only JSON is valid JavaScript, so a title cannot end the statement; "<\/" keeps
        # it inert even if someone inlines the file in a <script> block.
        payload = payload.replace("</", "<\\/").replace("<!--", "<\\u0021--")
        return f"window.PAPERDIGEST_SEARCH = {payload};\n".encode("ascii")


_LISTED_INTRO = "No digest was mailed for this date: the papers listed on it, most upvoted first."


# ---------------------------------------------------------------------------------------
# Helpers


def _weeks(days: Iterable[OutlineDay]) -> dict[str, list[OutlineDay]]:
    """Digest days by ISO week, newest week first, days oldest first within a week."""
    weeks: dict[str, list[OutlineDay]] = defaultdict(list)
    for day in days:
        weeks[iso_week(day.day)].append(day)
    return {k: sorted(v, key=lambda d: d.day) for k, v in sorted(weeks.items(), reverse=True)}


def _gain_between(sightings: list[Sighting], start: date, end: date) -> int:
    """Upvotes gained in [start, end): the last figure seen before the end minus the last
    before the start (a paper first seen later counts from its first figure)."""
    start_at = datetime.combine(start, time(), tzinfo=UTC)
    end_at = datetime.combine(end, time(), tzinfo=UTC)
    votes = [(s.captured_at, s.upvotes or 0) for s in sightings]
    before_end = [v for at, v in votes if at < end_at] or [v for _, v in votes[:1]]
    before_start = [v for at, v in votes if at < start_at]
    return (before_end[-1] if before_end else 0) - (before_start[-1] if before_start else 0)


def _day_path(day: date) -> str:
    return f"days/{day.isoformat()}.html"


def _week_path(week: str) -> str:
    return f"weeks/{week}.html"


def _paper_path(paper_id: str) -> str:
    return f"papers/{paper_slug(paper_id)}.html"


def _outline_of(data: SiteData) -> SiteOutline:
    """The outline of a site that is all in `data` (its fingerprints are not used: 0)."""
    days = tuple(
        OutlineDay(
            d.day, d.changed_at, d.mailed, 0, tuple(p.paper_id for p in _shown_papers(d.digest))
        )
        for d in data.days
    )
    papers = {i: OutlinePaper(i, 0, p.title, p.digest_date) for i, p in data.papers.items()}
    return SiteOutline(days, papers)


def _summary(digest: Digest) -> DaySummary:
    return DaySummary(_counts(digest), _top_title(digest))


def _shown_papers(digest: Digest) -> tuple[DigestPaper, ...]:
    """A digest's papers in the order its sections show them."""
    return (*digest.trending, *digest.new, *digest.late)


def _code_fingerprint(settings: SiteSettings) -> str:
    """A hash of what shapes every page besides its data: the settings, the templates and the
    code that builds views, so pages are rendered again after an upgrade."""
    shown = (settings.site_url, settings.title, settings.feed_entries)  # not out_dir: moves
    sha = hashlib.sha256(repr((__version__, shown, CARD_SETTINGS, WEEK_SETTINGS)).encode())
    here = Path(__file__).parent
    sources = [here / "site.py", here / "site_chart.py", here / "render.py"]
    for path in sorted(TEMPLATE_DIR.rglob("*")) + sources:
        if path.is_file():
            sha.update(path.name.encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def _counts(digest: Digest) -> str:
    parts = [
        f"{len(digest.trending)} trending" if digest.trending else "",
        f"{len(digest.new)} new" if digest.new else "",
        f"{len(digest.late)} missed earlier" if digest.late else "",
        f"{len(digest.changes)} updates" if digest.changes else "",
    ]
    return ", ".join(p for p in parts if p) or "nothing new"


def _top_title(digest: Digest) -> str:
    top = max(
        _shown_papers(digest), key=lambda p: (p.upvote_gain or 0, p.upvotes or 0), default=None
    )
    return " ".join(top.title.split()) if top else ""


def _iso(paper: OutlinePaper) -> str:
    return paper.digest_date.isoformat() if paper.digest_date else ""


def _tag_uri(settings: SiteSettings, specific: str) -> str:
    """A stable tag URI (RFC 4151): the same id for the same entry in every rebuild."""
    host = urlsplit(settings.site_url).hostname if settings.site_url else None
    return f"tag:{host or 'paperdigest.invalid'},2024:{specific}"


def _feed_id(settings: SiteSettings) -> str:
    return _tag_uri(settings, "feed")


def _same_on_disk(path: Path, content: bytes, digest: str, known: str | None) -> int | None:
    """The file's mtime when it already holds `content`, else None (it must be written)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size != len(content):
        return None
    if known == f"{digest}:{stat.st_size}:{stat.st_mtime_ns}":
        return stat.st_mtime_ns
    return stat.st_mtime_ns if path.read_bytes() == content else None


def _is_inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _read_state(out_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(out_dir: Path, state: dict[str, Any]) -> None:
    # Compact, so json's C encoder writes it (indented, a 30,000-page state takes 0.15 s).
    content = json.dumps(state, sort_keys=True, separators=(",", ":")).encode("utf-8")
    path = out_dir / STATE_FILE
    try:
        if path.read_bytes() == content:
            return
    except OSError:
        pass
    write_atomic(path, content, mode=0o644)  # served to anyone


def _site_templates() -> Path:
    return TEMPLATE_DIR / "site"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
