"""The command line: help everywhere, exit codes 0/1/2, and the README documents it all."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from flows import cli
from flows.config import ENV_VARS
from flows.pipeline import ingest_pages, read_saved_page
from flows.warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SEEDS = Path(__file__).parent / "fixtures" / "seeds"
DAY = date(2025, 11, 3)


@pytest.fixture
def loaded_db(db_path: Path) -> Path:
    """A warehouse holding the three seed pages, loaded without Prefect."""
    with Warehouse.open(db_path) as wh:
        run = wh.start_run("import")
        ingest_pages(wh, [read_saved_page(p, DAY) for p in sorted(SEEDS.glob("*.txt"))], run, DAY)
        wh.finish_run(run, "ok", {})
    return db_path


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:  # argparse exits for --help and usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [[], *[[name] for name in cli.COMMANDS]])
def test_every_command_has_help(command: list[str], capsys) -> None:
    code, out, _ = run_cli(*command, "--help", capsys=capsys)
    assert code == 0
    assert out.startswith("usage: paperdigest")


def test_every_command_is_documented_in_the_readme() -> None:
    for name in cli.COMMANDS:
        assert f"`paperdigest {name}" in README, name


def test_every_environment_variable_is_documented_and_real() -> None:
    documented = set(re.findall(r"^\| `((?:PAPERDIGEST_|HF_)[A-Z_]+)` \|", README, re.M))
    source = "\n".join(p.read_text() for p in (ROOT / "flows").rglob("*.py"))
    read_by_code = set(re.findall(r'"((?:PAPERDIGEST_|HF_)[A-Z_]+)"', source))
    assert set(ENV_VARS) <= documented
    assert read_by_code == documented


def test_python_dash_m_flows_is_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0 and "usage: paperdigest" in done.stdout


def test_usage_errors_exit_2(capsys) -> None:
    assert run_cli("no-such-command", capsys=capsys)[0] == 2
    code, _, err = run_cli("diff", "--date", "yesterday", capsys=capsys)
    assert code == 2 and "not a date (YYYY-MM-DD): 'yesterday'" in err


def test_a_bad_setting_exits_2_naming_it(db_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PAPERDIGEST_TIMEZONE", "Mars/Olympus")
    code, _, err = run_cli("--db", str(db_path), "status", capsys=capsys)
    assert code == 2
    assert err == (
        "paperdigest: configuration: unknown timezone 'Mars/Olympus' "
        "(use an IANA name like Europe/Paris)\n"
    )


def test_status_json(loaded_db: Path, capsys) -> None:
    code, out, _ = run_cli("--db", str(loaded_db), "status", "--json", capsys=capsys)
    assert code == 0
    status = json.loads(out)
    totals = status["totals"]
    assert (totals["pages"], totals["papers"], totals["sightings"], totals["rejects"]) == (
        3,
        391,
        409,
        0,
    )
    assert (totals["first_date"], totals["last_date"]) == ("2025-03-11", "2025-11-03")
    assert status["schema_version"] == 6
    # every page with its capture time: text pages say no time, so their digest day's end
    assert sorted(
        (p["digest_date"], p["captured_at"], p["capture_basis"]) for p in status["recent_pages"]
    ) == [
        (day, f"{day} 23:59:00+00:00", "digest-day")
        for day in ("2025-03-11", "2025-11-03", "2025-11-03")
    ]
    assert [r["flow"] for r in status["recent_runs"]] == ["import"]


def test_status_for_people(loaded_db: Path, capsys) -> None:
    code, out, _ = run_cli("--db", str(loaded_db), "status", capsys=capsys)
    assert code == 0
    assert "3 pages, 391 papers, 409 sightings, 0 rejects, 0 emails sent" in out
    assert "digest dates: 2025-03-11 → 2025-11-03" in out
    assert "2025-11-03 23:59 UTC (estimated: digest-day)" in out


def test_check_passes_then_fails_on_damage(loaded_db: Path, capsys) -> None:
    assert run_cli("--db", str(loaded_db), "check", capsys=capsys)[0] == 0
    with Warehouse.open(loaded_db) as wh:
        wh.con.execute("DELETE FROM pages WHERE page_id = 2")
    code, out, _ = run_cli("--db", str(loaded_db), "check", capsys=capsys)
    assert code == 1
    assert "FAIL sightings without their page: 113" in out


def test_diff_json(loaded_db: Path, capsys) -> None:
    code, out, _ = run_cli(
        "--db", str(loaded_db), "diff", "--date", "2025-11-03", "--json", capsys=capsys
    )
    assert code == 0
    digest = json.loads(out)
    # Saved pages are dated by their digest day (estimated, 23:59 UTC), so the Nov 3 digest
    # holds the papers of the pages of its week, not the March and July pages loaded with them.
    with Warehouse.open(loaded_db) as wh:
        week = wh.con.execute(
            "SELECT count(DISTINCT paper_id) FROM sightings "
            "WHERE digest_date > DATE '2025-10-27' AND capture_estimated"
        ).fetchall()[0][0]
    assert 0 < week < 391
    assert len(digest["new"]) + len(digest["trending"]) == week
    assert digest["digest_date"] == "2025-11-03"
    assert digest["as_of"] == "2025-11-03 23:59:00+00:00"


def test_preview_writes_html_and_text(loaded_db: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "preview"
    code, out, _ = run_cli(
        "--db", str(loaded_db), "preview", "--date", "2025-11-03", "--out", str(out_dir),
        capsys=capsys,
    )  # fmt: skip
    assert code == 0
    html, text = (Path(line) for line in out.splitlines())
    assert html.parent == text.parent == out_dir
    assert "ReasonRank" in html.read_text() + text.read_text()


def test_subscribers_add_list_remove(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "subs.json"))
    args = (
        "subscribers",
        "add",
        "ada@example.org",
        "--include",
        "diffusion",
        "--cadence",
        "weekly",
    )
    assert run_cli(*args, capsys=capsys)[0] == 0
    code, out, _ = run_cli("subscribers", "list", capsys=capsys)
    assert code == 0
    assert out == "ada@example.org\tweekly\tactive\tinclude: diffusion\n"
    assert run_cli("subscribers", "remove", "ada@example.org", capsys=capsys)[0] == 0
    _, out, _ = run_cli("subscribers", "list", capsys=capsys)
    assert "\tunsubscribed\t" in out


def test_a_busy_warehouse_is_one_clear_line(db_path: Path, capsys) -> None:
    Warehouse.open(db_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(db_path)!r}); "
         "print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli("--db", str(db_path), "status", capsys=capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert err.startswith(
        f"paperdigest: warehouse {db_path} is in use by another paperdigest process"
    )
    assert err.count("\n") == 1 and "Traceback" not in err


def test_reparse_rebuilds_from_the_archive(loaded_db: Path, capsys) -> None:
    code, out, _ = run_cli("--db", str(loaded_db), "reparse", "--date", "2025-11-03", capsys=capsys)
    assert (code, out) == (0, "reparsed 3 archived pages, 409 entries\n")


def test_no_flow_module_imports_the_cli() -> None:
    """The CLI imports the flows; never the other way round (Prefect's env has its own module)."""
    import ast

    package = Path(cli.__file__).parent
    importers = []
    for module in package.rglob("*.py"):
        if module.name in {"cli.py", "__main__.py"}:
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if "flows.cli" in names:
                importers.append(module.name)
    assert importers == []
