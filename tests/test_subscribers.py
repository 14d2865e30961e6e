"""Tests of flows.subscribers: the JSON file, address validation, cadence, weekly merging."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from deliver_fakes import DAY, PREVIOUS_DAY, fixture_papers

from flows.models import Change, Digest, Recipient, Topics
from flows.subscribers import (
    SubscribersFileError,
    add_subscriber,
    default_subscribers_path,
    digest_key_for,
    due_recipients,
    is_due,
    load_subscribers,
    merge_week,
    normalize_address,
    remove_subscriber,
    week_key,
    weekly_window,
)

MONDAY = date(2026, 8, 17)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "subscribers.json"


# ---- the file ----------------------------------------------------------------------------


def test_missing_file_means_no_subscribers(path: Path) -> None:
    assert load_subscribers(path) == []


def test_add_then_load_round_trips(path: Path) -> None:
    added = add_subscriber(
        path, "Ada@Example.ORG", include=["diffusion", " world  model "], cadence="weekly"
    )
    assert added == Recipient(
        "Ada@example.org", Topics(include=("diffusion", "world model")), cadence="weekly"
    )
    assert load_subscribers(path) == [added]
    record = json.loads(path.read_text())["subscribers"][0]
    assert record["added_at"] and record["unsubscribed_at"] is None


def test_adding_again_updates_instead_of_duplicating(path: Path) -> None:
    add_subscriber(path, "ada@example.org", include=["diffusion"])
    add_subscriber(path, "ADA@example.org", exclude=["survey"], cadence="weekdays")
    [only] = load_subscribers(path)
    assert only.topics == Topics(exclude=("survey",)) and only.cadence == "weekdays"


def test_cli_style_none_topics_are_accepted(path: Path) -> None:
    recipient = add_subscriber(path, "ada@example.org", include=None, exclude=None)
    assert recipient.topics == Topics()


def test_keywords_are_trimmed_and_deduplicated(path: Path) -> None:
    recipient = add_subscriber(path, "ada@example.org", include=["RL", "rl", "", "  ", "LLM"])
    assert recipient.topics.include == ("RL", "LLM")


def test_remove_marks_unsubscribed_and_keeps_the_record(path: Path) -> None:
    add_subscriber(path, "ada@example.org")
    add_subscriber(path, "bob@example.org")
    removed = remove_subscriber(path, "ADA@example.org")
    assert removed.active is False
    loaded = {r.address: r.active for r in load_subscribers(path)}
    assert loaded == {"ada@example.org": False, "bob@example.org": True}
    record = json.loads(path.read_text())["subscribers"][0]
    assert record["unsubscribed_at"]
    assert add_subscriber(path, "ada@example.org").active  # re-subscribing works


def test_removing_an_unknown_address_raises(path: Path) -> None:
    with pytest.raises(KeyError):
        remove_subscriber(path, "ghost@example.org")


@pytest.mark.parametrize(
    "address",
    [
        "not-an-address",
        "ada@localhost",
        "ada @example.org",
        "ada@example.org\r\nBcc: x@y.org",
        "Ada <ada@example.org>",
        "ada@example.org, bob@example.org",
        "a" * 65 + "@example.org",
        "",
    ],
)
def test_invalid_addresses_are_refused(path: Path, address: str) -> None:
    with pytest.raises(ValueError):
        add_subscriber(path, address)
    assert not path.exists()


def test_unknown_cadence_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="cadence"):
        add_subscriber(path, "ada@example.org", cadence="hourly")


def test_normalize_address_lowercases_only_the_domain() -> None:
    assert normalize_address("  Ada.Lovelace+papers@Example.ORG ") == (
        "Ada.Lovelace+papers@example.org"
    )


@pytest.mark.parametrize(
    "content",
    ["{not json", '["a list"]', '{"subscribers": [1, 2]}', '{"subscribers": [{"cadence": "x"}]}'],
)
def test_a_broken_file_is_reported_with_its_path(path: Path, content: str) -> None:
    path.write_text(content)
    with pytest.raises(SubscribersFileError, match=str(path.name)):
        load_subscribers(path)


def test_writes_are_atomic_and_leave_no_temporary_files(path: Path, monkeypatch) -> None:
    add_subscriber(path, "ada@example.org")
    before = path.read_text()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        add_subscriber(path, "bob@example.org")
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "subscribers.json",
        "subscribers.json.lock",
    ]


def test_concurrent_adds_lose_nobody(path: Path) -> None:
    addresses = [f"reader{i}@example.org" for i in range(20)]
    threads = [threading.Thread(target=add_subscriber, args=(path, a)) for a in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.address for r in load_subscribers(path)) == sorted(addresses)


def test_default_path_is_beside_the_warehouse_unless_the_env_says(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PAPERDIGEST_SUBSCRIBERS", raising=False)
    warehouse = tmp_path / "warehouse" / "papers.duckdb"
    assert default_subscribers_path(warehouse) == tmp_path / "warehouse" / "subscribers.json"
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "elsewhere.json"))
    assert default_subscribers_path(warehouse) == tmp_path / "elsewhere.json"


# ---- cadence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cadence", "due_days"),
    [
        ("daily", {0, 1, 2, 3, 4, 5, 6}),
        ("weekdays", {0, 1, 2, 3, 4}),
        ("weekly", {0}),
    ],
)
def test_is_due_follows_the_cadence(cadence: str, due_days: set[int]) -> None:
    recipient = Recipient("ada@example.org", cadence=cadence)
    week = [MONDAY + timedelta(days=n) for n in range(7)]
    assert {d.weekday() for d in week if is_due(recipient, d)} == due_days


def test_unsubscribed_recipients_are_never_due() -> None:
    gone = Recipient("ada@example.org", active=False)
    assert not any(is_due(gone, MONDAY + timedelta(days=n)) for n in range(7))
    assert due_recipients([gone, Recipient("bob@example.org")], MONDAY) == [
        Recipient("bob@example.org")
    ]


def test_weekly_keys_name_the_week_covered() -> None:
    assert weekly_window(MONDAY) == (date(2026, 8, 10), date(2026, 8, 16))
    assert week_key(date(2026, 8, 10)) == "2026-W33"
    assert digest_key_for(Recipient("a@example.org", cadence="weekly"), MONDAY) == "2026-W33"
    assert digest_key_for(Recipient("a@example.org"), MONDAY) == "2026-08-17"
    assert week_key(date(2027, 1, 1)) == "2026-W53"  # ISO years differ from calendar years


# ---- weekly merge ------------------------------------------------------------------------


def test_merge_week_shows_each_paper_once_in_its_best_section() -> None:
    thursday, friday = fixture_papers(PREVIOUS_DAY), fixture_papers(DAY)
    climber = replace(
        thursday[0], upvotes=139, upvote_gain=41, reason="+41 upvotes since yesterday."
    )
    days = [
        Digest(PREVIOUS_DAY, PREVIOUS_DAY, new=tuple(thursday[:5])),
        Digest(
            DAY,
            DAY,
            new=tuple(friday[:5]),
            trending=(climber,),
            gaps=(date(2026, 8, 12),),
        ),
    ]
    week = merge_week(days)
    ids = [p.paper_id for p in week.new + week.trending + week.late]
    assert len(ids) == len(set(ids)) == 10
    assert [p.paper_id for p in week.trending] == [thursday[0].paper_id]
    [merged] = week.trending
    assert merged.reason == "+41 upvotes since yesterday."  # the best reason is kept
    assert merged.upvotes == 139 and merged.upvote_gain == 41  # since first seen (98)
    assert week.digest_date == DAY and week.data_through == DAY
    assert week.gaps == (date(2026, 8, 12),)
    assert [p.upvotes for p in week.new] == sorted((p.upvotes for p in week.new), reverse=True)


def test_merge_week_prefers_the_biggest_climb_and_latest_figures() -> None:
    paper = fixture_papers(DAY)[1]
    monday = replace(paper, upvotes=60, upvote_gain=10, github_stars=2000, reason="+10 Mon")
    tuesday = replace(paper, upvotes=90, upvote_gain=30, github_stars=2100, reason="+30 Tue")
    wednesday = replace(paper, upvotes=95, upvote_gain=5, github_stars=2341, reason="+5 Wed")
    days = [
        Digest(date(2026, 8, 10), date(2026, 8, 10), trending=(monday,)),
        Digest(date(2026, 8, 11), date(2026, 8, 11), trending=(tuesday,)),
        Digest(date(2026, 8, 12), date(2026, 8, 12), trending=(wednesday,)),
    ]
    [merged] = merge_week(days).trending
    assert merged.reason == "+30 Tue"
    assert (merged.upvotes, merged.upvote_gain, merged.github_stars) == (95, 45, 2341)


def test_merge_week_keeps_late_papers_and_the_latest_change_per_kind() -> None:
    papers = fixture_papers(DAY)
    early = Change(papers[0].paper_id, papers[0].title, "stars_jump", "★ 10 → 20")
    later = replace(early, detail="★ 20 → 80")
    days = [
        Digest(date(2026, 8, 10), date(2026, 8, 10), late=(papers[2],), changes=(early,)),
        Digest(date(2026, 8, 11), date(2026, 8, 11), new=(papers[3],), changes=(later,)),
    ]
    week = merge_week(days)
    assert [p.paper_id for p in week.late] == [papers[2].paper_id]
    assert week.changes == (later,)


def test_merge_week_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        merge_week([])


def test_merge_week_is_order_independent() -> None:
    papers = fixture_papers(DAY)
    a = Digest(date(2026, 8, 10), date(2026, 8, 10), new=tuple(papers[:3]))
    b = Digest(date(2026, 8, 11), date(2026, 8, 11), new=tuple(papers[2:6]))
    assert merge_week([a, b]) == merge_week([b, a])
