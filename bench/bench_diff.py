"""Diff: `compute_diff` of the latest run over one day, one year and ten years of history.

Each history is what daily runs leave (see `bench.history`): every weekday's page loaded by its
own run and re-loaded by the next 7 days' runs with more upvotes, so trending has gains to rank
and the window holds ~8 days of sightings whatever the length of the history behind it.
Target: ten years under 2× one day.
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from bench.harness import Context, Row, peak_rss_mb, ratio_verdict, timed
from bench.history import History, history_for
from flows.diff import DiffSettings, compute_diff
from flows.models import Digest
from flows.warehouse import Warehouse

SECTION = "Diff"
TARGET_RATIO = 2.0


def run(ctx: Context) -> list[Row]:
    """One row per history length, each judged against one day of history."""
    spans = [(1, "one day"), (365, "one year"), (3650, "ten years")]
    if ctx.quick:
        spans = [(1, "one day"), (30, "30 days"), (365, "one year (quick: not ten)")]
    repeats = ctx.scaled(15, 5)
    medians: dict[int, float] = {}
    rows = []
    for n_days, label in spans:
        history = history_for(ctx, n_days)
        medians[n_days], digest = median_diff(history, repeats)
        rows.append(_row(label, history, digest, medians, n_days, repeats))
    return rows


def median_diff(history: History, repeats: int) -> tuple[float, Digest]:
    """Median seconds of the diff of the history's last run (after one warm-up run)."""
    with Warehouse.open(history.path) as wh:
        digest = diff_last_run(wh, history)
        seconds = [timed(lambda: diff_last_run(wh, history)) for _ in range(repeats)]
    return statistics.median(seconds), digest


def diff_last_run(wh: Warehouse, history: History) -> Digest:
    """The digest of the history's last run, a minute after it ran."""
    return compute_diff(
        wh,
        run_id=history.last_run_id,
        digest_date=history.last_day,
        as_of=history.last_run_at + timedelta(minutes=1),
        settings=DiffSettings(),
    )


def _row(
    label: str, history: History, digest: Digest, medians: dict[int, float], n_days: int, n: int
) -> Row:
    one_day = medians[1]
    verdict, missed = ("the baseline" if n_days == 1 else ""), False
    if n_days > 1 and n_days == max(medians):
        verdict, missed = ratio_verdict(medians[n_days], one_day, TARGET_RATIO)
    return Row(
        SECTION,
        f"{label}: {history.papers:,} papers, {history.sightings:,} sightings",
        f"{medians[n_days] * 1000:.1f} ms",
        baseline=f"one day: {one_day * 1000:.1f} ms" if n_days > 1 else "",
        verdict=verdict,
        peak_mb=peak_rss_mb(),
        note=f"median of {n}; digest: {len(digest.new)} new, {len(digest.trending)} trending, "
        f"{len(digest.late)} late, {len(digest.changes)} changes",
        missed=missed,
        figures={"median_ms": medians[n_days] * 1000},
    )
