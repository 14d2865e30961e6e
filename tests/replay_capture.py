"""Three replayed days (2026-08-13 → 08-14 → 08-17), each captured on its morning, and a model
of what their digests must say, computed from the pages alone.

What is recorded and what is derived:

* recorded: the API answers of 2026-08-13 and 2026-08-14 (tests/fixtures/hf-api/), real items
  with their real upvotes;
* derived, 08-14 morning: the 08-14 listing as its first 18 recorded items (the last 5 were
  added to the day later: they are the late arrivals), and the 08-13 listing captured again
  with grown upvotes (`grown`);
* derived, 08-17 morning (a Monday; HF lists nothing at weekends): the 08-17 listing made like
  tests/replay.py makes any day (recorded 08-14 items with shifted ids and upvotes), and the
  whole 08-14 listing (all 23 items) captured again with grown upvotes.

No 2026-08-17 page was ever recorded; the capture times are stated with `--as-of` (09:00 UTC),
the time a morning cron would have saved them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tests.replay import recorded_day

FIXTURES = Path(__file__).parent / "fixtures" / "hf-api"
AUG13, AUG14, AUG17 = date(2026, 8, 13), date(2026, 8, 14), date(2026, 8, 17)
MORNING = {
    day: datetime(day.year, day.month, day.day, 9, tzinfo=UTC) for day in (AUG13, AUG14, AUG17)
}
LISTED_BY_MORNING = 18  # of the 23 recorded 08-14 items; the other 5 arrive late
MIN_GAIN, TRENDING_LIMIT, WINDOW = 5, 10, timedelta(days=7)


def recorded(day: date) -> list[dict]:
    """The recorded API answer of a day."""
    return json.loads((FIXTURES / f"daily_papers_{day}.json").read_text())


def grown(items: list[dict], top_gain: int, step: int) -> list[dict]:
    """The same listing captured later: the i-th paper gained max(0, top_gain - step·i)."""
    later = copy.deepcopy(items)
    for i, item in enumerate(later):
        item["paper"]["upvotes"] += max(0, top_gain - step * i)
    return later


def captures() -> dict[date, dict[str, list[dict]]]:
    """Each replayed morning → its saved pages (file stem → API items)."""
    return {
        AUG13: {"daily_papers_2026-08-13": recorded(AUG13)},
        AUG14: {
            "daily_papers_2026-08-13": grown(recorded(AUG13), top_gain=40, step=8),
            "daily_papers_2026-08-14": recorded(AUG14)[:LISTED_BY_MORNING],
        },
        AUG17: {
            "daily_papers_2026-08-14": grown(recorded(AUG14), top_gain=36, step=4),
            "daily_papers_2026-08-17": recorded_day(AUG17, n=6),
        },
    }


def write_capture(folder: Path, pages: dict[str, list[dict]]) -> Path:
    """Save a morning's pages as files, as a user's cron would have."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, items in pages.items():
        (folder / f"{stem}.json").write_text(json.dumps(items), encoding="utf-8")
    return folder


# ---- the model: what each morning's digest must say, from the pages alone -----------------------


@dataclass(frozen=True)
class Seen:
    """One paper on one captured page."""

    run: int
    at: datetime
    day: date
    rank: int
    upvotes: int


@dataclass(frozen=True)
class Expected:
    """One paper of a digest: its section and reason."""

    paper_id: str
    section: str
    reason: str
    upvotes: int  # as mailed


def sightings_of(mornings: list[date]) -> dict[str, list[Seen]]:
    """paper id → its sightings, run n being the n-th morning loaded."""
    found: dict[str, list[Seen]] = {}
    for run, day in enumerate(mornings, 1):
        for stem, items in captures()[day].items():
            listed = date.fromisoformat(stem[-10:])
            for rank, item in enumerate(items, 1):
                paper = item["paper"]
                seen = Seen(run, MORNING[day], listed, rank, paper["upvotes"])
                found.setdefault(paper["id"], []).append(seen)
    return found


