"""The DuckDB warehouse: the only module that opens the database file.

A batch of pages loads in one transaction (all or nothing), idempotently (same bytes for the
same digest date load once), in bulk (a few INSERTs of whole columns per batch, never
row-by-row), with the rows loading the pages one at a time would leave (`flows.pagebatch`
plans the batch).
The schema is versioned: `warehouse/schema/NNN_*.sql` are applied in order at open. SQL that
carries logic lives in `warehouse/queries/*.sql` and runs with bound parameters only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from flows.capture import settle_capture
from flows.models import CorpusPaper, PageFormatError, PageLoad, ParsedPage, RawPage, Reject
from flows.pagebatch import (
    EXCERPT_CHARS,
    PageBytes,
    PaperIndex,
    PendingPage,
    archive_rows,
    dedupe,
    fields_hash,
    fold_papers,
    page_bytes,
    page_key,
    pages_rows,
    rejects_rows,
    reparsed_rows,
    settled_date,
    sightings_rows,
    title_keys,
)
from flows.rows import Rows

log = logging.getLogger(__name__)

WAREHOUSE_DIR = Path(__file__).resolve().parent.parent / "warehouse"
SCHEMA_DIR = WAREHOUSE_DIR / "schema"
QUERY_DIR = WAREHOUSE_DIR / "queries"
DEFAULT_DB = WAREHOUSE_DIR / "papers.duckdb"
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

# A new page-archive segment starts once the newest holds this many stored bytes (see
# schema/005): a checkpoint then rewrites at most one segment and the batch that filled it.
ARCHIVE_SEGMENT_BYTES = 8 * 2**20


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
    recent_pages: list[dict[str, Any]] = field(default_factory=list)  # with capture times


class Warehouse:
    """A DuckDB warehouse file, opened for writing by this process alone."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path
        self._in_transaction = False
        self._archive: tuple[int, int] | None = None  # newest segment, its bytes (once read)

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
        except WarehouseError as exc:  # a migration that could not commit
            failure = str(exc)
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

    @contextlib.contextmanager
    def memory_capped(self, limit_mb: int) -> Iterator[None]:
        """Cap DuckDB's memory at `limit_mb` MiB for the statements inside, then go back to
        DuckDB's default (the warehouse sets no other limit).

        By default DuckDB keeps every block it wrote cached, up to 80% of the machine's memory:
        a three-year backfill grew by ~100 MB of blocks it never read again. Capped, it writes
        them out instead (measured: no slower). Queries that need room run outside the cap.
        """
        self.con.execute(f"SET memory_limit = '{int(limit_mb)}MiB'")
        try:
            yield
        finally:
            with contextlib.suppress(duckdb.Error):  # a failed connection has no limit to keep
                self.con.execute("RESET memory_limit")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN, then COMMIT on success or ROLLBACK on any exception.

        Nested uses join the outermost transaction: a backfill commits a batch of pages and
        the days they complete together.
        """
        if self._in_transaction:
            yield
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self._archive = None  # a segment created or filled in it is gone too
            with contextlib.suppress(duckdb.Error):  # the error that got us here says more
                self.con.execute("ROLLBACK")
            raise
        self._in_transaction = False
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            self._archive = None
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise WarehouseError(
                f"warehouse {self.path}: not committed, nothing written: {_one_line(exc)}"
            ) from None

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

    def _loaded_pages(self, shas: list[str]) -> dict[tuple[str, date | None], PageLoad]:
        """Earlier loads of these bytes, keyed (sha, digest date); the first load of each."""
        found: dict[tuple[str, date | None], PageLoad] = {}
        rows = self.con.execute(query_sql("find_loaded_pages"), {"shas": shas}).fetchall()
        for sha, day, page_id, location, n_entries, n_rejected in rows:
            found.setdefault((sha, day), PageLoad(page_id, location, True, n_entries, n_rejected))
        return found

    def save_page(self, raw: RawPage, parsed: ParsedPage, run_id: int) -> PageLoad:
        """Archive one page and load its papers, sightings and rejects in one transaction.

        Loading the same bytes for the same digest date again changes nothing.
        """
        return self.save_pages([(raw, parsed)], run_id)[0]

    def save_pages(
        self,
        pages: Sequence[tuple[RawPage, ParsedPage]],
        run_id: int,
        stored: Sequence[PageBytes | None] | None = None,
    ) -> list[PageLoad]:
        """Archive and load pages in one transaction, with the rows loading them one after
        another would leave; one PageLoad per page, in order.

        A page whose bytes were loaded before for the same digest date (or earlier in this
        batch) changes nothing and comes back as skipped. The writes are bulk: a few column-wise
        INSERTs and UPDATEs per batch, whatever its size. `stored` gives each page's hash and
        archive form where they were computed already (`page_bytes`, on another thread).
        """
        if not pages:
            return []
        given = stored or [None] * len(pages)
        hashed = [s or page_bytes(raw.body) for s, (raw, _) in zip(given, pages, strict=True)]
        try:
            with self.transaction():
                planned = self._plan_pages(pages, hashed, run_id)
                self._load_pending([p for p in planned if isinstance(p, PendingPage)], True)
        except duckdb.Error as exc:
            raise WarehouseError(
                f"{_batch_name(pages)}: not loaded, warehouse {self.path} unchanged: "
                f"{_one_line(exc)}"
            ) from exc
        return [p if isinstance(p, PageLoad) else p.load() for p in planned]

    def _plan_pages(
        self,
        pages: Sequence[tuple[RawPage, ParsedPage]],
        stored: Sequence[PageBytes],
        run_id: int,
    ) -> list[PageLoad | PendingPage]:
        """Each page as a skipped PageLoad (bytes already loaded) or a PendingPage with its
        new page id, in order."""
        now = utc_now()
        settled = [
            (settle_capture(settled_date(raw, parsed), parsed, now), parsed)
            for raw, parsed in pages
        ]
        loaded = self._loaded_pages([s.sha256 for s in stored])
        fresh = {
            page_key(raw, s.sha256)
            for (raw, _), s in zip(settled, stored, strict=True)
            if page_key(raw, s.sha256) not in loaded
        }
        page_ids = iter(self._next_page_ids(len(fresh)))
        planned: list[PageLoad | PendingPage] = []
        for (raw, parsed), page_stored in zip(settled, stored, strict=True):
            key = page_key(raw, page_stored.sha256)
            if key in loaded:
                planned.append(replace(loaded[key], location=raw.location))
                continue
            page = PendingPage(
                raw, parsed, page_stored, next(page_ids), run_id, raw.fetched_at or utc_now()
            )
            planned.append(page)
            loaded[key] = page.load_as_skipped()
        return planned

    def _next_page_ids(self, n: int) -> list[int]:
        if not n:
            return []
        rows = self.con.execute("SELECT nextval('page_id_seq') FROM range($n)", {"n": n}).fetchall()
        return sorted(r[0] for r in rows)

    def _load_pending(self, pages: list[PendingPage], new_pages: bool) -> None:
        """Resolve each page's ids in order and write the pages a segment at a time.

        A segment ends where a page merges a title-only paper into its arXiv id: the merge
        rewrites stored rows, so everything before it is written first, as a page-at-a-time
        load would have.
        """
        listed = [p for page in pages for p in page.parsed.papers]
        keys = title_keys(listed)
        # A title-only paper's id is its title key, so looking the keys up as ids finds the
        # stored title-only papers an arXiv entry merges; only title-only entries need stored
        # papers by title key (a lookup by title key costs twice one by id: random keys).
        ids = sorted({p.paper_id for p in listed} | set(keys.values()))
        title_only = sorted({keys[p.title] for p in listed if p.paper_id.startswith("t:")})
        index = PaperIndex(self._papers_matching(ids, title_only))
        segment: list[PendingPage] = []
        for page in pages:
            page.papers, merges = index.resolve(dedupe(page.parsed.papers), keys)
            if merges:
                self._write_segment(segment, keys, index, new_pages)
                segment = []
                for alias, paper_id in merges:
                    self._merge_title_paper(alias, paper_id)
                    index.merged(alias, paper_id)
            page.new_ids = index.add_page(page.papers, keys)
            segment.append(page)
        self._write_segment(segment, keys, index, new_pages)

    def _papers_matching(
        self, ids: list[str], keys: list[str]
    ) -> list[tuple[str, str, str | None]]:
        """(paper_id, title_key, fields_hash) of stored papers with one of these ids or keys."""
        if not ids and not keys:
            return []
        return self.con.execute(query_sql("papers_matching"), {"ids": ids, "keys": keys}).fetchall()

    def _write_segment(
        self, pages: list[PendingPage], keys: dict[str, str], index: PaperIndex, new_pages: bool
    ) -> None:
        """Bulk-write pages already planned: their rows and archive (when new), the papers'
        inserts and refreshes, sightings and rejects; `index` learns the new fields hashes."""
        if not pages:
            return
        if new_pages:
            self._insert_rows("pages", pages_rows(pages))
            self._archive_pages(archive_rows(pages))
        writes = fold_papers(pages, keys, index.hashes)
        if writes.touched.num_rows:
            with self._temp_table("batch", writes.touched):
                self.con.execute(query_sql("touch_papers"))
        if writes.refreshed.num_rows:
            index.hashes |= self._refresh_papers(writes.refreshed)
        # New papers go straight in: a temporary table first cost a second copy of each row.
        self._insert_rows("papers", writes.new)
        index.hashes |= writes.new_hashes
        self._insert_rows("sightings", sightings_rows(pages))
        self._insert_rows("rejects", rejects_rows(pages))

    def _refresh_papers(self, rows: Rows) -> dict[str, str]:
        """Refresh known papers' fields from `rows`; returns paper id -> fields hash of those
        it changed (recorded with them, as what their fields now are)."""
        with self._temp_table("batch", rows):
            changed = self.con.execute(query_sql("refresh_papers")).fetchall()
        hashes = {row[0]: fields_hash(list(row[1:])) for row in changed}
        if hashes:
            ids, digests = list(hashes), list(hashes.values())
            recorded = Rows({"paper_id": ("VARCHAR", ids), "fields_hash": ("VARCHAR", digests)})
            with self._temp_table("batch", recorded):
                self.con.execute(
                    "UPDATE papers SET fields_hash = b.fields_hash FROM batch b "
                    "WHERE papers.paper_id = b.paper_id"
                )
        return hashes

    def _archive_pages(self, rows: Rows) -> None:
        """Append page-archive rows to the newest segment, first starting one if it is full."""
        segment, held = self._archive_segment()
        if held >= ARCHIVE_SEGMENT_BYTES:
            segment, held = segment + 1, 0
            self._start_archive_segment(segment)
        self._insert_rows(f"page_archive_{segment}", rows)
        self._archive = (segment, held + sum(rows.columns["stored_size"][1]))

    def _archive_segment(self) -> tuple[int, int]:
        """(number, stored bytes) of the newest archive segment; segment 0 (the archive from
        before segments, with no sizes) counts as full."""
        if self._archive is None:
            segment = self._row(query_sql("archive_segment"))[0]
            held = ARCHIVE_SEGMENT_BYTES
            if segment:
                sql = f"SELECT coalesce(sum(stored_size), 0) FROM page_archive_{int(segment)}"
                held = self._row(sql)[0]
            self._archive = (segment, held)
        return self._archive

    def _start_archive_segment(self, segment: int) -> None:
        """Create segment `segment` and make the page_archive view read it too."""
        self.con.execute(query_sql("archive_segment_table").format(segment=int(segment)))
        reads = (
            f"SELECT page_id, encoding, raw_size, raw FROM page_archive_{n}"
            for n in range(segment + 1)
        )
        self.con.execute("CREATE OR REPLACE VIEW page_archive AS " + " UNION ALL ".join(reads))

    def _insert_rows(self, table: str, rows: Rows) -> None:
        """Append rows whose columns are `table`'s, by name, in one statement."""
        if not rows.num_rows:
            return
        columns = ", ".join(rows.column_names)
        self.con.execute(f"INSERT INTO {table} ({columns}) {rows.select_sql()}", rows.params())

    @contextlib.contextmanager
    def _temp_table(self, name: str, rows: Rows) -> Iterator[None]:
        """`rows` readable as temporary table `name` for the statements inside."""
        create = f"CREATE OR REPLACE TEMP TABLE {name} AS {rows.select_sql()}"
        self.con.execute(create, rows.params())
        try:
            yield
        finally:
            # In an aborted transaction this fails too; the statement's own error says more.
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"DROP TABLE IF EXISTS temp.{name}")

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

    def _merge_title_paper(self, alias: str, paper_id: str) -> None:
        """Move a title-only paper's history to its arXiv id; keep the old id as an alias."""
        params = {"id": paper_id, "alias": alias}
        exists = self._row("SELECT count(*) FROM papers WHERE paper_id = $id", {"id": paper_id})[0]
        if not exists:
            # DuckDB cannot update a primary key in place: copy the row under the new key, so
            # first_seen_* survive the merge (the upsert that follows refreshes the rest).
            self.con.execute(
                "INSERT INTO papers SELECT * REPLACE "
                "($id AS paper_id, $id AS arxiv_id, NULL AS fields_hash) "
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

    # ---- archive and rebuild -------------------------------------------------------------

    def iter_archive(self) -> Iterator[ArchivedPage]:
        """Every archived page, oldest first, with its original bytes."""
        ids = [
            r[0] for r in self.con.execute("SELECT page_id FROM pages ORDER BY page_id").fetchall()
        ]
        for page_id in ids:
            row = self._row(
                "SELECT p.run_id, p.source, p.location, p.digest_date, p.fetched_at, p.http_status,"
                " p.content_type, p.etag, p.last_modified, a.raw, p.captured_at, p.capture_basis "
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
                captured_at=row[10],
                capture_basis=row[11],
            )
            yield ArchivedPage(page_id, row[0], raw)

    def rebuild_derived(self, parse: Callable[[RawPage], ParsedPage]) -> tuple[int, int]:
        """Rebuild papers, sightings and rejects from the page archive, in one transaction.

        `parse` raises PageFormatError for bytes it refuses; such a page keeps its row and
        archive and gains a page-level reject, so nothing is lost. Returns (pages, entries).
        """
        pages = [
            PendingPage(
                a.raw, _parse_or_refuse(parse, a.raw), None, a.page_id, a.run_id, a.raw.fetched_at
            )
            for a in self.iter_archive()
        ]
        with self.transaction():
            for table in ("sightings", "rejects", "paper_aliases", "papers"):
                self.con.execute(f"DELETE FROM {table}")
            self._load_pending(pages, False)
            with self._temp_table("reparsed", reparsed_rows(pages)):
                self.con.execute(
                    "UPDATE pages SET fmt = r.fmt, n_entries = r.n_entries, "
                    "n_rejected = r.n_rejected FROM reparsed r WHERE pages.page_id = r.page_id"
                )
        return len(pages), sum(len(p.papers) for p in pages)

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

    def mark_days_complete(
        self, run_id: int, source: str, days: Sequence[tuple[date, int, int]]
    ) -> None:
        """Record days whose every page is loaded, as (day, pages, entries): a backfill
        resumes after them."""
        if not days:
            return
        rows = Rows(
            {
                "digest_date": ("DATE", [d[0] for d in days]),
                "source": ("VARCHAR", [source] * len(days)),
                "run_id": ("BIGINT", [run_id] * len(days)),
                "completed_at": ("TIMESTAMPTZ", [utc_now()] * len(days)),
                "n_pages": ("INTEGER", [d[1] for d in days]),
                "n_entries": ("INTEGER", [d[2] for d in days]),
            }
        )
        try:
            self._insert_rows("day_loads", rows)
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {self.path}: {_one_line(exc)}") from None

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

    def captured_through(self, run_id: int) -> datetime | None:
        """The newest capture time of the pages `run_id` loaded (or, when it loaded none, of
        the runs up to it): the moment a diff of that run describes."""
        return self._row(query_sql("captured_through"), {"run_id": run_id})[0]

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

    def ranking_corpus(self, until: date | None = None) -> list[CorpusPaper]:
        """Every paper's id, title and text for the personal ranking (first seen by `until`)."""
        rows = self.con.execute(query_sql("ranking_corpus"), {"until": until}).fetchall()
        return [CorpusPaper(pid, aid, title or "", text or "") for pid, aid, title, text in rows]

    def site_digest_items(
        self, stars_jump: int, days: Sequence[date] | None = None
    ) -> list[dict[str, Any]]:
        """Every paper of every recorded daily digest (or those of `days`), as it went out."""
        if days is not None and not days:
            return []
        params = {"stars_jump": stars_jump, "days": _listed(days)}
        return self.run_query("site_digest_items", params)

    def site_papers(self, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every paper (or those of `ids`) with its latest figures (for the site)."""
        if ids is not None and not ids:
            return []
        return self.run_query("site_papers", {"ids": _listed(ids)})

    def site_sightings(
        self, ids: Sequence[str] | None = None
    ) -> list[tuple[str, date, datetime, int, int | None]]:
        """Every sighting (or those of the papers of `ids`) as (paper_id, digest_date,
        captured_at, rank, upvotes), oldest first per paper."""
        if ids is not None and not ids:
            return []
        return self.con.execute(query_sql("site_sightings"), {"ids": _listed(ids)}).fetchall()

    def site_outline(self) -> list[tuple[date, datetime, bool, int, list[tuple]]]:
        """Every day page's fingerprint and the papers it shows, with theirs, newest first
        (see `warehouse/queries/site_outline.sql`)."""
        return self.con.execute(query_sql("site_outline")).fetchall()

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
            recent_pages=self.run_query("status_recent_pages", {"limit": recent}),
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
        captured_at: datetime | None = None,
    ) -> None:
        """Remember that a digest went out, which (paper_id, section, upvotes) it carried, and
        the newest capture time of its data (default: when it went out)."""
        now = delivered_at or utc_now()
        batch = Rows(
            {
                "paper_id": ("VARCHAR", [i[0] for i in items]),
                "section": ("VARCHAR", [i[1] for i in items]),
                "upvotes": ("INTEGER", [i[2] for i in items]),
            }
        )
        with self.transaction():
            self.con.execute(
                "INSERT INTO digests VALUES ($k, $d, $run, $at, $n, $r, $captured) "
                "ON CONFLICT DO UPDATE SET n_recipients = excluded.n_recipients",
                {
                    "k": digest_key,
                    "d": digest_date,
                    "run": run_id,
                    "at": now,
                    "n": len(items),
                    "r": n_recipients,
                    "captured": captured_at or now,
                },
            )
            with self._temp_table("mailed_batch", batch):
                self.con.execute(
                    query_sql("record_digest"), {"digest_key": digest_key, "delivered_at": now}
                )

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

    def send_states(self, recipients: Sequence[str], digest_key: str) -> dict[str, tuple[str, str]]:
        """(state, message_id) of a digest for each recipient that has a ledger row."""
        asked = Rows({"recipient": ("VARCHAR", list(recipients))})
        with self._temp_table("asked", asked):
            rows = self.con.execute(query_sql("send_states"), {"digest_key": digest_key})
            return {recipient: (state, mid) for recipient, state, mid in rows.fetchall()}

    def mark_pending_many(self, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        """`mark_pending` for a batch of (recipient, message_id), in one transaction."""
        self._write_sends("mark_pending_many", digest_key, sends)

    def mark_sent_many(self, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        """`mark_sent` for a batch of (recipient, message_id), in one transaction."""
        self._write_sends("mark_sent_many", digest_key, sends)

    def _write_sends(self, query: str, digest_key: str, sends: Sequence[tuple[str, str]]) -> None:
        if not sends:
            return
        batch = Rows(
            {
                "recipient": ("VARCHAR", [r for r, _ in sends]),
                "message_id": ("VARCHAR", [m for _, m in sends]),
            }
        )
        with self.transaction(), self._temp_table("send_batch", batch):
            self.con.execute(query_sql(query), {"digest_key": digest_key, "now": utc_now()})

    def mark_failed(self, recipient: str, digest_key: str, message_id: str, error: str) -> None:
        """Record that a send failed (it will be retried with the same Message-ID)."""
        self.con.execute(
            "UPDATE sends SET state = 'failed', message_id = $m, error = $e, updated_at = $now "
            "WHERE recipient = $r AND digest_key = $k",
            {"r": recipient, "k": digest_key, "m": message_id, "e": error[:500], "now": utc_now()},
        )


# ---- helpers of this module ------------------------------------------------------------------


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


def _parse_or_refuse(parse: Callable[[RawPage], ParsedPage], raw: RawPage) -> ParsedPage:
    """The page parsed again, or (refused now) a page-level reject in place of its entries."""
    try:
        return parse(raw)
    except PageFormatError as exc:
        excerpt = raw.body[:EXCERPT_CHARS].decode("utf-8", "replace")
        return ParsedPage("unknown", raw.digest_date, rejects=(Reject(0, exc.reason, excerpt),))


def _batch_name(pages: Sequence[tuple[RawPage, ParsedPage]]) -> str:
    """How an error names a batch: its page, or its first page and how many more."""
    first = pages[0][0].location
    return first if len(pages) == 1 else f"{first} and {len(pages) - 1} more pages"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _listed(values: Sequence[Any] | None) -> list[Any] | None:
    """A bound list parameter, where NULL (None) stands for "all"."""
    return None if values is None else list(values)
