"""Recorded Hugging Face days for a local replay server: real API items, shifted to new dates.

`recorded_day(day)` derives a realistic `/api/daily_papers` answer for any date from the real
fixture of 2026-08-14 (ids, dates and upvotes shifted so each day has its own papers);
`serve_days(httpserver, …)` answers the API on a pytest-httpserver the way Hugging Face does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

from werkzeug import Request, Response

FIXTURE = Path(__file__).parent / "fixtures" / "hf-api" / "daily_papers_2026-08-14.json"
_ITEMS = json.loads(FIXTURE.read_text())


def recorded_day(day: date, n: int = 12) -> list[dict]:
    """`n` API items for `day`, with ids unique to the day (weekends are empty, as on HF)."""
    if day.weekday() >= 5:
        return []
    items = []
    for j in range(n):
        item = copy.deepcopy(_ITEMS[j % len(_ITEMS)])
        paper = item["paper"]
        paper["id"] = f"{day:%y%m}.{day.day:02d}{j:03d}"
        paper["title"] = f"{paper['title']} ({day} #{j})"
        paper["upvotes"] = (day.toordinal() * 7 + j * 13) % 90
        paper["submittedOnDailyAt"] = f"{day}T00:00:00.000Z"
        item["title"] = paper["title"]
        items.append(item)
    return items


def serve_days(
    httpserver, *, failing: set[date] = frozenset(), answer: Callable[[date], list] = recorded_day
) -> list[str]:
    """Answer `/api/daily_papers?date=…&p=…` from `answer`; `failing` days get HTTP 500.

    Returns the list of dates requested (one entry per request) for assertions.
    """
    requested: list[str] = []

    def handler(request: Request) -> Response:
        day = date.fromisoformat(request.args["date"])
        requested.append(day.isoformat())
        if day in failing:
            return Response("upstream error", status=500)
        page = int(request.args.get("p", 0))
        limit = int(request.args.get("limit", 50))
        items = answer(day)[page * limit : (page + 1) * limit]
        return Response(json.dumps(items), content_type="application/json")

    httpserver.expect_request("/api/daily_papers").respond_with_handler(handler)
    return requested
