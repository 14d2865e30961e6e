"""Subscribers: a small JSON file of recipients, their topics and cadence; weekly merging.

The file (`subscribers.json` beside the warehouse unless PAPERDIGEST_SUBSCRIBERS says
otherwise) looks like::

    {"version": 1, "subscribers": [
      {"address": "ada@example.org", "include": ["diffusion"], "exclude": [],
       "cadence": "daily", "active": true,
       "added_at": "2026-08-14T07:00:00+00:00", "unsubscribed_at": null}]}

Writes go to a temporary file that replaces the old one (`os.replace`), under a lock file,
so a crash or a concurrent `subscribers add` never leaves half a file behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.atomic import write_atomic
from flows.library import Library, libraries_dir, library_file_name, write_library
from flows.models import Change, Digest, DigestPaper, Recipient, Topics

CADENCES = ("daily", "weekdays", "weekly")
ENV_VAR = "PAPERDIGEST_SUBSCRIBERS"
FILE_VERSION = 1

# Deliberately stricter than RFC 5322: no display names, quotes, comments or whitespace,
# so an address is always safe in a header and in a file name slug.
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SECTION_RANK = {"trending": 0, "new": 1, "late": 2}


class SubscribersFileError(ValueError):
    """The subscribers file cannot be read; the message names the file and the reason."""


# ---------------------------------------------------------------------------------------
# The file


def default_subscribers_path(warehouse: Path | None = None) -> Path:
    """PAPERDIGEST_SUBSCRIBERS, else `subscribers.json` beside the warehouse file."""
    explicit = os.environ.get(ENV_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    return (warehouse.parent if warehouse else Path.cwd()) / "subscribers.json"


def load_subscribers(path: Path) -> list[Recipient]:
    """All subscribers in the file (active and unsubscribed); [] when there is no file."""
    return [_recipient(record, path) for record in _read_records(Path(path))]


def add_subscriber(
    path: Path,
    address: str,
    include: Iterable[str] | None = (),
    exclude: Iterable[str] | None = (),
    cadence: str = "daily",
    library: Library | None = None,
) -> Recipient:
    """Add a subscriber, or update and re-activate one with the same address.

    A given library replaces the reader's stored one; without it, any stored library is kept.
    """
    address = normalize_address(address)
    if cadence not in CADENCES:
        raise ValueError(f"cadence must be one of {', '.join(CADENCES)}, got {cadence!r}")
    topics = Topics(include=_keywords(include), exclude=_keywords(exclude))
    path = Path(path)
    with _locked(path):
        records = _read_records(path)
        record = _find(records, address)
        if record is None:
            record = {"address": address, "added_at": _now()}
            records.append(record)
        record.update(
            address=address,
            include=list(topics.include),
            exclude=list(topics.exclude),
            cadence=cadence,
            active=True,
            unsubscribed_at=None,
        )
        if library is not None:
            _store_library(path, record, library)
        _write_records(path, records)
    return _recipient(record, path)


def set_library(path: Path, address: str, library: Library) -> Recipient:
    """Replace a subscriber's library (KeyError when the address is not subscribed)."""
    address = normalize_address(address)
    path = Path(path)
    with _locked(path):
        records = _read_records(path)
        record = _find(records, address)
        if record is None:
            raise KeyError(f"{address} is not in {path}")
        _store_library(path, record, library)
        _write_records(path, records)
    return _recipient(record, path)


def _store_library(path: Path, record: dict[str, Any], library: Library) -> None:
    """Write the library file first, then point the record at it (a crash leaves the old one)."""
    name = library_file_name(record["address"])
    write_library(libraries_dir(path) / name, library)
    record["library"] = {
        "file": name,
        "source": library.source,
        "format": library.fmt,
        "entries": len(library.entries),
        "sha256": library.sha256,
        "updated_at": _now(),
    }


def remove_subscriber(path: Path, address: str) -> Recipient:
    """Mark a subscriber unsubscribed (the record is kept); KeyError when unknown."""
    address = normalize_address(address)
    path = Path(path)
    with _locked(path):
        records = _read_records(path)
        record = _find(records, address)
        if record is None:
            raise KeyError(f"{address} is not in {path}")
        if record.get("active", True):
            record.update(active=False, unsubscribed_at=_now())
            _write_records(path, records)
    return _recipient(record, path)


def normalize_address(address: str) -> str:
    """Strip the address and lower-case its domain; ValueError when it is not one mailbox."""
    candidate = address.strip() if isinstance(address, str) else ""
    if len(candidate) > 254 or not _ADDRESS.fullmatch(candidate):
        raise ValueError(f"not a valid email address: {address!r}")
    local, domain = candidate.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _find(records: list[dict[str, Any]], address: str) -> dict[str, Any] | None:
    wanted = address.lower()
    return next((r for r in records if str(r.get("address", "")).lower() == wanted), None)


def _keywords(values: Iterable[str] | None) -> tuple[str, ...]:
    """Trimmed, non-empty, case-insensitively unique keywords, in the order given."""
    seen: set[str] = set()
    kept: list[str] = []
    for value in values or ():
        keyword = " ".join(str(value).split())
        if keyword and keyword.lower() not in seen:
            seen.add(keyword.lower())
            kept.append(keyword)
    return tuple(kept)