def expected_digests(mornings: list[date]) -> list[list[Expected]]:
    """The digest of each daily run after the first morning (an import), in order."""
    mailed: dict[str, int] = {}  # paper → upvotes when last mailed
    day_mailed: dict[date, datetime] = {}  # digest date → capture time its email was built from
    digests = []
    for run in range(2, len(mornings) + 1):
        digest = _digest_of(run, sightings_of(mornings[:run]), mailed, day_mailed)
        for item in digest:
            mailed[item.paper_id] = item.upvotes
        day_mailed.setdefault(mornings[run - 1], MORNING[mornings[run - 1]])
        digests.append(digest)
    return digests


def _digest_of(
    run: int, seen: dict[str, list[Seen]], mailed: dict[str, int], day_mailed: dict
) -> list[Expected]:
    as_of = max(s.at for rows in seen.values() for s in rows if s.run == run)
    scored, others = [], []
    for paper_id, rows in seen.items():
        rows = [s for s in rows if as_of - WINDOW <= s.at <= as_of]
        if not rows:
            continue
        latest = max(rows, key=lambda s: (s.at, s.run))
        earlier = [s for s in rows if s.run < latest.run and s.at <= latest.at]
        prev = max(earlier, key=lambda s: (s.at, s.run)) if earlier else None
        velocity = _velocity(paper_id, latest, prev, mailed)
        if velocity is not None:
            scored.append((-velocity, -latest.upvotes, paper_id, latest, prev))
        else:
            others.append((paper_id, latest, rows))
    scored.sort()
    digest = [
        Expected(pid, "trending", _trending_reason(pid, latest, prev, mailed), latest.upvotes)
        for _, _, pid, latest, prev in scored[:TRENDING_LIMIT]
    ]
    # the rest keep the order of their scores (as diff.sql's trending rank), then upvotes
    rest = [(i, pid, latest) for i, (_, _, pid, latest, _) in enumerate(scored)]
    rest = rest[TRENDING_LIMIT:] + [(len(scored), pid, latest) for pid, latest, _ in others]
    late, new = [], []
    for position, paper_id, latest in rest:
        first = min(s.at for s in seen[paper_id])
        first_day = min(s.day for s in seen[paper_id])
        first_run = min(s.run for s in seen[paper_id])
        key = (position, -latest.upvotes, latest.rank, paper_id)
        if paper_id not in mailed and first_day in day_mailed and day_mailed[first_day] < first:
            late.append((key, Expected(paper_id, "late", _late_reason(first_day), latest.upvotes)))
        elif first_run == run:
            reason = f"new on the {_day(latest.day)} list"
            new.append((key, Expected(paper_id, "new", reason, latest.upvotes)))
    return digest + [e for _, e in sorted(late)] + [e for _, e in sorted(new)]


def _velocity(paper_id: str, latest: Seen, prev: Seen | None, mailed: dict) -> float | None:
    if prev is not None:
        gain = latest.upvotes - prev.upvotes
        since_mailed = latest.upvotes - mailed.get(paper_id, latest.upvotes - MIN_GAIN)
        if gain >= MIN_GAIN and since_mailed >= MIN_GAIN:
            return gain / max(_hours(latest.at - prev.at), 1.0)
        return None
    if latest.upvotes >= MIN_GAIN and paper_id not in mailed:
        return latest.upvotes / max(_hours(latest.at - _listing(latest.day)), 1.0)
    return None


def _trending_reason(paper_id: str, latest: Seen, prev: Seen | None, mailed: dict) -> str:
    if prev is None:
        age = _hours(latest.at - _listing(latest.day))
        return (
            f"{latest.upvotes} upvotes in its first {age:.0f} h (first sighting: ranked by "
            "upvotes for its age, no earlier figure to compare)"
        )
    reason = f"+{latest.upvotes - prev.upvotes} upvotes since {prev.at:%a %H:%M}"
    if prev.day == latest.day:
        reason += f", #{prev.rank} → #{latest.rank} on {_day(latest.day)}"
    if paper_id in mailed:
        reason += f" (+{latest.upvotes - mailed[paper_id]} since last mailed)"
    return reason


def _late_reason(day: date) -> str:
    return f"added to the {_day(day)} list after that day's email went out"


def _listing(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _day(day: date) -> str:
    return f"{day:%b} {day.day}"
