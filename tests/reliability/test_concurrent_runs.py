"""Two runs at once against the same warehouse: one proceeds, the other waits or exits 1 with a
clear one-line message, and nothing is damaged (DuckDB allows a single writer process)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from flows.warehouse import Warehouse, WarehouseBusy

from .support import (
    SEEDS,
    cli_env,
    paperdigest_lines,
    python_child,
    query,
    run_cli,
    start_cli,
    wait_for_line,
)

DAY = date(2025, 11, 3)
HOLD = """
import time
from flows.warehouse import Warehouse
wh = Warehouse.open({db!r})
print("holding", flush=True)
time.sleep({seconds})
wh.close()
print("released", flush=True)
"""


def hold_warehouse(db: Path, seconds: float):
    """A child process that opens the warehouse (taking DuckDB's write lock) for `seconds`."""
    child = python_child(HOLD.format(db=str(db), seconds=seconds))
    wait_for_line(child, "holding")
    return child


def test_second_opener_is_refused_at_once_with_a_one_line_message(tmp_path: Path) -> None:
    """Without --wait the second process gets WarehouseBusy naming the file and the holder."""
    db = tmp_path / "papers.duckdb"
    holder = hold_warehouse(db, 30)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseBusy) as caught:
            Warehouse.open(db)
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert "\n" not in message
        assert str(db) in message and f"(pid {holder.pid})" in message
        assert "in use by another paperdigest process" in message and "--wait" in message
    finally:
        holder.kill()
        holder.wait()
    with Warehouse.open(db) as wh:
        assert wh.integrity_problems() == []


def test_a_waiting_run_proceeds_once_the_holder_is_done(tmp_path: Path) -> None:
    """With wait_s the second process waits for the lock instead of failing."""
    db = tmp_path / "papers.duckdb"
    holder = hold_warehouse(db, 1.5)
    started = time.monotonic()
    with Warehouse.open(db, wait_s=30) as wh:
        waited = time.monotonic() - started
        run_id = wh.start_run("import")
        assert run_id >= 1
        assert wh.integrity_problems() == []
    holder.wait(timeout=30)
    assert 0.5 < waited < 25


@pytest.mark.slow
def test_cli_run_against_a_busy_warehouse_exits_1_with_one_clear_line(
    prefect_api_url: str, tmp_path: Path
) -> None:
    """`paperdigest run` while another process holds the warehouse: exit 1, one stderr line
    saying the warehouse is in use (and by whom), no traceback; the holder is not disturbed."""
    db = tmp_path / "papers.duckdb"
    holder = hold_warehouse(db, 60)
    try:
        env = cli_env(tmp_path, prefect_api_url)
        args = ["--db", str(db), "--outbox", str(tmp_path / "outbox")]
        proc = run_cli([*args, "run", "--offline", str(SEEDS[2].parent), "--date", str(DAY)], env)
        status = run_cli(["--db", str(db), "status"], cli_env(tmp_path, None))
    finally:
        holder.kill()
        holder.wait()
    for result in (proc, status):
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        [line] = paperdigest_lines(result.stderr)
        assert f"warehouse {db} is in use by another paperdigest process" in line
        assert f"(pid {holder.pid})" in line
        assert [x for x in result.stderr.splitlines() if x.strip()] == [line], result.stderr
    assert not (tmp_path / "outbox").exists()


@pytest.mark.slow
def test_cli_run_with_wait_proceeds_once_the_holder_is_done(
    prefect_api_url: str, tmp_path: Path
) -> None:
    """`paperdigest --wait 120 run` started while another process holds the warehouse waits
    for it, then runs normally: exit 0, every page loaded, one email."""
    db, outbox = tmp_path / "papers.duckdb", tmp_path / "outbox"
    holder = hold_warehouse(db, 8)
    started = time.monotonic()
    proc = run_cli(
        ["--db", str(db), "--outbox", str(outbox), "--wait", "120", "run", "--offline",
         str(SEEDS[0].parent), "--date", str(DAY)],
        cli_env(tmp_path, prefect_api_url),
    )  # fmt: skip
    holder.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started >= 7, "it cannot have run while the holder held the lock"
    assert query(db, "SELECT count(*), sum(n_entries) FROM pages") == [(3, 409)]
    assert len(list(outbox.glob("*.eml"))) == 1


@pytest.mark.slow
def test_two_daily_runs_at_once_one_proceeds_nothing_is_damaged_one_email(
    prefect_api_url: str, tmp_path: Path
) -> None:
    """Two `paperdigest run` for the same day started together: each exits 0, or 1 with a
    clear "in use" line; at least one succeeds; the warehouse holds exactly one run's rows
    and passes `check`; exactly one email went out."""
    db, outbox = tmp_path / "papers.duckdb", tmp_path / "outbox"
    env = cli_env(tmp_path, prefect_api_url)
    args = ["--db", str(db), "--outbox", str(outbox)]
    run = ["run", "--offline", str(SEEDS[0].parent), "--date", str(DAY)]
    first = start_cli([*args, *run], env)
    second = start_cli([*args, *run], env)
    results = [(p, *p.communicate(timeout=240)) for p in (first, second)]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes in ([0, 0], [0, 1]), [(p.returncode, err[-1500:]) for p, _, err in results]
    for process, _, stderr in results:
        if process.returncode == 1:
            assert any("is in use by another paperdigest process" in line
                       for line in paperdigest_lines(stderr)), stderr[-3000:]  # fmt: skip
    assert query(db, "SELECT count(*), sum(n_entries) FROM pages") == [(3, 409)]
    assert query(db, "SELECT count(*) FROM sightings") == [(409,)]
    assert query(db, "SELECT state, count(*) FROM sends GROUP BY state") == [("sent", 1)]
    assert len(list(outbox.glob("*.eml"))) == 1
    check = run_cli(["--db", str(db), "check"], cli_env(tmp_path, None))
    assert check.returncode == 0, check.stdout + check.stderr
