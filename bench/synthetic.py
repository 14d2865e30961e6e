"""Synthetic but realistic Hugging Face days, derived from the recorded fixtures.

Every real API item of `tests/fixtures/hf-api` (and the props of the recorded HTML day page) is
a template: a synthetic day takes ~40 of them in a day-dependent order and gives each its own
arXiv id, title, digest date and upvotes. `api_body` and `html_day_page` render a day the way
`/api/daily_papers` and `/papers/date/…` answer it; everything is a pure function of the date
(and an `epoch`, which moves the upvotes as a later visit would see them).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import date, timedelta
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
API_FIXTURES = sorted((FIXTURES / "hf-api").glob("daily_papers_*.json"))
DAY_PAGE = FIXTURES / "hf-html" / "papers_2024-08-01.html"
PAPERS_PER_DAY = 40  # the mean; a day has 35–45
_PROPS = re.compile(r'(data-target="DailyPapers" data-props=")([^"]*)(")')
_PAGE_DATE = re.compile(r"2024-08-01")


@cache
def item_pool() -> tuple[str, ...]:
    """Every recorded item (API fixtures and the HTML page's props), each as JSON text."""
    items = [item for path in API_FIXTURES for item in json.loads(path.read_text())]
    items += _day_page_props()["dailyPapers"]
    return tuple(json.dumps(item) for item in items)


def papers_on(day: date) -> int:
    """How many papers the list of `day` has: none at weekends, 35–45 on weekdays."""
    if day.weekday() >= 5:
        return 0
    return PAPERS_PER_DAY - 5 + _stable_hash(day.isoformat()) % 11


def weekdays_between(start: date, end: date) -> int:
    """Weekdays from start to end inclusive."""
    return sum((start + timedelta(n)).weekday() < 5 for n in range((end - start).days + 1))


def papers_between(start: date, end: date) -> int:
    """Papers listed from start to end inclusive."""
    return sum(papers_on(start + timedelta(n)) for n in range((end - start).days + 1))


def paper_id(day: date, position: int) -> str:
    """The synthetic arXiv id of the paper at `position` (0-based) of `day`'s list."""
    return f"{day:%y%m}.{day.day:02d}{position:03d}"


def upvotes(day: date, position: int, epoch: int = 0) -> int:
    """Upvotes of a paper as seen `epoch` visits after its day (they only grow)."""
    base = (_stable_hash(f"{day}#{position}") % 60) + (45 - position) // 3
    return base + epoch * (3 + _stable_hash(f"{day}#{position}#gain") % 12)


def template_index(day: date, position: int) -> int:
    """Which recorded item the paper at `position` of `day`'s list is made from."""
    return (_stable_hash(day.isoformat()) + position) % len(item_pool())


def title(day: date, position: int) -> str:
    """The title of the paper at `position` of `day`'s list."""
    return f"{_template_titles()[template_index(day, position)]} ({day} #{position})"


def api_items(day: date, epoch: int = 0) -> list[dict]:
    """The `/api/daily_papers?date=day` items: recorded items with this day's ids and figures."""
    pool = item_pool()
    return [
        _shifted(json.loads(pool[template_index(day, j)]), day, j, epoch)
        for j in range(papers_on(day))
    ]


def api_body(day: date, epoch: int = 0) -> bytes:
    """The API answer for `day`, as the bytes the server sends."""
    return json.dumps(api_items(day, epoch)).encode()


def html_day_page(day: date, epoch: int = 0) -> bytes:
    """The website's `/papers/date/day` page, with the day's items in its DailyPapers props."""
    page = DAY_PAGE.read_text(encoding="utf-8")
    match = _PROPS.search(page)
    assert match is not None, f"{DAY_PAGE} has no DailyPapers props"
    props = _day_page_props() | {
        "date": f"{day}T00:00:00.000Z",
        "dailyPapers": api_items(day, epoch),
        "nextDate": (day + timedelta(1)).isoformat(),
        "prevDate": (day - timedelta(1)).isoformat(),
    }
    escaped = html.escape(json.dumps(props, ensure_ascii=False), quote=True)
    head, tail = page[: match.start(2)], page[match.end(2) :]
    return (_redate(head, day) + escaped + _redate(tail, day)).encode("utf-8")


def _shifted(item: dict, day: date, position: int, epoch: int) -> dict:
    paper = item["paper"]
    paper["id"] = paper_id(day, position)
    paper["title"] = title(day, position)
    paper["upvotes"] = upvotes(day, position, epoch)
    paper["publishedAt"] = f"{day - timedelta(1)}T17:59:00.000Z"
    paper["submittedOnDailyAt"] = f"{day}T00:00:00.000Z"
    paper.pop("discussionId", None)
    item["title"] = paper["title"]
    item["publishedAt"] = paper["publishedAt"]
    item["numComments"] = position % 7
    return item


@cache
def _template_titles() -> tuple[str, ...]:
    return tuple(_first_line(json.loads(item)["paper"].get("title")) for item in item_pool())


def _first_line(text: object) -> str:
    return " ".join(str(text or "Untitled").split())


@cache
def _day_page_props() -> dict:
    match = _PROPS.search(DAY_PAGE.read_text(encoding="utf-8"))
    assert match is not None, f"{DAY_PAGE} has no DailyPapers props"
    return json.loads(html.unescape(match.group(2)))


def _redate(text: str, day: date) -> str:
    return _PAGE_DATE.sub(day.isoformat(), text)


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")
