"""A paper's rank and upvotes over time as an inline SVG chart: no script, no external file.

Upvotes are the solid line (left scale, more is higher); the rank is the dashed line (right
scale, #1 at the top). The SVG scales to the width of its container.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 48, 16, 36


def history_chart(points: list[tuple[datetime, int, int | None]], title: str) -> Markup:
    """SVG markup for (seen_at, rank, upvotes) points in time order (empty without points).

    Every text in it is escaped here, so templates may insert it as it is.
    """
    if not points:
        return Markup("")
    times = [p[0].timestamp() for p in points]
    t0, t1 = min(times), max(times)
    votes = [p[2] or 0 for p in points]
    ranks = [p[1] for p in points]
    top_votes = max(max(votes), 1)
    worst_rank = max(max(ranks), 2)

    def x(t: float) -> float:
        span = t1 - t0
        return LEFT + (WIDTH - LEFT - RIGHT) * ((t - t0) / span if span else 0.5)

    def y_votes(v: int) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - v / top_votes)

    def y_rank(r: int) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * ((r - 1) / (worst_rank - 1))

    vote_points = " ".join(
        f"{x(t):.1f},{y_votes(v):.1f}" for t, v in zip(times, votes, strict=True)
    )
    rank_points = " ".join(f"{x(t):.1f},{y_rank(r):.1f}" for t, r in zip(times, ranks, strict=True))
    first, last = points[0][0], points[-1][0]
    label = (
        f"Upvotes {votes[0]:,} → {votes[-1]:,} and rank #{ranks[0]} → #{ranks[-1]} "
        f"from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    )
    dots = "".join(
        f'<circle class="c-votes" cx="{x(t):.1f}" cy="{y_votes(v):.1f}" r="3"/>'
        f'<circle class="c-rank" cx="{x(t):.1f}" cy="{y_rank(r):.1f}" r="3"/>'
        for t, v, r in zip(times, votes, ranks, strict=True)
    )
    base = HEIGHT - BOTTOM
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}: {escape(label)}</title>"
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>'
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>'
        f'<line class="axis" x1="{WIDTH - RIGHT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{base}"/>'
        f'<text class="t-votes" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{top_votes:,}</text>'
        f'<text class="t-votes" x="{LEFT - 6}" y="{base}" text-anchor="end">0</text>'
        f'<text class="t-rank" x="{WIDTH - RIGHT + 6}" y="{TOP + 4}">#1</text>'
        f'<text class="t-rank" x="{WIDTH - RIGHT + 6}" y="{base}">#{worst_rank}</text>'
        f'<text class="t-axis" x="{LEFT}" y="{HEIGHT - 12}">{first:%b %d, %Y}</text>'
        f'<text class="t-axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 12}" text-anchor="end">'
        f"{last:%b %d, %Y}</text>"
        f'<polyline class="l-votes" points="{vote_points}"/>'
        f'<polyline class="l-rank" points="{rank_points}"/>'
        f"{dots}</svg>"
    )
