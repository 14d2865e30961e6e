"""The DuckDB warehouse: the only module that opens the database file.

Pages load in one transaction each (all or nothing), idempotently (same bytes for the same
digest date load once), in bulk (an Arrow table per page, never row-by-row). The schema is
versioned: `warehouse/schema/NNN_*.sql` are applied in order at open. SQL that carries logic
lives in `warehouse/queries/*.sql` and runs with bound parameters only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from flows.models import PageFormatError, PageLoad, Paper, ParsedPage, RawPage, Reject
from flows.parse.clean import title_key

log = logging.getLogger(__name__)

WAREHOUSE_DIR = Path(__file__).resolve().parent.parent / "warehouse"
SCHEMA_DIR = WAREHOUSE_DIR / "schema"
QUERY_DIR = WAREHOUSE_DIR / "queries"
DEFAULT_DB = WAREHOUSE_DIR / "papers.duckdb"
EXCERPT_CHARS = 300
_LOCK_PID = re.compile(r"PID (\d+)")


class WarehouseError(Exception):
    """The warehouse could not do what was asked; the message says which file and why."""


class WarehouseBusy(WarehouseError):
    """Another process holds the DuckDB file (DuckDB allows one writer process)."""


def query_sql(name: str) -> str:
    """The text of `warehouse/queries/<name>.sql`."""
    return (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")


def schema_migrations() -> list[tuple[int, Path]]:
    """Every migration file as (version, path), oldest first."""
    found = []
    for path in sorted(SCHEMA_DIR.glob("[0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:3]), path))
    return found


SCHEMA_VERSION = schema_migrations()[-1][0]


def utc_now() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ArchivedPage:
    """One page of the archive, as `reparse` reads it back."""

    page_id: int
    run_id: int
    raw: RawPage


@dataclass(frozen=True, slots=True)
class WarehouseStatus:
    """Totals and health of a warehouse, for `paperdigest status`."""

    path: str
    schema_version: int
    totals: dict[str, Any]
    recent_runs: list[dict[str, Any]]
    gaps: list[date]
    reject_reasons: list[tuple[str, int]]


class Warehouse:
    """A DuckDB warehouse file, opened for writing by this process alone."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path = DEFAULT_DB, *, wait_s: float = 0.0) -> Warehouse:
        """Open (creating and migrating as needed) the warehouse at `path`.

        When another process holds the file, wait up to `wait_s` seconds, then raise
        WarehouseBusy with a one-line message.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect_waiting(path, wait_s)
        wh = cls(con, path)
        failure = None
        try:
            con.execute("SET TimeZone = 'UTC'")
            wh.migrate()
            con.execute((WAREHOUSE_DIR / "views.sql").read_text(encoding="utf-8"))
        except duckdb.Error as exc:
            failure = f"warehouse {path}: cannot open: {_one_line(exc)}"
        if failure:  # raised outside the except block: no traceback keeps the connection alive
            wh.close()
            raise WarehouseError(failure)
        return wh

    def close(self) -> None:
        """Checkpoint and close the file (quietly: closing is also the way out of a failure)."""
        # On a full or failing disk the checkpoint or close may fail; the lock is released anyway.
        with contextlib.suppress(duckdb.Error):
            self.con.execute("CHECKPOINT")
        with contextlib.suppress(duckdb.Error):
            self.con.close()
        # Drop the binding object too: a closed Warehouse can outlive its run (a Prefect state
        # holding a traceback that holds this frame), and DuckDB reports live objects at exit.
        del self.con

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, sql: str, params: dict[str, Any] | None = None) -> tuple | None:
        """The first row of a query, with the result drained (DuckDB 2 keeps an open result
        busy until fetched to the end, and `register` refuses to run beside one)."""
        rows = self.con.execute(sql, params or {}).fetchall()
        return rows[0] if rows else None

    # ---- schema --------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The version the file is at (0 for an empty file)."""
        has_table = self._row(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version'"
        )[0]
        if not has_table:
            return 0
        return self._row("SELECT coalesce(max(version), 0) FROM schema_version")[0]

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Apply every migration above the file's version up to `target`, each atomically."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        current = self.schema_version()
        for version, path in schema_migrations():
            if current < version <= target:
                with self.transaction():
                    self.con.execute(path.read_text(encoding="utf-8"))
                    self.con.execute(
                        "INSERT INTO schema_version VALUES ($v, $at)",
                        {"v": version, "at": utc_now()},
                    )
                log.info("warehouse %s migrated to schema version %d", self.path, version)
                current = version
        return current

    # ---- transactions --------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        """A context manager: BEGIN, then COMMIT on success or ROLLBACK on any exception."""
        return _Transaction(self.con)

    # ---- runs ----------------------------------------------------------------------------

    def start_run(self, flow: str, params: dict[str, Any] | None = None) -> int:
        """Record a run as started; returns its run_id (WarehouseError if it cannot write)."""
        try:
            self.abandon_stale_runs()
            run_id = self._row("SELECT nextval('run_id_seq')")[0]
            self.con.execute(
                "INSERT INTO runs (run_id, flow, started_at, status, params) "
                "VALUES ($id, $flow, $at, 'running', $params)",
                {"id": run_id, "flow": flow, "at": utc_now(), "params": _json(params or {})},
            )
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from None
        return run_id

    def finish_run(
        self, run_id: int, status: str, counts: dict[str, Any], error: str | None = None
    ) -> None:
        """Record how a run ended (WarehouseError if the file cannot be written)."""
        try:
            self.con.execute(
                "UPDATE runs SET finished_at = $at, status = $status, counts = $counts, "
                "error = $error WHERE run_id = $id",
                {
                    "at": utc_now(),
                    "status": status,
                    "counts": _json(counts),
                    "error": error,
                    "id": run_id,
                },
            )
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from None

    def abandon_stale_runs(self) -> int:
        """Mark runs still 'running' as abandoned: we hold the only write lock, so they died."""
        rows = self.con.execute(
            "UPDATE runs SET status = 'abandoned', finished_at = $at "
            "WHERE status = 'running' RETURNING run_id",
            {"at": utc_now()},
        ).fetchall()
        return len(rows)

    # ---- loading pages -------------------------------------------------------------------

    def find_loaded_page(self, raw: RawPage) -> PageLoad | None:
        """The earlier load of these exact bytes for this digest date, if any."""
        return self._loaded_page(raw, content_sha256(raw.body))

    def _loaded_page(self, raw: RawPage, sha: str) -> PageLoad | None:
        row = self._row(query_sql("find_loaded_page"), {"sha": sha, "digest_date": raw.digest_date})
        if row is None:
            return None
        return PageLoad(row[0], raw.location, True, n_entries=row[1], n_rejected=row[2])

    def save_page(self, raw: RawPage, parsed: ParsedPage, run_id: int) -> PageLoad:
        """Archive one page and load its papers, sightings and rejects in one transaction.

        Loading the same bytes for the same digest date again changes nothing.
        """
        raw = _with_digest_date(raw, parsed)
        sha = content_sha256(raw.body)
        earlier = self._loaded_page(raw, sha)
        if earlier is not None:
            return earlier
        try:
            with self.transaction():
                return self._insert_page(raw, parsed, run_id, sha=sha)
        except duckdb.Error as exc:
            raise WarehouseError(
                f"{raw.location}: not loaded, warehouse {self.path} unchanged: {_one_line(exc)}"
            ) from exc

    def _insert_page(
        self,
        raw: RawPage,
        parsed: ParsedPage,
        run_id: int,
        page_id: int | None = None,
        sha: str | None = None,
    ) -> PageLoad:
        """Load a page's rows; a new page (no `page_id`) also gets its row and archive."""
        seen_at = raw.fetched_at or utc_now()
        papers = _dedupe(parsed.papers)
        if page_id is None:
            sha = sha or content_sha256(raw.body)
            page_id = self._insert_page_row(run_id, raw, parsed, seen_at, sha, len(papers))
        title_keys = {p.title: title_key(p.title) for p in papers}
        papers = self._resolve_ids(papers, title_keys)
        known = self._known_ids(papers)
        batch = papers_table(papers, parsed.digest_date, title_keys)
        self.con.register("batch", batch)
        try:
            params = {"run_id": run_id, "seen_at": seen_at}
            self._upsert_papers(papers, known, params)
            self.con.execute(query_sql("insert_sightings"), params | {"page_id": page_id})
        finally:
            self.con.unregister("batch")
        self._insert_rejects(page_id, raw.location, parsed, run_id, seen_at)
        return PageLoad(
            page_id,
            raw.location,
            False,
            n_entries=len(papers),
            n_rejected=len(parsed.rejects),
            n_new_papers=len(papers) - len(known),
        )

    def _upsert_papers(self, papers: list[Paper], known: set[str], params: dict[str, Any]) -> None:
        """Refresh the known papers of the registered `batch`, then insert the new ones.

        Not one INSERT … ON CONFLICT DO UPDATE: DuckDB runs that as a MERGE which scans the
        whole `papers` table and rewrites every conflicting row, changed or not, so a page cost
        more the longer the history (and ~0.4 s for a month page of known papers).
        """
        if known:
            self.con.execute(query_sql("touch_papers"), {"seen_at": params["seen_at"]})
            self.con.execute(query_sql("refresh_papers"))
        new_ids = [p.paper_id for p in papers if p.paper_id not in known]
        if new_ids:
            self.con.execute(query_sql("insert_papers"), params | {"ids": new_ids})

    def _insert_page_row(
        self,
        run_id: int,
        raw: RawPage,
        parsed: ParsedPage,
        seen_at: datetime,
        sha: str,
        n_entries: int,
    ) -> int:
        """Insert the page's row (taking the next page id) and its archived bytes."""
        page_id = self._row(
            "INSERT INTO pages VALUES (nextval('page_id_seq'), $run_id, $source, $fmt, $location, "
            "$digest_date, $fetched_at, $sha, $status, $ctype, $etag, $lm, $n_entries, "
            "$n_rejected) RETURNING page_id",
            {
                "run_id": run_id,
                "source": raw.source,
                "fmt": parsed.fmt,
                "location": raw.location,
                "digest_date": raw.digest_date,
                "fetched_at": seen_at,
                "sha": sha,
                "status": raw.http_status,
                "ctype": raw.content_type,
                "etag": raw.etag,
                "lm": raw.last_modified,
                "n_entries": n_entries,
                "n_rejected": len(parsed.rejects),
            },
        )[0]
        self.con.execute(
            "INSERT INTO page_archive VALUES ($id, 'zlib', $size, $raw)",
            {"id": page_id, "size": len(raw.body), "raw": zlib.compress(raw.body, 6)},
        )
        return page_id

    def _insert_rejects(
        self, page_id: int, location: str, parsed: ParsedPage, run_id: int, seen_at: datetime
    ) -> None:
        if not parsed.rejects:
            return
        table = pa.table(
            {
                "position": [r.position for r in parsed.rejects],
                "reason": [r.reason for r in parsed.rejects],
                "excerpt": [r.excerpt[:EXCERPT_CHARS] for r in parsed.rejects],
            }
        )
        self.con.register("rejected", table)
        try:
            self.con.execute(
                "INSERT INTO rejects SELECT $page_id, $location, position, reason, excerpt, "
                "$run_id, $seen_at FROM rejected",
                {"page_id": page_id, "location": location, "run_id": run_id, "seen_at": seen_at},
            )
        finally:
            self.con.unregister("rejected")

    def save_refused_page(self, raw: RawPage, reason: str, run_id: int | None) -> None:
        """Quarantine a whole input that could not be parsed: one `rejects` row, nothing else."""
        excerpt = raw.body[:EXCERPT_CHARS].decode("utf-8", "replace")
        try:
            self.con.execute(
                "INSERT INTO rejects VALUES (NULL, $location, 0, $reason, $excerpt, $run_id, $at)",
                {
                    "location": raw.location,
                    "reason": reason,
                    "excerpt": excerpt,
                    "run_id": run_id,
                    "at": utc_now(),
                },
            )
        except duckdb.Error as exc:
            raise WarehouseError(
                f"{raw.location}: not quarantined, warehouse {self.path}: {_one_line(exc)}"
            ) from None

    def _resolve_ids(self, papers: list[Paper], title_keys: dict[str, str]) -> list[Paper]:
        """Map title-only ids onto known arXiv ids, and merge title-only papers into new ids.

        `title_keys` maps each paper's title to its `title_key`.
        """
        if not papers:
            return papers

        known = self._papers_by_title_key({title_keys[p.title] for p in papers})
        resolved = []
        for paper in papers:
            key = title_keys[paper.title]
            if paper.paper_id.startswith("t:"):
                target = _pick_arxiv_id(known.get(key, ()))
                if target:
                    paper = _replace_id(paper, target)
            else:
                for alias in known.get(key, ()):
                    if alias.startswith("t:"):
                        self._merge_title_paper(alias, paper.paper_id)
            resolved.append(paper)
        return _dedupe(resolved)

    def _papers_by_title_key(self, keys: set[str]) -> dict[str, list[str]]:
        rows = self.con.execute(
            "SELECT title_key, paper_id FROM papers WHERE title_key IN (SELECT unnest($keys))",
            {"keys": sorted(keys)},
        ).fetchall()
        found: dict[str, list[str]] = {}
        for key, paper_id in rows:
            found.setdefault(key, []).append(paper_id)
        return found

    def _merge_title_paper(self, alias: str, paper_id: str) -> None:
        """Move a title-only paper's history to its arXiv id; keep the old id as an alias."""
        params = {"id": paper_id, "alias": alias}
        exists = self._row("SELECT count(*) FROM papers WHERE paper_id = $id", {"id": paper_id})[0]
        if not exists:
            # DuckDB cannot update a primary key in place: copy the row under the new key, so
            # first_seen_* survive the merge (the upsert that follows refreshes the rest).
            self.con.execute(
                "INSERT INTO papers SELECT * REPLACE ($id AS paper_id, $id AS arxiv_id) "
                "FROM papers WHERE paper_id = $alias",
                params,
            )
        self.con.execute("DELETE FROM papers WHERE paper_id = $alias", {"alias": alias})
        self.con.execute(query_sql("merge_title_papers"), params)
        self.con.execute(
            "INSERT INTO paper_aliases VALUES ($alias, $id) "
            "ON CONFLICT DO UPDATE SET paper_id = $id",
            params,
        )

    def _known_ids(self, papers: list[Paper]) -> set[str]:
        """The ids among `papers` the warehouse already has."""
        if not papers:
            return set()
        rows = self.con.execute(
            "SELECT paper_id FROM papers WHERE paper_id IN (SELECT unnest($ids))",
            {"ids": [p.paper_id for p in papers]},
        ).fetchall()
        return {row[0] for row in rows}

    # ---- archive and rebuild -------------------------------------------------------------

    def iter_archive(self) -> Iterator[ArchivedPage]:
        """Every archived page, oldest first, with its original bytes."""
        ids = [
            r[0] for r in self.con.execute("SELECT page_id FROM pages ORDER BY page_id").fetchall()
        ]
        for page_id in ids:
            row = self._row(
                "SELECT p.run_id, p.source, p.location, p.digest_date, p.fetched_at, p.http_status,"
                " p.content_type, p.etag, p.last_modified, a.raw "
                "FROM pages p JOIN page_archive a USING (page_id) WHERE page_id = $id",
                {"id": page_id},
            )
            raw = RawPage(
                source=row[1],
                location=row[2],
                body=zlib.decompress(row[9]),
                digest_date=row[3],
                fetched_at=row[4],
                http_status=row[5],
                content_type=row[6],
                etag=row[7],
                last_modified=row[8],
            )
            yield ArchivedPage(page_id, row[0], raw)

    def rebuild_derived(self, parse: Callable[[RawPage], ParsedPage]) -> tuple[int, int]:
        """Rebuild papers, sightings and rejects from the page archive, in one transaction.

        `parse` raises PageFormatError for bytes it refuses; such a page keeps its row and
        archive and gains a page-level reject, so nothing is lost. Returns (pages, entries).
        """
        archived = list(self.iter_archive())
        entries = 0
        with self.transaction():
            for table in ("sightings", "rejects", "paper_aliases", "papers"):
                self.con.execute(f"DELETE FROM {table}")
            for page in archived:
                try:
                    parsed = parse(page.raw)
                except PageFormatError as exc:
                    reject = Reject(
                        0, exc.reason, page.raw.body[:EXCERPT_CHARS].decode("utf-8", "replace")
                    )
                    parsed = ParsedPage(
                        fmt="unknown", digest_date=page.raw.digest_date, rejects=(reject,)
                    )
                load = self._insert_page(page.raw, parsed, page.run_id, page_id=page.page_id)
                self.con.execute(
                    "UPDATE pages SET fmt = $fmt, n_entries = $n, n_rejected = $r "
                    "WHERE page_id = $id",
                    {
                        "fmt": parsed.fmt,
                        "n": load.n_entries,
                        "r": load.n_rejected,
                        "id": page.page_id,
                    },
                )
                entries += load.n_entries
        return len(archived), entries

    # ---- reading -------------------------------------------------------------------------

    def validator_lookup(self) -> Callable[[str], tuple[str | None, str | None]]:
        """(ETag, Last-Modified) of a URL's newest fetch, callable from fetch threads while
        this thread loads pages.

        It reads through its own cursor (a DuckDB connection is not thread-safe), one call at
        a time.
        """
        cursor = self.con.cursor()
        lock = threading.Lock()
        sql = query_sql("latest_validators")

        def lookup(url: str) -> tuple[str | None, str | None]:
            with lock:
                rows = cursor.execute(sql, {"location": url}).fetchall()
            return (rows[0][0], rows[0][1]) if rows else (None, None)

        return lookup

    def dates_with_pages(self, start: date, end: date, min_entries: int = 0) -> set[date]:
        """Digest dates in [start, end] with a loaded page of at least `min_entries` entries."""
        rows = self.con.execute(
            query_sql("dates_with_pages"), {"start": start, "end": end, "min_entries": min_entries}
        ).fetchall()
        return {r[0] for r in rows}

    def gaps(self, start: date, end: date, min_entries: int = 0) -> list[date]:
        """Dates in [start, end] with no successful page (or none of `min_entries` entries)."""
        have = self.dates_with_pages(start, end, min_entries)
        days = (end - start).days + 1
        return [start + timedelta(d) for d in range(days) if start + timedelta(d) not in have]

    def mark_day_complete(
        self, day: date, source: str, run_id: int, n_pages: int, n_entries: int
    ) -> None:
        """Record that every page of a fetched day is loaded (backfill resumes from this)."""
        self.con.execute(
            "INSERT INTO day_loads VALUES ($d, $source, $run, $at, $pages, $entries)",
            {
                "d": day,
                "source": source,
                "run": run_id,
                "at": utc_now(),
                "pages": n_pages,
                "entries": n_entries,
            },
        )

    def complete_days(self, start: date, end: date, source: str) -> set[date]:
        """Days in [start, end] whose every page from `source` is loaded."""
        rows = self.con.execute(
            query_sql("complete_days"), {"start": start, "end": end, "source": source}
        ).fetchall()
        return {r[0] for r in rows}

    def papers_on_pages(self, page_ids: list[int]) -> int:
        """How many distinct papers these pages showed."""
        return self._row(
            "SELECT count(DISTINCT paper_id) FROM sightings WHERE page_id IN (SELECT unnest($ids))",
            {"ids": page_ids},
        )[0]

    def last_delivery(self) -> datetime | None:
        """When the newest digest went out (None if none ever did)."""
        return self._row("SELECT max(delivered_at) FROM digests")[0]

    def fetch_dicts(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query with bound parameters; rows as dicts."""
        cur = self.con.execute(sql, params or {})
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def run_query(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run `warehouse/queries/<name>.sql` with bound parameters; rows as dicts."""
        return self.fetch_dicts(query_sql(name), params)

    def integrity_problems(self) -> list[tuple[str, int]]:
        """Every integrity check that fails, with its count (empty when all is well)."""
        rows = self.con.execute(query_sql("integrity")).fetchall()
        return [(problem, n) for problem, n in rows if n]

    def status(self, recent: int = 10, gap_days: int = 30) -> WarehouseStatus:
        """Totals, recent runs, gaps in the last `gap_days` of data, and reject reasons."""
        totals = self.fetch_dicts(query_sql("status_totals"))[0]
        gaps: list[date] = []
        if totals["last_date"] is not None:
            start = max(totals["first_date"], totals["last_date"] - timedelta(gap_days - 1))
            gaps = self.gaps(start, totals["last_date"])
        return WarehouseStatus(
            path=str(self.path),
            schema_version=self.schema_version(),
            totals=totals,
            recent_runs=self.run_query("status_recent_runs", {"limit": recent}),
            gaps=gaps,
            reject_reasons=[
                (r["reason"], r["n"])
                for r in self.run_query("status_reject_reasons", {"limit": 10})
            ],
        )

    def record_digest(
        self,
        digest_key: str,
        digest_date: date,
        run_id: int,
        items: list[tuple[str, str, int | None]],
        n_recipients: int,
        delivered_at: datetime | None = None,
    ) -> None:
        """Remember that a digest went out and which (paper_id, section, upvotes) it carried."""
        now = delivered_at or utc_now()
        batch = pa.table(
            {
                "paper_id": pa.array([i[0] for i in items], pa.string()),
                "section": pa.array([i[1] for i in items], pa.string()),
                "upvotes": pa.array([i[2] for i in items], pa.int32()),
            }
        )
        with self.transaction():
            self.con.execute(
                "INSERT INTO digests VALUES ($k, $d, $run, $at, $n, $r) "
                "ON CONFLICT DO UPDATE SET n_recipients = excluded.n_recipients",
                {
                    "k": digest_key,
                    "d": digest_date,
                    "run": run_id,
                    "at": now,
                    "n": len(items),
                    "r": n_recipients,
                },
            )
            self.con.register("mailed_batch", batch)
            try:
                self.con.execute(
                    query_sql("record_digest"), {"digest_key": digest_key, "delivered_at": now}
                )
            finally:
                self.con.unregister("mailed_batch")

    def digest_recorded(self, digest_key: str) -> bool:
        """True when a digest with this key was recorded as delivered."""
        return (
            self._row("SELECT count(*) FROM digests WHERE digest_key = $k", {"k": digest_key})[0]
            > 0
        )

    def count_sent(self, digest_key: str) -> int:
        """How many recipients the ledger has as sent for a digest."""
        return self._row(
            "SELECT count(*) FROM sends WHERE digest_key = $k AND state = 'sent'", {"k": digest_key}
        )[0]

    # ---- the email ledger (flows.deliver.SendLedger) -------------------------------------

    def send_state(self, recipient: str, digest_key: str) -> tuple[str, str] | None:
        """(state, message_id) of a digest for a recipient, or None if never attempted."""
        row = self._row(
            "SELECT state, message_id FROM sends WHERE recipient = $r AND digest_key = $k",
            {"r": recipient, "k": digest_key},
        )
        return (row[0], row[1]) if row else None

    def mark_pending(self, recipient: str, digest_key: str, message_id: str) -> None:
        """Record that a send is about to be attempted (before talking to the server)."""
        now = utc_now()
        self.con.execute(
            "INSERT INTO sends VALUES ($r, $k, $m, 'pending', 1, NULL, $now, $now, NULL) "
            "ON CONFLICT (recipient, digest_key) DO UPDATE SET state = 'pending', message_id = $m,"
            " attempts = sends.attempts + 1, updated_at = $now",
            {"r": recipient, "k": digest_key, "m": message_id, "now": now},
        )

    def mark_sent(self, recipient: str, digest_key: str, message_id: str) -> None:
        """Record that the server accepted the message."""
        now = utc_now()
        self.con.execute(
            "UPDATE sends SET state = 'sent', message_id = $m, error = NULL, updated_at = $now, "
            "sent_at = $now WHERE recipient = $r AND digest_key = $k",
            {"r": recipient, "k": digest_key, "m": message_id, "now": now},
        )

    def mark_failed(self, recipient: str, digest_key: str, message_id: str, error: str) -> None:
        """Record that a send failed (it will be retried with the same Message-ID)."""
        self.con.execute(
            "UPDATE sends SET state = 'failed', message_id = $m, error = $e, updated_at = $now "
            "WHERE recipient = $r AND digest_key = $k",
            {"r": recipient, "k": digest_key, "m": message_id, "e": error[:500], "now": utc_now()},
        )


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            self.con.execute("ROLLBACK")


# ---- helpers of this module ------------------------------------------------------------------


def content_sha256(body: bytes) -> str:
    """Hex SHA-256 of a page's bytes: its identity for idempotent loads."""
    return hashlib.sha256(body).hexdigest()


def papers_table(
    papers: list[Paper], page_date: date | None, title_keys: dict[str, str] | None = None
) -> pa.Table:
    """An Arrow table of cleaned papers, the shape `insert_papers.sql` & co. read as `batch`.

    `title_keys` (title → `title_key`) saves computing the keys again when they are known.
    """
    keys = title_keys or {}

    def col(name: str) -> list[Any]:
        return [getattr(p, name) for p in papers]

    return pa.table(
        {
            "paper_id": pa.array(col("paper_id"), pa.string()),
            "title_key": pa.array(
                [keys.get(p.title) or title_key(p.title) for p in papers], pa.string()
            ),
            "arxiv_id": pa.array(col("arxiv_id"), pa.string()),
            "title": pa.array(col("title"), pa.string()),
            "abstract": pa.array(col("abstract"), pa.string()),
            "authors": pa.array([list(p.authors) for p in papers], pa.list_(pa.string())),
            "n_authors": pa.array(
                [
                    p.n_authors if p.n_authors is not None else (len(p.authors) or None)
                    for p in papers
                ],
                pa.int32(),
            ),
            "published_on": pa.array(col("published_on"), pa.date32()),
            "github_url": pa.array(col("github_url"), pa.string()),
            "project_url": pa.array(col("project_url"), pa.string()),
            "ai_summary": pa.array(col("ai_summary"), pa.string()),
            "ai_keywords": pa.array([list(p.ai_keywords) for p in papers], pa.list_(pa.string())),
            "organization": pa.array(col("organization"), pa.string()),
            "digest_date": pa.array([p.digest_date or page_date for p in papers], pa.date32()),
            "rank": pa.array(col("rank"), pa.int32()),
            "upvotes": pa.array(col("upvotes"), pa.int32()),
            "comments": pa.array(col("comments"), pa.int32()),
            "github_stars": pa.array(col("github_stars"), pa.int32()),
        }
    )


def _connect_waiting(path: Path, wait_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_s
    delay = 0.1
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise WarehouseError(f"warehouse {path}: cannot open: {_one_line(exc)}") from exc
            if time.monotonic() >= deadline:
                raise WarehouseBusy(_busy_message(path, exc, wait_s)) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {path}: cannot open: {_one_line(exc)}") from exc


def _busy_message(path: Path, exc: Exception, waited: float) -> str:
    pid = _LOCK_PID.search(str(exc))
    holder = f" (pid {pid.group(1)})" if pid else ""
    tail = f" after waiting {waited:g}s" if waited else ""
    return (
        f"warehouse {path} is in use by another paperdigest process{holder}{tail}; "
        "try again later or raise --wait"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _dedupe(papers: tuple[Paper, ...] | list[Paper]) -> list[Paper]:
    """Keep the first entry per paper_id: DuckDB's upsert drops duplicate keys in one batch."""
    seen: set[str] = set()
    kept = []
    for paper in papers:
        if paper.paper_id not in seen:
            seen.add(paper.paper_id)
            kept.append(paper)
    return kept


def _pick_arxiv_id(candidates: list[str] | tuple[str, ...]) -> str | None:
    arxiv = sorted(c for c in candidates if not c.startswith("t:"))
    return arxiv[0] if arxiv else None


def _replace_id(paper: Paper, paper_id: str) -> Paper:
    return replace(paper, paper_id=paper_id, arxiv_id=paper_id)


def _with_digest_date(raw: RawPage, parsed: ParsedPage) -> RawPage:
    """A page's digest date is what it says itself (a text page's header), else what was asked."""
    if parsed.digest_date is None or parsed.digest_date == raw.digest_date:
        return raw
    return replace(raw, digest_date=parsed.digest_date)
