"""A full disk during a load or a delivery: a clear error, nothing half-written, and everything
works again once there is space.

The real-disk variant mounts a small tmpfs (root only, and only where the sandbox allows
mounting); the simulated variant makes the write fail with ENOSPC where the code writes, and
always runs.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest

from flows import deliver as deliver_module
from flows.deliver import OutboxTransport, deliver_digest
from flows.diff import compute_diff
from flows.models import Recipient
from flows.pipeline import ingest_pages, read_saved_page
from flows.warehouse import Warehouse, WarehouseError

from .support import API_FIXTURES, SENDER, cli_env, paperdigest_lines, query, run_cli

DAY = date(2026, 8, 14)
RECIPIENTS = [Recipient("alice@example.org"), Recipient("bob@example.org")]


def fill(directory: Path) -> Path:
    """Write a filler file until the file system says ENOSPC; returns the filler."""
    filler = directory / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs mounted for this test (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the simulated ENOSPC tests still run")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); simulated tests run")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def load(db: Path, pages: list[Path]) -> list:
    with Warehouse.open(db) as wh:
        run_id = wh.start_run("import")
        outcomes = ingest_pages(wh, [read_saved_page(p) for p in pages], run_id)
        wh.finish_run(run_id, "ok", {})
    return outcomes


# ---- a real full disk -----------------------------------------------------------------------


def test_load_on_a_full_disk_fails_clearly_and_leaves_nothing_half_written(
    small_disk: Path,
) -> None:
    """Each page that cannot be written is refused with one line naming it, the warehouse and
    ENOSPC; after space is freed the warehouse opens, is sound, and the same pages load."""
    db = small_disk / "papers.duckdb"
    load(db, API_FIXTURES[:1])
    before = query(db, "SELECT location, n_entries FROM pages")
    filler = fill(small_disk)
    errors = []
    try:
        with Warehouse.open(db) as wh:
            run_id = wh.start_run("import")
            for path in API_FIXTURES[1:]:
                with pytest.raises(WarehouseError) as caught:
                    ingest_pages(wh, [read_saved_page(path)], run_id)
                errors.append(str(caught.value))
    except WarehouseError as exc:  # even opening may need a few bytes of log: also fine
        errors.append(str(exc))
    assert errors
    for message in errors:
        assert "\n" not in message and str(db) in message, message
        assert "No space left on device" in message, message
    filler.unlink()
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []
    assert query(db, "SELECT location, n_entries FROM pages") == before
    outcomes = load(db, API_FIXTURES[1:])
    assert [o.load.n_entries for o in outcomes] == [1, 15, 20, 23]
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []


def test_outbox_on_a_full_disk_leaves_no_partial_mail_and_sends_later(
    small_disk: Path, tmp_path: Path
) -> None:
    """Writing mail to a full outbox fails per recipient with ENOSPC in the ledger, leaves no
    partial or temporary file, and the next delivery (with space) sends each mail once."""
    db = tmp_path / "papers.duckdb"
    load(db, API_FIXTURES[-1:])
    outbox = small_disk / "outbox"
    outbox.mkdir()
    filler = fill(small_disk)
    with Warehouse.open(db) as wh:
        digest = compute_diff(wh, run_id=1, digest_date=DAY, since_run=0)
        report = deliver_digest(
            digest, RECIPIENTS, ledger=wh, transport=OutboxTransport(outbox), sender=SENDER,
            list_id="papers.example.org",
        )  # fmt: skip
        assert [address for address, _ in report.failed] == [r.address for r in RECIPIENTS]
        assert all("No space left on device" in reason for _, reason in report.failed)
        assert sorted(p.name for p in outbox.iterdir()) == []
        states = query_states(wh)
        assert states == {r.address: "failed" for r in RECIPIENTS}
        filler.unlink()
        report = deliver_digest(
            digest, RECIPIENTS, ledger=wh, transport=OutboxTransport(outbox), sender=SENDER,
            list_id="papers.example.org",
        )  # fmt: skip
        assert report.sent == [r.address for r in RECIPIENTS]
        assert query_states(wh) == {r.address: "sent" for r in RECIPIENTS}
    assert len(list(outbox.glob("*.eml"))) == 2 and len(list(outbox.glob(".*.tmp"))) == 0


def query_states(wh: Warehouse) -> dict[str, str]:
    return dict(wh.con.execute("SELECT recipient, state FROM sends").fetchall())


@pytest.mark.slow
def test_cli_import_on_a_full_disk_exits_1_with_one_line_and_no_traceback(
    small_disk: Path, prefect_api_url: str, tmp_path: Path
) -> None:
    """`paperdigest import` onto a full disk: exit 1, a one-line "No space left" error, no
    traceback, and the warehouse is unchanged and sound afterwards."""
    db = small_disk / "papers.duckdb"
    load(db, API_FIXTURES[:1])
    before = query(db, "SELECT location FROM pages")
    filler = fill(small_disk)
    proc = run_cli(
        ["--db", str(db), "import", *map(str, API_FIXTURES[1:])], cli_env(tmp_path, prefect_api_url)
    )
    filler.unlink()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = paperdigest_lines(proc.stderr)
    assert "No space left on device" in line and str(db) in line, proc.stderr
    assert [x for x in proc.stderr.splitlines() if x.strip()] == [line], proc.stderr[-3000:]
    assert query(db, "SELECT location FROM pages") == before
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []


# ---- simulated ENOSPC -----------------------------------------------------------------------


class _FailingConnection:
    """A DuckDB connection whose writes of the page archive fail as on a full disk."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.failures = 0

    def execute(self, sql: str, *args, **kwargs):
        if sql.lstrip().upper().startswith("INSERT INTO PAGE_ARCHIVE"):
            self.failures += 1
            raise duckdb.IOException(
                'Could not write file "papers.duckdb.wal": No space left on device'
            )
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def test_simulated_enospc_mid_page_rolls_the_page_back_and_the_next_page_loads(
    tmp_path: Path,
) -> None:
    """A write failing halfway through a page's transaction (after its page row, before its
    archive) gives one clear line, keeps nothing of that page, and later pages still load."""
    db = tmp_path / "papers.duckdb"
    with Warehouse.open(db) as wh:
        run_id = wh.start_run("import")
        real = wh.con
        wh.con = _FailingConnection(real)
        [failed] = ingest_pages(wh, [read_saved_page(API_FIXTURES[2])], run_id)
        wh.con = real
        assert wh.con is real
        assert failed.fatal and failed.load is None  # the run stops: the disk, not the page
        message = failed.error
        assert message.startswith(f"{API_FIXTURES[2]}: not loaded, warehouse {db} unchanged")
        assert "No space left on device" in message and "\n" not in message
        for table in ("pages", "page_archive", "papers", "sightings", "rejects"):
            assert wh.con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        [outcome] = ingest_pages(wh, [read_saved_page(API_FIXTURES[2])], run_id)
        assert outcome.load.n_entries == 15
        assert wh.integrity_problems() == []


