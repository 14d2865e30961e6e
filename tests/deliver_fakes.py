"""Test helpers for render and deliver: realistic digests built by hand, an in-memory ledger.

The digests use real titles, abstracts and figures from the recorded API fixtures, read with
plain `json` (parsing proper belongs to the parse module and has its own tests).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

from flows.models import Change, Digest, DigestPaper

FIXTURES = Path(__file__).parent / "fixtures" / "hf-api"
DAY = date(2026, 8, 14)
PREVIOUS_DAY = date(2026, 8, 13)


def fixture_papers(day: date) -> list[DigestPaper]:
    """All papers of one recorded API page, as the digest would show them."""
    entries = json.loads((FIXTURES / f"daily_papers_{day.isoformat()}.json").read_text())
    return [_digest_paper(entry, day, rank) for rank, entry in enumerate(entries, start=1)]


def _digest_paper(entry: dict, day: date, rank: int) -> DigestPaper:
    paper = entry["paper"]
    authors = tuple(a["name"] for a in paper.get("authors", []) if not a.get("hidden"))
    org = entry.get("organization") or paper.get("organization") or {}
    return DigestPaper(
        paper_id=paper["id"],
        arxiv_id=paper["id"],
        title=paper["title"],
        abstract=paper["summary"],
        authors=authors,
        n_authors=len(paper.get("authors", [])),
        digest_date=day,
        rank=rank,
        upvotes=paper.get("upvotes"),
        comments=entry.get("numComments"),
        github_url=paper.get("githubRepo"),
        github_stars=paper.get("githubStars"),
        project_url=paper.get("projectPage"),
        ai_summary=paper.get("ai_summary"),
        ai_keywords=tuple(paper.get("ai_keywords") or ()),
        organization=org.get("fullname") or org.get("name"),
        published_on=date.fromisoformat(paper["publishedAt"][:10]),
        reason=f"New on {day.isoformat()}, #{rank} with {paper.get('upvotes', 0)} upvotes.",
    )


def typical_digest() -> Digest:
    """A 20-paper day: 14 new, 4 trending from the day before, 2 late arrivals, 2 changes."""
    today = fixture_papers(DAY)
    yesterday = fixture_papers(PREVIOUS_DAY)
    trending = [
        replace(p, upvotes=p.upvotes + gain, upvote_gain=gain, reason=reason)
        for p, gain, reason in zip(
            yesterday[:4],
            (41, 33, 18, 12),
            (
                "+41 upvotes since yesterday, the fastest climber this week.",
                "+33 upvotes since yesterday; 3 new comments.",
                "+18 upvotes since yesterday.",
                "+12 upvotes since yesterday; code just released.",
            ),
            strict=True,
        )
    ]
    late = [
        replace(p, reason="Added to Thu Aug 13 after that digest was sent.")
        for p in yesterday[10:12]
    ]
    changes = (
        Change(
            yesterday[3].paper_id,
            yesterday[3].title,
            "code_released",
            "github.com/yingpengma/NCP-Bench",
        ),
        Change(today[1].paper_id, today[1].title, "stars_jump", "★ 1,980 → 2,341 in a day"),
    )
    return Digest(
        digest_date=DAY,
        data_through=DAY,
        new=tuple(today[:14]),
        trending=tuple(trending),
        late=tuple(late),
        changes=changes,
        gaps=(date(2026, 8, 12),),
    )


def many_papers_digest(n: int = 300) -> Digest:
    """A huge day (n new papers, recycled fixtures with distinct ids) for the size budget."""
    pool = fixture_papers(DAY) + fixture_papers(PREVIOUS_DAY)
    papers = tuple(
        replace(
            pool[i % len(pool)],
            paper_id=f"2608.{20000 + i}",
            arxiv_id=f"2608.{20000 + i}",
            rank=i + 1,
            upvote_gain=(i % 7) or None,
        )
        for i in range(n)
    )
    return Digest(digest_date=DAY, data_through=DAY, new=papers[10:], trending=papers[:10])


class MemoryLedger:
    """The `SendLedger` protocol in memory, with hooks to fail or "crash" on purpose."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict] = {}
        self.fail_mark_sent: list[BaseException] = []  # raised (once each) by mark_sent
        self.calls: list[tuple[str, str, str]] = []

    def send_state(self, recipient: str, digest_key: str) -> tuple[str, str] | None:
        row = self.rows.get((recipient, digest_key))
        return (row["state"], row["message_id"]) if row else None

    def mark_pending(self, recipient: str, digest_key: str, message_id: str) -> None:
        self._set(recipient, digest_key, "pending", message_id)

    def mark_sent(self, recipient: str, digest_key: str, message_id: str) -> None:
        if self.fail_mark_sent:
            raise self.fail_mark_sent.pop(0)
        self._set(recipient, digest_key, "sent", message_id)

    def mark_failed(self, recipient: str, digest_key: str, message_id: str, error: str) -> None:
        self._set(recipient, digest_key, "failed", message_id, error=error)

    def state(self, recipient: str, digest_key: str) -> str | None:
        row = self.rows.get((recipient, digest_key))
        return row["state"] if row else None

    def _set(self, recipient: str, key: str, state: str, message_id: str, error: str = "") -> None:
        self.calls.append((state, recipient, key))
        row = self.rows.setdefault((recipient, key), {"attempts": 0})
        row.update(state=state, message_id=message_id, error=error)
        if state == "pending":
            row["attempts"] += 1
