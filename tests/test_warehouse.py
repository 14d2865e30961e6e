"""The warehouse on real DuckDB files: idempotent, atomic, merging, migrating, one writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows import warehouse as wh_module
from flows.models import Paper, ParsedPage, RawPage, Reject
from flows.warehouse import Warehouse, WarehouseBusy, WarehouseError

DAY = date(2025, 11, 3)
T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
SEEDS = Path(__file__).parent / "fixtures" / "seeds"
TABLES = ("runs", "pages", "page_archive", "papers", "sightings", "rejects", "paper_aliases")


def paper(paper_id: str, rank: int = 1, **fields) -> Paper:
    """A cleaned paper with plausible defaults."""
    fields.setdefault("title", f"Title of {paper_id}")
    fields.setdefault("abstract", f"Abstract of {paper_id}.")
    arxiv = None if paper_id.startswith("t:") else paper_id
    return Paper(paper_id=paper_id, rank=rank, arxiv_id=arxiv, digest_date=DAY, **fields)


def raw(body: bytes, location: str = "https://hf.test/api/daily_papers?date=2025-11-03", at=T0):
    return RawPage("api", location, body, DAY, at, 200, "application/json")


def parsed(*papers: Paper, rejects: tuple[Reject, ...] = ()) -> ParsedPage:
    return ParsedPage("api", DAY, tuple(papers), rejects)


def snapshot(wh: Warehouse) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: two equal snapshots mean nothing changed."""
    return {t: sorted(wh.con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def test_a_page_loads_whole_rows(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("test")
        load = wh.save_page(
            raw(b"[1]"),
            parsed(
                paper(
                    "2511.00001",
                    1,
                    upvotes=12,
                    authors=("Ada", "Bob"),
                    github_url="https://github.com/a/b",
                ),
                paper("2511.00002", 2, upvotes=3),
                rejects=(Reject(3, "no abstract", "Broken entry"),),
            ),
            run,
        )
        assert (load.skipped, load.n_entries, load.n_rejected, load.n_new_papers) == (
            False,
            2,
            1,
            2,
        )
        rows = wh.con.execute(
            "SELECT paper_id, arxiv_id, title, authors, n_authors, github_url, first_seen_run,"
            " first_digest_date, first_seen_at FROM papers ORDER BY paper_id"
        ).fetchall()
        assert rows == [
            ("2511.00001", "2511.00001", "Title of 2511.00001", ["Ada", "Bob"], 2,
             "https://github.com/a/b", run, DAY, T0),
            ("2511.00002", "2511.00002", "Title of 2511.00002", [], None, None, run, DAY, T0),
        ]  # fmt: skip
        sightings = wh.con.execute(
            "SELECT run_id, page_id, paper_id, digest_date, rank, upvotes, seen_at, github_url "
            "FROM sightings ORDER BY rank"
        ).fetchall()
        assert sightings == [
            (run, load.page_id, "2511.00001", DAY, 1, 12, T0, "https://github.com/a/b"),
            (run, load.page_id, "2511.00002", DAY, 2, 3, T0, None),
        ]
        assert wh.con.execute("SELECT page_id, position, reason FROM rejects").fetchall() == [
            (load.page_id, 3, "no abstract")
        ]
        assert wh.integrity_problems() == []


def test_the_same_page_twice_changes_nothing(db_path: Path) -> None:
    page = parsed(paper("2511.00001", upvotes=5))
    with Warehouse.open(db_path) as wh:
        wh.save_page(raw(b"[a]"), page, wh.start_run("test"))
        before = snapshot(wh)
        again = wh.save_page(raw(b"[a]", at=T0 + timedelta(hours=1)), page, 1)
        assert again.skipped
        assert snapshot(wh) == before


def test_new_content_appends_sightings_and_refreshes_latest_fields(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        r1 = wh.start_run("test")
        wh.save_page(raw(b"v1"), parsed(paper("2511.00001", upvotes=5, ai_summary="S")), r1)
        r2 = wh.start_run("test")
        later = T0 + timedelta(hours=6)
        wh.save_page(
            raw(b"v2", at=later),
            parsed(paper("2511.00001", upvotes=40, github_url="https://github.com/x/y")),
            r2,
        )
        assert wh.con.execute(
            "SELECT upvotes, run_id FROM sightings ORDER BY seen_at"
        ).fetchall() == [(5, r1), (40, r2)]
        row = wh.con.execute(
            "SELECT github_url, ai_summary, first_seen_run, first_seen_at, last_seen_at FROM papers"
        ).fetchone()
        # the new page adds the GitHub link but does not wipe the summary it lacks
        assert row == ("https://github.com/x/y", "S", r1, T0, later)
        latest = wh.con.execute("SELECT upvotes FROM paper_latest").fetchall()
        assert latest == [(40,)]


def test_an_empty_day_is_recorded_per_date(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("test")
        for offset in range(2):
            day = DAY + timedelta(offset)
            page = RawPage("api", f"u?date={day}", b"[]", day, T0, 200, "application/json")
            assert not wh.save_page(page, ParsedPage("api", day), run).skipped
        assert wh.gaps(DAY, DAY + timedelta(2)) == [DAY + timedelta(2)]


def test_a_title_only_paper_merges_into_its_arxiv_id(db_path: Path) -> None:
    title = "Learning from Future: A Novel Self-Training Framework"
    from flows.parse.clean import title_key

    key = title_key(title)
    with Warehouse.open(db_path) as wh:
        r1 = wh.start_run("text import")
        wh.save_page(raw(b"text", "seed.txt"), parsed(paper(key, title=title)), r1)
        r2 = wh.start_run("api")
        load = wh.save_page(raw(b"api"), parsed(paper("2501.00001", title=title.upper())), r2)
        assert load.n_new_papers == 0  # the same paper, now with its arXiv id
        r3 = wh.start_run("text again")
        wh.save_page(raw(b"text2", "seed2.txt"), parsed(paper(key, title=title)), r3)
        assert wh.con.execute("SELECT paper_id, first_seen_run FROM papers").fetchall() == [
            ("2501.00001", r1)
        ]
        assert wh.con.execute("SELECT DISTINCT paper_id FROM sightings").fetchall() == [
            ("2501.00001",)
        ]
        assert wh.con.execute("SELECT * FROM paper_aliases").fetchall() == [(key, "2501.00001")]
        assert wh.integrity_problems() == []


def test_a_failure_mid_page_leaves_nothing_half_written(db_path: Path, monkeypatch) -> None:
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("test")
        wh.save_page(raw(b"ok"), parsed(paper("2511.00001")), run)
        before = snapshot(wh)
        real_insert = Warehouse._insert_rows

        def broken(self: Warehouse, table: str, rows) -> None:
            if table == "sightings":  # after the page row, its archive and its papers
                self.con.execute("INSERT INTO no_such_table VALUES (1)")
            real_insert(self, table, rows)

        monkeypatch.setattr(Warehouse, "_insert_rows", broken)
        with pytest.raises(WarehouseError, match=r"^https://hf\.test/.*not loaded"):
            wh.save_page(raw(b"bad"), parsed(paper("2511.00002")), run)
        monkeypatch.setattr(Warehouse, "_insert_rows", real_insert)
        assert snapshot(wh) == before
        assert wh.integrity_problems() == []


def test_duplicate_ids_in_one_batch_keep_the_first(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        load = wh.save_page(
            raw(b"dup"),
            parsed(paper("2511.00001", 1, upvotes=1), paper("2511.00001", 2, upvotes=9)),
            wh.start_run("t"),
        )
        assert load.n_entries == 1
        assert wh.con.execute("SELECT rank, upvotes FROM sightings").fetchall() == [(1, 1)]


def test_a_refused_input_leaves_only_a_reject(db_path: Path) -> None:
    with Warehouse.open(db_path) as wh:
        wh.save_refused_page(raw(b"<html>503</html>", "bad.html"), "HTML error page", None)
        counts = {t: len(rows) for t, rows in snapshot(wh).items()}
        assert counts == dict.fromkeys(TABLES, 0) | {"rejects": 1}


def test_an_older_schema_is_upgraded_and_keeps_its_data(db_path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(db_path))
    old = Warehouse(con, db_path)
    con.execute("SET TimeZone = 'UTC'")
    assert old.migrate(target=1) == 1
    con.execute(
        "INSERT INTO runs (run_id, flow, started_at, status) VALUES (1, 'old', $t, 'ok')", {"t": T0}
    )
    con.execute(
        "INSERT INTO sightings VALUES (1, 1, '2401.00001', $d, 1, 7, NULL, NULL, $t)",
        {"d": DAY, "t": T0},
    )
    con.execute(
        "INSERT INTO pages VALUES (1, 1, 'api', 'api', 'old.json', $d, $t, 'sha', 200, NULL, "
        "NULL, NULL, 1, 0)",
        {"d": DAY, "t": T0},
    )
    con.execute(
        "INSERT INTO papers VALUES ('2401.00001', 'k', '2401.00001', 'T', 'A', [], NULL, NULL, "
        "NULL, NULL, NULL, [], NULL, $t, 1, $d, $t)",
        {"d": DAY, "t": T0},
    )
    con.close()
    with Warehouse.open(db_path) as wh:
        assert wh.schema_version() == wh_module.SCHEMA_VERSION == 6
        # version 6: no paper's fields hash is known yet (its next page records one)
        assert wh.con.execute("SELECT fields_hash FROM papers").fetchall() == [(None,)]
        assert wh.con.execute("SELECT paper_id, upvotes, github_url FROM sightings").fetchall() == [
            ("2401.00001", 7, None)
        ]
        assert wh.send_state("a@b.c", "2025-11-03") is None  # the sends table now exists
        # version 4: the load time stands in for the capture time, marked estimated
        assert wh.con.execute(
            "SELECT captured_at, capture_basis, capture_estimated FROM pages"
        ).fetchall() == [(T0, "load-time", True)]
        assert wh.con.execute(
            "SELECT captured_at, capture_estimated FROM sightings"
        ).fetchall() == [(T0, True)]
        assert wh.con.execute("SELECT first_captured_at FROM papers").fetchall() == [(T0,)]
        assert wh.status().recent_pages[0]["capture_basis"] == "load-time"


def test_reparse_rebuilds_identical_rows(db_path: Path) -> None:
    from flows.pipeline import ingest_pages, read_saved_page, reparse_archive

    with Warehouse.open(db_path) as wh:
        run = wh.start_run("import")
        ingest_pages(wh, [read_saved_page(p, DAY) for p in sorted(SEEDS.glob("*.txt"))], run, DAY)
        before = snapshot(wh)
        wh.con.execute("DELETE FROM sightings WHERE rank > 10")  # damage the derived tables
        pages, entries = reparse_archive(wh, DAY)
        assert (pages, entries) == (3, 409)
        after = snapshot(wh)
        for table in ("pages", "papers", "sightings", "rejects"):
            assert after[table] == before[table], table


def _hold_lock_script(path: Path, seconds: float) -> str:
    return textwrap.dedent(
        f"""
        import duckdb, time, sys
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
        """
    )


def _start_holder(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _hold_lock_script(path, seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_gets_a_clear_message(db_path: Path) -> None:
    Warehouse.open(db_path).close()
    holder = _start_holder(db_path, 30)
    try:
        with pytest.raises(WarehouseBusy) as err:
            Warehouse.open(db_path, wait_s=0)
        message = str(err.value)
        assert message.startswith(f"warehouse {db_path} is in use by another paperdigest process")
        assert f"(pid {holder.pid})" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    with Warehouse.open(db_path) as wh:  # nothing was damaged
        assert wh.integrity_problems() == []


def test_a_second_writer_can_wait_for_the_first(db_path: Path) -> None:
    Warehouse.open(db_path).close()
    holder = _start_holder(db_path, 1.5)
    started = time.monotonic()
    with Warehouse.open(db_path, wait_s=30) as wh:
        assert time.monotonic() - started >= 1.0  # it waited instead of failing
        assert wh.schema_version() == 6
    holder.wait()


IMPORTER = textwrap.dedent(
    """
    import sys
    from datetime import date, datetime, timedelta, timezone
    from flows.models import ParsedPage, Paper, RawPage
    from flows.warehouse import Warehouse

    path, n_pages = sys.argv[1], int(sys.argv[2])
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with Warehouse.open(path, wait_s=10) as wh:
        run = wh.start_run("bulk")
        for i in range(n_pages):
            day = date(2025, 1, 1) + timedelta(i)
            papers = tuple(
                Paper(f"25{i:02d}.{j:05d}", f"Paper {i}-{j}", "Abstract.", j + 1,
                      arxiv_id=f"25{i:02d}.{j:05d}", digest_date=day, upvotes=j)
                for j in range(2000)
            )
            page = RawPage("api", f"day-{i}", f"page {i}".encode(), day, t0)
            wh.save_page(page, ParsedPage("api", day, papers), run)
            print(i, flush=True)
        wh.finish_run(run, "ok", {})
    """
)


def test_sigkill_mid_import_then_rerun_completes(db_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "importer.py"
    script.write_text(IMPORTER)
    env_root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path), "40"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=env_root,
    )
    for _ in range(3):  # let a few pages commit, then kill it mid-way
        proc.stdout.readline()
    proc.kill()
    proc.wait()
    with Warehouse.open(db_path) as wh:
        assert wh.integrity_problems() == []
        loaded = wh.con.execute("SELECT count(*) FROM pages").fetchone()[0]
        assert 3 <= loaded < 40
    subprocess.run([sys.executable, str(script), str(db_path), "40"], check=True, cwd=env_root,
                   capture_output=True)  # fmt: skip
    with Warehouse.open(db_path) as wh:
        assert wh.integrity_problems() == []
        assert wh.con.execute(
            "SELECT count(*), count(DISTINCT page_id) FROM sightings"
        ).fetchone() == (
            80_000,
            40,
        )
        statuses = [
            r[0] for r in wh.con.execute("SELECT status FROM runs ORDER BY run_id").fetchall()
        ]
        assert statuses == ["abandoned", "ok"]


def test_memory_capped_caps_duckdb_inside_and_restores_the_default_even_on_error(
    tmp_path,
) -> None:
    def limit(wh: Warehouse) -> str:
        return wh.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        default = limit(wh)
        with wh.memory_capped(128):
            assert limit(wh) == "128.0 MiB"
        assert limit(wh) == default
        with pytest.raises(RuntimeError), wh.memory_capped(64):
            raise RuntimeError("a failed load")
        assert limit(wh) == default


def archive_segments(wh: Warehouse) -> dict[str, int]:
    """Rows per page-archive segment table."""
    names = wh.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'page_archive_%'"
    ).fetchall()
    return {name: wh.con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for (name,) in names}


def archived_bodies(wh: Warehouse) -> dict[str, bytes]:
    """location → the bytes the archive gives back, for every page (what `reparse` reads)."""
    return {page.raw.location: page.raw.body for page in wh.iter_archive()}


def body_page(n: int, size: int = 1000) -> tuple[RawPage, ParsedPage]:
    """A page of `size` incompressible bytes (the archive stores about as many)."""
    body = os.urandom(size)
    return raw(body, f"https://hf.test/pages/{n}.json"), ParsedPage("api", DAY + timedelta(n))


def test_the_archive_fills_segments_and_never_appends_to_a_full_one(db_path, monkeypatch) -> None:
    monkeypatch.setattr(wh_module, "ARCHIVE_SEGMENT_BYTES", 1500)  # a page and a half
    pages = [body_page(n) for n in range(7)]
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("t")
        wh.save_pages(pages[:3], run)  # segment 1 is empty: the whole batch goes there
        first = archive_segments(wh)
        wh.save_pages(pages[3:4], run)  # segment 1 is full: segment 2 starts
        wh.save_pages(pages[4:5], run)  # segment 2 has room
        wh.save_pages(pages[5:7], run)  # segment 2 is full: segment 3 starts
        segments = archive_segments(wh)
        assert first == {"page_archive_0": 0, "page_archive_1": 3}
        assert segments == {"page_archive_0": 0, "page_archive_1": 3, "page_archive_2": 2,
                            "page_archive_3": 2}  # fmt: skip
        assert archived_bodies(wh) == {r.location: r.body for r, _ in pages}
        assert wh.integrity_problems() == []
    with Warehouse.open(db_path) as wh:  # a later process goes on in the newest segment
        wh.save_pages([body_page(8)], wh.start_run("t"))
        assert archive_segments(wh) == segments | {"page_archive_4": 1}


def test_a_batch_rolled_back_takes_its_new_segment_with_it(db_path, monkeypatch) -> None:
    monkeypatch.setattr(wh_module, "ARCHIVE_SEGMENT_BYTES", 500)
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("t")
        wh.save_pages([body_page(0)], run)  # fills segment 1
        real_insert = wh._insert_rows

        def fail_on_sightings(table: str, rows: object) -> None:
            if table == "sightings":  # after the batch started segment 2 and archived into it
                raise duckdb.IOException("disk on fire")
            real_insert(table, rows)

        monkeypatch.setattr(wh, "_insert_rows", fail_on_sightings)
        with pytest.raises(WarehouseError, match="disk on fire"):
            wh.save_pages([(body_page(1)[0], parsed(paper("2511.00001")))], run)
        assert archive_segments(wh) == {"page_archive_0": 0, "page_archive_1": 1}
        monkeypatch.setattr(wh, "_insert_rows", real_insert)
        wh.save_pages([body_page(2)], run)  # segment 2 is made again, not assumed to exist
        assert archive_segments(wh) == {"page_archive_0": 0, "page_archive_1": 1,
                                        "page_archive_2": 1}  # fmt: skip
        assert len(archived_bodies(wh)) == 2


def test_a_capped_load_over_an_archive_far_larger_than_the_cap_checkpoints_fine(
    db_path: Path,
) -> None:
    """Before segments, DuckDB rewrote the whole archive at each checkpoint, and under the
    cap that failed fatally once the archive outgrew it (64 MiB for a backfill)."""
    with Warehouse.open(db_path) as wh, wh.memory_capped(24):
        run = wh.start_run("t")
        for batch in range(20):  # 20 batches of 4 pages of 512 KiB: a 40 MiB archive
            wh.save_pages([body_page(batch * 4 + n, 512 * 1024) for n in range(4)], run)
            wh.con.execute("CHECKPOINT")
        assert len(archive_segments(wh)) > 4
        assert wh.con.execute("SELECT count(*) FROM page_archive").fetchone()[0] == 80
    with Warehouse.open(db_path) as wh:
        assert wh.integrity_problems() == []


def test_a_schema_4_archive_becomes_segment_0_and_stays_readable(db_path: Path) -> None:
    con = duckdb.connect(str(db_path))
    old = Warehouse(con, db_path)
    con.execute("SET TimeZone = 'UTC'")
    assert old.migrate(target=4) == 4
    body = b'[{"paper": "archived before segments"}]'
    con.execute(
        "INSERT INTO runs (run_id, flow, started_at, status) VALUES (1, 'old', $t, 'ok')", {"t": T0}
    )
    con.execute(
        "INSERT INTO pages VALUES (1, 1, 'api', 'api', 'old.json', $d, $t, 'sha', 200, NULL, "
        "NULL, NULL, 0, 0, $t, 'load-time', true)",
        {"d": DAY, "t": T0},
    )
    con.execute(
        "INSERT INTO page_archive VALUES (1, 'zlib', $n, $raw)",
        {"n": len(body), "raw": zlib.compress(body)},
    )
    con.execute("SELECT nextval('page_id_seq'), nextval('run_id_seq')")  # page and run 1 taken
    con.close()
    with Warehouse.open(db_path) as wh:
        assert wh.schema_version() == 6
        assert archived_bodies(wh) == {"old.json": body}
        new = body_page(1)
        wh.save_pages([new], wh.start_run("t"))
        assert archive_segments(wh) == {"page_archive_0": 1, "page_archive_1": 1}
        assert archived_bodies(wh) == {"old.json": body, new[0].location: new[0].body}
        assert wh.integrity_problems() == []
