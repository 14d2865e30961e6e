"""Saved text pages: what a browser's "save as text" (or select-all and paste) keeps of a page.

Two layouts exist: one line per title and per abstract (000), or blank-line separated blocks
with an optional "• N authors / · / date" card footer (001, 002). Both are read as the same
stream of units, so one entry reader serves both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from flows.models import ParsedPage, Reject
from flows.parse.clean import RawEntry, assemble_page, excerpt_of, parse_count

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_DAY = rf"(?P<month>{'|'.join(_MONTHS)})\s+(?P<day>\d{{1,2}})(?:,\s*(?P<year>\d{{4}}))?"
_PAGE_DATE = re.compile(_MONTH_DAY)
# "Aug 9 4" is Aug 9 with 4 upvotes; "Dec 26, 2024 2" is 2024-12-26 with 2 upvotes.
_ITEM_DATE = re.compile(rf"{_MONTH_DAY}(?:\s+(?P<upvotes>[\d,.]+[kK]?))?")
_AUTHORS = re.compile(r"•\s*(?P<count>\d{1,6})\s+authors?")
_SEPARATOR = "·"
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")

_HEADER_LINES = frozenset({"new", "subscribe", "daily papers", "byak and the research community"})
_HEADER_PREFIX = "get trending papers in your email inbox"
_SUBSCRIBE = "Subscribe"
# Titles on the seed pages stay under 180 characters; abstracts run 600+.
_ABSTRACT_MIN_CHARS = 200
_HEADER_SCAN_UNITS = 12


def is_text_page(text: str) -> bool:
    """True when the text opens with the Daily Papers page header (as a saved page does)."""
    lines = (line.strip().lower() for line in text.split("\n"))
    head = [line for line in lines if line][:_HEADER_SCAN_UNITS]
    return any(_is_header_line(line) for line in head)


def parse_text(text: str, *, digest_date: date | None, today: date) -> ParsedPage:
    """Parse a saved text page; entries get the page date as their digest date."""
    units = split_units(text)
    header_end, header_date, glued_subscribe = read_header(units)
    page_date = resolve_page_date(header_date, digest_date, today)
    body = units[header_end:]
    if glued_subscribe and body:
        # The "Subscribe" button text lands on the first title when no newline separates them.
        body[0] = body[0].removeprefix(_SUBSCRIBE)
    return assemble_page("text", page_date, read_entries(body, page_date))


def split_units(text: str) -> list[str]:
    """Titles, abstracts and footer lines in page order, whichever layout the page uses."""
    lines = [line.strip() for line in text.split("\n")]
    blocks = _BLANK_LINE.split(text.strip())
    # Block layout has a blank line after nearly every unit; a line-per-unit page with a
    # few stray blank lines must not have its titles and abstracts glued together.
    if len(blocks) * 20 < sum(1 for line in lines if line):
        return [line for line in lines if line]
    units: list[str] = []
    for block in blocks:
        block_lines = [line.strip() for line in block.split("\n") if line.strip()]
        if block_lines and _is_footer_line(block_lines[0]):
            units.extend(block_lines)
        elif block_lines:
            units.append(" ".join(block_lines))  # a wrapped title or abstract
    return units


def read_header(units: list[str]) -> tuple[int, re.Match[str] | None, bool]:
    """Where the header ends, its date (if any), and whether "Subscribe" is glued to a title."""
    saw_header = saw_subscribe = False
    for index, unit in enumerate(units):
        lowered = unit.lower()
        if _is_header_line(lowered):
            saw_header = True
            saw_subscribe = saw_subscribe or lowered == "subscribe"
        elif saw_header and (match := _PAGE_DATE.fullmatch(unit)):
            return index + 1, match, False
        else:
            glued = saw_header and not saw_subscribe and _starts_with_glued_subscribe(unit)
            return index, None, glued
    return len(units), None, False


def _is_header_line(lowered: str) -> bool:
    return lowered in _HEADER_LINES or lowered.startswith(_HEADER_PREFIX)


def _starts_with_glued_subscribe(unit: str) -> bool:
    rest = unit.removeprefix(_SUBSCRIBE)
    return rest != unit and bool(rest) and not rest[0].isspace()


def resolve_page_date(
    header_date: re.Match[str] | None, digest_date: date | None, today: date
) -> date:
    """The header's month/day in --date's year, else the latest such day not after today."""
    reference = digest_date or today
    if header_date is None:
        return reference
    month, day, year = _month_day_year(header_date)
    if year is not None:
        return _safe_date(year, month, day) or reference
    if digest_date is not None:
        return _safe_date(digest_date.year, month, day) or reference
    return _latest_not_after(month, day, today) or reference


def _month_day_year(match: re.Match[str]) -> tuple[int, int, int | None]:
    year = match.group("year")
    month = _MONTHS.index(match.group("month")) + 1
    return month, int(match.group("day")), int(year) if year else None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _latest_not_after(month: int, day: int, reference: date) -> date | None:
    # Eight years back always reaches a leap year, so Feb 29 resolves too.
    for year in range(reference.year, reference.year - 8, -1):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate <= reference:
            return candidate
    return None


def read_entries(units: list[str], page_date: date) -> Iterator[RawEntry | Reject]:
    """Walk title, abstract, optional footer; resynchronise around missing titles/abstracts."""
    index, position = 0, 0
    while index < len(units):
        position += 1
        entry, index = _read_entry(units, index, position, page_date)
        yield entry


def _read_entry(
    units: list[str], start: int, position: int, page_date: date
) -> tuple[RawEntry | Reject, int]:
    first, second, third = (_unit_at(units, start + offset) for offset in range(3))
    problem, next_unit = _misalignment(first, second, third, start)
    if problem:
        end = _footer_end(units, next_unit)
        return Reject(position, problem, excerpt_of("\n".join(units[start:end]))), end
    end = _footer_end(units, start + 2)
    footer = _read_footer(units[start + 2 : end], page_date)
    entry = RawEntry(
        position=position,
        source="\n".join(units[start:end]),
        title=first,
        abstract=second,
        digest_date=page_date,
        n_authors=footer.n_authors,
        published_on=footer.published_on,
        upvotes=footer.upvotes,
    )
    return entry, end


def _unit_at(units: list[str], index: int) -> str | None:
    return units[index] if index < len(units) else None


def _misalignment(
    first: str, second: str | None, third: str | None, start: int
) -> tuple[str | None, int]:
    """Why first cannot start a title/abstract pair, and where the reader should go next."""
    if _is_footer_line(first):
        return "author/date footer without a title", start
    if _looks_like_abstract(first) and not _looks_like_abstract(second):
        return "no title", start + 1
    if second is None or _is_footer_line(second):
        return "no abstract", start + 1
    if not _looks_like_abstract(second) and _looks_like_abstract(third):
        # title, title, abstract: the first title lost its abstract.
        return "no abstract", start + 1
    return None, start + 2


def _looks_like_abstract(unit: str | None) -> bool:
    return (
        unit is not None
        and len(unit) >= _ABSTRACT_MIN_CHARS
        and _SENTENCE_END.search(unit) is not None
        and not _is_footer_line(unit)
    )


def _is_footer_line(unit: str) -> bool:
    return unit == _SEPARATOR or _AUTHORS.fullmatch(unit) is not None


def _footer_end(units: list[str], index: int) -> int:
    """Index just past the card footer ("• N authors", "·", date line) starting at index."""
    while index < len(units) and _is_footer_line(units[index]):
        index += 1
    # The date line closes a footer; it may also follow an abstract directly.
    if index < len(units) and _ITEM_DATE.fullmatch(units[index]):
        index += 1
    return index


@dataclass(frozen=True, slots=True)
class _Footer:
    n_authors: int | None = None
    published_on: date | None = None
    upvotes: int | None = None


def _read_footer(lines: list[str], page_date: date) -> _Footer:
    n_authors = published_on = upvotes = None
    for line in lines:
        if authors := _AUTHORS.fullmatch(line):
            n_authors = int(authors.group("count"))
        elif item_date := _ITEM_DATE.fullmatch(line):
            published_on = _item_date(item_date, page_date)
            upvotes = parse_count(item_date.group("upvotes") or "")
    return _Footer(n_authors=n_authors, published_on=published_on, upvotes=upvotes)


def _item_date(match: re.Match[str], page_date: date) -> date | None:
    """A card date; without a year it is the latest such day not after the page date."""
    month, day, year = _month_day_year(match)
    if year is not None:
        return _safe_date(year, month, day)
    later_in_year = (month, day) > (page_date.month, page_date.day)
    return _safe_date(page_date.year - 1 if later_in_year else page_date.year, month, day)
