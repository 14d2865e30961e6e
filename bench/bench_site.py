"""Site: `paperdigest publish` of three years of daily history (~800 digests, ~31k papers).

The history is what daily runs leave (see `bench.history`): every weekday's page loaded by its
own run and re-loaded by the next 7 days' runs, each run's digest recorded. Measured: a full
rebuild into an empty folder (read the warehouse, render every page and both feeds, write
every file atomically), and a re-publish with nothing changed (every file compared, none
written). The baseline writes the same number of files with the same sizes, plainly (one
`write_bytes` each, no rendering, no temporary file). Target: the full rebuild under 60 s.

Then the publish a daily run ends with (incremental), each in a process of its own (its time
from opening the warehouse; its peak RSS the whole process's): with nothing changed, and after
the next weekday's run (`bench.plain_daily` against the synthetic server: the new day, and the
days before it re-fetched with more upvotes), against a full publish of the same warehouse into
a copy of the same site, whose files it must leave.

    python -m bench.bench_site DB SITE     # one incremental publish; prints its figures (JSON)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from bench.bench_daily import next_day_server, plain_run
from bench.harness import PYTHON, ChildResult, Context, Row, own_peak_rss_mb, peak_rss_mb, run_child
from bench.history import History, history_for
from flows.site import STATE_FILE, PublishReport, SiteSettings, publish_site
from flows.warehouse import Warehouse

SECTION = "Site"
TARGET_S = 60.0
SITE_URL = "https://digest.example.org/"


def run(ctx: Context) -> list[Row]:
    """A full rebuild next to the plain-write baseline, a re-publish with no change, then a
    run's publish with nothing changed and after the next day's run."""
    n_days = ctx.scaled(1096, 90)
    history = history_for(ctx, n_days)
    out = ctx.folder("site") / "out"
    shutil.rmtree(out, ignore_errors=True)
    full_s, report = _publish(history.path, out)
    baseline_s = plain_writes(out, ctx.folder("site") / "baseline")
    again_s, again = _publish(history.path, out)
    full_peak_mb = peak_rss_mb()  # before the steps below add to this process's peak
    unchanged, unchanged_child = incremental_publish(history.path, out)
    next_rows = next_run_rows(ctx, history, out)
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    label = "three years" if n_days > 365 else f"{n_days} days (quick: not three years)"
    case = (
        f"{label}: {_days(out):,} digest days, {history.papers:,} papers, "
        f"{history.sightings:,} sightings → {report.files:,} files, {size_mb:,.0f} MB"
    )
    missed = full_s >= TARGET_S
    verdict = f"< {TARGET_S:.0f} s: {full_s:.1f} s {'❌ missed' if missed else '✅ met'}"
    return [
        Row(
            SECTION,
            f"full rebuild into an empty folder, {case}",
            f"{full_s:.1f} s ({report.files / full_s:,.0f} files/s)",
            baseline=f"plain writes of the same files: {baseline_s:.1f} s",
            verdict=verdict if n_days > 365 else "no target in quick mode",
            peak_mb=full_peak_mb,
            note=f"{len(report.written):,} files written; {full_s / baseline_s:.1f}× the baseline",
            missed=missed and n_days > 365,
            figures={"full_s": full_s, "baseline_s": baseline_s, "files": report.files},
        ),
        Row(
            SECTION,
            "re-publish with no change",
            f"{again_s:.1f} s; {len(again.written)} files written",
            baseline=f"full rebuild: {full_s:.1f} s",
            verdict="0 files written ✅" if not again.written else "files rewritten ❌",
            peak_mb=full_peak_mb,
            note="every page rendered and compared by content hash; none written",
            missed=bool(again.written),
            figures={"again_s": again_s, "written": len(again.written)},
        ),
        Row(
            SECTION,
            "a run's publish (incremental) with nothing changed",
            f"{unchanged['seconds']:.2f} s; {unchanged['written']} files written",
            baseline=f"re-publish with no change: {again_s:.1f} s",
            verdict="0 files written ✅" if not unchanged["written"] else "files rewritten ❌",
            peak_mb=unchanged["peak_mb"],
            note="reads the outline (fingerprints); renders the index, feeds and search index; "
            f"own process: {unchanged_child.wall_s:.1f} s with interpreter start and imports",
            missed=bool(unchanged["written"]),
            figures={"unchanged_s": unchanged["seconds"]},
        ),
        *next_rows,
    ]


def next_run_rows(ctx: Context, history: History, site: Path) -> list[Row]:
    """The next weekday's run on a copy of the history, then its incremental publish into a
    copy of the site, against a full publish into another copy: the same files."""
    folder = ctx.folder("site")
    with next_day_server(history) as (day, server):
        _, timings = plain_run(folder, history.path, server, day)
    db = Path(timings["db"])
    incremental_site, full_site = folder / "next-incremental", folder / "next-full"
    for copy in (incremental_site, full_site):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(site, copy)
    run, child = incremental_publish(db, incremental_site)
    run_s = run["seconds"]
    full_s, full = _publish(db, full_site)
    same = _pages(incremental_site) == _pages(full_site) and run["files"] == sorted(full.written)
    return [
        Row(
            SECTION,
            f"a run's publish (incremental) after the next day's run ({day})",
            f"{run_s:.2f} s; {run['written']:,} files written",
            baseline=f"full publish of the same: {full_s:.1f} s",
            verdict="same files as the full publish ✅" if same else "files differ ❌",
            peak_mb=run["peak_mb"],
            note=f"{full_s / run_s:.0f}× faster than the full publish; "
            "feeds compared without their `updated` times; "
            f"own process: {child.wall_s:.1f} s with interpreter start and imports",
            missed=not same,
            figures={"next_run_s": run_s, "next_full_s": full_s},
        )
    ]


def plain_writes(site: Path, folder: Path) -> float:
    """Seconds to write every file of `site` again, same paths and sizes, plainly."""
    files = [(p.relative_to(site), p.stat().st_size) for p in site.rglob("*") if p.is_file()]
    shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    for relative, size in files:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return time.perf_counter() - began


def incremental_publish(db: Path, site: Path) -> tuple[dict, ChildResult]:
    """A run's publish of `db` into `site`, in a process of its own: its figures (`main`)."""
    child = run_child([PYTHON, "-m", "bench.bench_site", str(db), str(site)])
    return json.loads(child.check("an incremental publish").stdout), child


def main(argv: list[str]) -> int:
    """One incremental publish; print its seconds and the files it wrote (JSON)."""
    db, site = argv
    seconds, report = _publish(Path(db), Path(site), incremental=True)
    written = sorted(report.written)
    figures = {"seconds": seconds, "peak_mb": own_peak_rss_mb()}
    print(json.dumps(figures | {"written": len(written), "files": written}))
    return 0


def _publish(db: Path, out: Path, *, incremental: bool = False) -> tuple[float, PublishReport]:
    began = time.perf_counter()
    with Warehouse.open(db) as wh:
        report = publish_site(wh, SiteSettings(out, SITE_URL), incremental=incremental)
    return time.perf_counter() - began, report


def _pages(site: Path) -> dict[str, bytes]:
    """Every file of a site but its state and its feeds (whose `updated` times are the clock's)."""
    return {
        str(p.relative_to(site)): p.read_bytes()
        for p in site.rglob("*")
        if p.is_file() and p.name != STATE_FILE and not p.name.startswith("feed.")
    }


def _days(out: Path) -> int:
    return sum(1 for _ in (out / "days").glob("*.html"))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
