"""Terminal output of `status` and `diff`: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from flows.capture import described
from flows.models import Digest
from flows.warehouse import WarehouseStatus


def print_status(status: WarehouseStatus, *, as_json: bool = False) -> None:
    """Print a warehouse's totals, date span, gaps, rejects and recent runs."""
    if as_json:
        print(json.dumps(asdict(status), indent=2, default=str))
        return
    console = Console()
    t = status.totals
    console.print(f"[bold]{status.path}[/bold] (schema v{status.schema_version})")
    console.print(
        f"{t['pages']} pages, {t['papers']} papers, {t['sightings']} sightings, "
        f"{t['rejects']} rejects, {t['emails_sent']} emails sent"
    )
    console.print(f"digest dates: {t['first_date'] or '-'} → {t['last_date'] or '-'}")
    gaps = ", ".join(str(d) for d in status.gaps[:15]) or "none"
    more = f" (+{len(status.gaps) - 15} more)" if len(status.gaps) > 15 else ""
    console.print(f"gaps in the last 30 days of data: {gaps}{more}")
    for reason, n in status.reject_reasons:
        console.print(f"  rejects: {n} × {reason}")
    console.print(_runs_table(status.recent_runs))
    _page_lines(console, status.recent_pages)


def _page_lines(console: Console, pages: list[dict[str, Any]]) -> None:
    """The newest pages, each with when it was captured (and whether that is estimated)."""
    console.print("recent pages (captured: when their figures were true):")
    for page in pages:
        console.print(
            f"  page {page['page_id']} (run {page['run_id']}), {page['digest_date'] or 'undated'}"
            f", {page['n_entries']} entries: captured "
            f"{described(page['captured_at'], page['capture_basis'])}, loaded "
            f"{page['fetched_at']:%Y-%m-%d %H:%M} UTC, {page['location']}",
            soft_wrap=True,
            highlight=False,
        )


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="recent runs")
    for name in ("run", "flow", "started", "status", "counts"):
        table.add_column(name)
    for run in runs:
        counts = json.loads(run["counts"]) if run["counts"] else {}
        brief = ", ".join(f"{k}={v}" for k, v in counts.items() if v)
        table.add_row(
            str(run["run_id"]),
            run["flow"],
            f"{run['started_at']:%Y-%m-%d %H:%M}",
            run["status"],
            brief or (run["error"] or ""),
        )
    return table


def digest_as_dict(digest: Digest) -> dict[str, Any]:
    """A digest as plain JSON-ready values."""
    return json.loads(json.dumps(asdict(digest), default=str))


def print_digest(digest: Digest, *, as_json: bool = False) -> None:
    """Print a digest's sections as tables (or JSON)."""
    if as_json:
        print(json.dumps(digest_as_dict(digest), indent=2))
        return
    console = Console()
    console.print(
        f"[bold]digest {digest.digest_date}[/bold]: {len(digest.new)} new, "
        f"{len(digest.trending)} trending, {len(digest.late)} late, "
        f"{len(digest.changes)} changes; data through {digest.data_through}"
    )
    for name, papers in (("trending", digest.trending), ("late", digest.late), ("new", digest.new)):
        if not papers:
            continue
        table = Table(title=f"{name} ({len(papers)})")
        for column in ("paper", "title", "upvotes", "why"):
            table.add_column(column, overflow="fold")
        for p in papers:
            table.add_row(p.paper_id, p.title[:80], _num(p.upvotes), p.reason)
        console.print(table)
    for change in digest.changes:
        console.print(f"change: {change.paper_id} {change.title[:60]}: {change.detail}")
    if digest.gaps:
        console.print("gaps: " + ", ".join(str(d) for d in digest.gaps))


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
