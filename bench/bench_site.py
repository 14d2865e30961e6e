"""Site: `paperdigest publish` of three years of daily history (~800 digests, ~31k papers).

The history is what daily runs leave (see `bench.history`): every weekday's page loaded by its
own run and re-loaded by the next 7 days' runs, each run's digest recorded. Measured: a full
rebuild into an empty folder (read the warehouse, render every page and both feeds, write
every file atomically), and a re-publish with nothing changed (every file compared, none
written). The baseline writes the same number of files with the same sizes, plainly (one
`write_bytes` each, no rendering, no temporary file). Target: the full rebuild under 60 s.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.harness import Context, Row, peak_rss_mb
from bench.history import history_for
from flows.site import PublishReport, SiteSettings, publish_site
from flows.warehouse import Warehouse

SECTION = "Site"
TARGET_S = 60.0
SITE_URL = "https://digest.example.org/"


def run(ctx: Context) -> list[Row]:
    """A full rebuild next to the plain-write baseline, then a re-publish with no change."""
    n_days = ctx.scaled(1096, 90)
    history = history_for(ctx, n_days)
    out = ctx.folder("site") / "out"
    shutil.rmtree(out, ignore_errors=True)
    full_s, report = _publish(history.path, out)
    baseline_s = plain_writes(out, ctx.folder("site") / "baseline")
    again_s, again = _publish(history.path, out)
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
            peak_mb=peak_rss_mb(),
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
            peak_mb=peak_rss_mb(),
            note="every page rendered and compared by content hash; none written",
            missed=bool(again.written),
            figures={"again_s": again_s, "written": len(again.written)},
        ),
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


def _publish(db: Path, out: Path) -> tuple[float, PublishReport]:
    began = time.perf_counter()
    with Warehouse.open(db) as wh:
        report = publish_site(wh, SiteSettings(out, SITE_URL))
    return time.perf_counter() - began, report


def _days(out: Path) -> int:
    return sum(1 for _ in (out / "days").glob("*.html"))