def test_simulated_enospc_in_the_outbox_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox writes atomically: a write that fails halfway leaves neither the .eml nor a
    temporary file, the ledger says why, and the next delivery writes each mail once."""
    db, outbox = tmp_path / "papers.duckdb", tmp_path / "outbox"
    load(db, API_FIXTURES[-1:])
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(
        deliver_module.os, "fdopen", lambda *a, **k: HalfWriter(real_fdopen(*a, **k))
    )
    with Warehouse.open(db) as wh:
        digest = compute_diff(wh, run_id=1, digest_date=DAY, since_run=0)
        kwargs = {"ledger": wh, "sender": SENDER, "list_id": "papers.example.org"}
        report = deliver_digest(digest, RECIPIENTS, transport=OutboxTransport(outbox), **kwargs)
        assert len(report.failed) == 2
        assert all("No space left on device" in reason for _, reason in report.failed)
        assert list(outbox.iterdir()) == []
        monkeypatch.setattr(deliver_module.os, "fdopen", real_fdopen)
        report = deliver_digest(digest, RECIPIENTS, transport=OutboxTransport(outbox), **kwargs)
        assert report.sent == [r.address for r in RECIPIENTS]
    assert sorted(p.suffix for p in outbox.iterdir()) == [".eml", ".eml", ".html", ".html"]