def _recipient(record: dict[str, Any], path: Path) -> Recipient:
    try:
        cadence = record.get("cadence", "daily")
        if cadence not in CADENCES:
            raise ValueError(f"unknown cadence {cadence!r}")
        return Recipient(
            address=normalize_address(record["address"]),
            topics=Topics(
                include=_keywords(record.get("include")), exclude=_keywords(record.get("exclude"))
            ),
            cadence=cadence,
            active=bool(record.get("active", True)),
            library=_library_path(record, path),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise SubscribersFileError(f"{path}: bad subscriber record {record!r}: {err}") from err


def _library_path(record: dict[str, Any], path: Path) -> Path | None:
    library = record.get("library")
    if not library:
        return None
    name = library["file"]
    if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
        raise ValueError(f"bad library file name {name!r}")
    return libraries_dir(path) / name


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SubscribersFileError(f"{path}: cannot read the subscribers file: {err}") from err
    records = data.get("subscribers") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SubscribersFileError(f"{path}: expected {{'subscribers': [...]}} of objects")
    return records


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    text = json.dumps({"version": FILE_VERSION, "subscribers": records}, indent=2) + "\n"
    write_atomic(path, text.encode("utf-8"), durable=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize read-modify-write cycles of concurrent `subscribers add/remove` commands."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------
# Cadence


def is_due(recipient: Recipient, day: date) -> bool:
    """Whether the recipient gets a digest on this day: daily, weekdays (Mon–Fri), weekly (Mon)."""
    if not recipient.active:
        return False
    if recipient.cadence == "weekdays":
        return day.weekday() < 5
    if recipient.cadence == "weekly":
        return day.weekday() == 0
    return True


def due_recipients(recipients: Sequence[Recipient], day: date) -> list[Recipient]:
    """The active recipients whose cadence has them receive a digest on this day."""
    return [r for r in recipients if is_due(r, day)]


def week_key(day: date) -> str:
    """The ISO week of a day as a digest key, e.g. "2026-W33"."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def weekly_window(day: date) -> tuple[date, date]:
    """The week a Monday's weekly digest covers: the previous Monday through Sunday."""
    monday = day - timedelta(days=day.weekday())
    return monday - timedelta(days=7), monday - timedelta(days=1)


def digest_key_for(recipient: Recipient, day: date) -> str:
    """The ledger key: the ISO date, or for weekly recipients the ISO week the digest covers."""
    if recipient.cadence == "weekly":
        return week_key(weekly_window(day)[0])
    return day.isoformat()


# ---------------------------------------------------------------------------------------
# Weekly merge


def merge_week(digests: Sequence[Digest]) -> Digest:
    """Merge daily digests into one: each paper once, in its best section, latest figures."""
    if not digests:
        raise ValueError("merge_week needs at least one daily digest")
    ordered = sorted(digests, key=lambda d: d.digest_date)
    sightings: dict[str, list[tuple[str, DigestPaper]]] = {}
    for digest in ordered:
        for section, papers in (
            ("trending", digest.trending),
            ("new", digest.new),
            ("late", digest.late),
        ):
            for paper in papers:
                sightings.setdefault(paper.paper_id, []).append((section, paper))
    merged: dict[str, list[DigestPaper]] = {"trending": [], "new": [], "late": []}
    for seen in sightings.values():
        section, paper = _merge_sightings(seen)
        merged[section].append(paper)
    return Digest(
        digest_date=ordered[-1].digest_date,
        data_through=max(d.data_through for d in ordered),
        new=tuple(sorted(merged["new"], key=_by_upvotes)),
        trending=tuple(sorted(merged["trending"], key=_by_gain)),
        late=tuple(sorted(merged["late"], key=_by_upvotes)),
        changes=_merge_changes(d.changes for d in ordered),
        gaps=tuple(sorted({g for d in ordered for g in d.gaps})),
    )


def _merge_sightings(seen: list[tuple[str, DigestPaper]]) -> tuple[str, DigestPaper]:
    """The best sighting (trending > new > late, then the biggest gain) with the latest figures."""
    section, best = min(
        seen, key=lambda s: (_SECTION_RANK[s[0]], -(s[1].upvote_gain or 0), s[1].digest_date)
    )
    latest = seen[-1][1]
    return section, replace(
        best,
        upvotes=latest.upvotes,
        upvote_gain=_week_gain(seen),
        comments=latest.comments,
        github_url=latest.github_url or best.github_url,
        github_stars=latest.github_stars,
    )


def _week_gain(seen: list[tuple[str, DigestPaper]]) -> int | None:
    """Upvotes gained over the week: latest count minus the count before the first sighting."""
    first, latest = seen[0][1], seen[-1][1]
    if all(p.upvote_gain is None for _, p in seen) or latest.upvotes is None:
        return None
    baseline = (first.upvotes or 0) - (first.upvote_gain or 0)
    return latest.upvotes - baseline


def _merge_changes(batches: Iterable[tuple[Change, ...]]) -> tuple[Change, ...]:
    latest: dict[tuple[str, str], Change] = {}
    for changes in batches:
        for change in changes:
            latest[(change.paper_id, change.kind)] = change  # later days win
    return tuple(latest.values())


def _by_upvotes(paper: DigestPaper) -> tuple[int, str]:
    return (-(paper.upvotes or 0), paper.paper_id)


def _by_gain(paper: DigestPaper) -> tuple[int, int, str]:
    return (-(paper.upvote_gain or 0), -(paper.upvotes or 0), paper.paper_id)
