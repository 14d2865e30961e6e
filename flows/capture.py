"""When a page was captured: the moment its figures were true, kept apart from when it loaded.

Ages, gains per hour, "since …" and late arrivals are measured between capture times. A page
fetched now is captured now (the server's `Date` header, or the request time when that header
is missing or implausible); a saved page was captured when it was saved: `--as-of`, else no
earlier than a time the page states, else (estimated) the end of its digest day. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime

from flows.models import PageFormatError, ParsedPage, RawPage

# How each capture time was found, and whether it is an estimate (a reason built on an
# estimated time says so, or leaves out the figure it cannot support).
CAPTURE_BASES = {
    "date-header": False,  # the HTTP answer's Date header
    "request-time": False,  # this machine's clock when the request went out
    "as-of": False,  # stated by the user (`--as-of`)
    "page": True,  # a time stated inside the page: the page was saved no earlier
    "digest-day": True,  # the page's digest date at 23:59 UTC
    "load-time": True,  # when it was loaded: no better clue (and every page loaded before v4)
}
# A Date header this far ahead of our clock, or older than the request by more than a cache
# would keep an answer, is a broken clock or a replayed recording: the request time is used.
DATE_HEADER_AHEAD = timedelta(minutes=5)
DATE_HEADER_BEHIND = timedelta(hours=1)


def is_estimated(basis: str) -> bool:
    """True when a capture time of this basis is a guess, not a measurement."""
    return CAPTURE_BASES[basis]


def capture_from_response(
    date_header: str | None, requested_at: datetime, received_at: datetime
) -> tuple[datetime, str]:
    """(capture time, basis) of an HTTP answer: its Date header when plausible, else the
    request time."""
    stated = _http_date(date_header)
    if stated is not None and (
        requested_at - DATE_HEADER_BEHIND <= stated <= received_at + DATE_HEADER_AHEAD
    ):
        return stated, "date-header"
    return requested_at, "request-time"


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stated = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return stated.astimezone(UTC) if stated.tzinfo else None  # a zone-less Date is broken


def parse_as_of(text: str) -> datetime:
    """`--as-of`: an ISO 8601 time (UTC when no offset is given); ValueError otherwise."""
    value = text.strip()
    if len(value) <= 10:  # a bare date says nothing about the hour the page was saved
        raise ValueError(f"not a time: {text!r} (use e.g. 2026-08-14T09:00Z)")
    try:
        stated = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use e.g. 2026-08-14T09:00Z)") from None
    return stated.replace(tzinfo=UTC) if stated.tzinfo is None else stated.astimezone(UTC)


def stated_time(values: list[object]) -> datetime | None:
    """The latest of the ISO timestamps a page states (strings that are not one are ignored)."""
    found = []
    for value in values:
        if isinstance(value, str) and len(value) > 10:
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            found.append(stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp)
    return max(found).astimezone(UTC) if found else None


def end_of_day(day: date) -> datetime:
    """23:59 UTC of a digest day: the estimate for a saved page that says nothing better."""
    return datetime.combine(day, time(23, 59), tzinfo=UTC)


def listing_start(day: date) -> datetime:
    """00:00 UTC of a digest day: the morning its list opens, where a paper's age starts."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def settle_capture(raw: RawPage, parsed: ParsedPage, loaded_at: datetime) -> RawPage:
    """A page with its capture time settled: as fetched or stated (`--as-of`), else (a saved
    page) no earlier than a time the page states nor than the end of its digest day, else its
    load time."""
    if raw.captured_at is not None and raw.capture_basis is not None:
        return raw
    if raw.http_status is not None and raw.fetched_at is not None:  # fetched, timed by us
        return replace(raw, captured_at=raw.fetched_at, capture_basis="request-time")
    day = raw.digest_date or parsed.digest_date
    stated = parsed.stated_at
    if day is not None and (stated is None or stated <= end_of_day(day)):
        return replace(raw, captured_at=end_of_day(day), capture_basis="digest-day")
    if stated is not None:
        return replace(raw, captured_at=stated, capture_basis="page")
    return replace(raw, captured_at=loaded_at, capture_basis="load-time")


def check_stated_capture(raw: RawPage, parsed: ParsedPage) -> None:
    """Refuse a page whose `--as-of` is before its own list opened: that capture cannot be."""
    day = parsed.digest_date or raw.digest_date
    if raw.capture_basis != "as-of" or raw.captured_at is None or day is None:
        return
    if raw.captured_at < listing_start(day):
        raise PageFormatError(
            raw.location,
            f"--as-of {raw.captured_at:%Y-%m-%d %H:%M} UTC is before its {day} list opened "
            "(00:00 UTC)",
        )


def described(captured_at: datetime | None, basis: str | None) -> str:
    """How `status` shows a capture time: `2026-08-14 09:00 UTC` or `… (estimated: digest-day)`."""
    if captured_at is None or basis is None:
        return "unknown"
    text = f"{captured_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"{text} (estimated: {basis})" if is_estimated(basis) else f"{text} ({basis})"
