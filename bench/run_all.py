"""Run paperdigest's benchmark suite and write its results table.

    .venv/bin/python bench/run_all.py            # full: ~15 min, writes bench/RESULTS.md
    .venv/bin/python bench/run_all.py --quick    # CI smoke test: < 2 min, bench/RESULTS-quick.md
    .venv/bin/python bench/run_all.py --only diff --only load

Each section runs in its own process (so its peak memory is its own, and a crash stops only
it); the histories the load, diff and deliver sections read are built once, up front. The
exit code is 1 only when a section crashed: a missed target is reported in the table, never
as a failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

from bench.harness import PYTHON, Context, Row, run_child  # noqa: E402
from bench.report import load_now, markdown_report, print_section, write_report  # noqa: E402
from bench.servers import prime_prefect_home  # noqa: E402

SECTIONS = {  # name → (module, title)
    "parse": ("bench.parse_rows", "Parse"),
    "backfill": ("bench.bench_backfill", "Backfill"),
    "load": ("bench.bench_load", "Load"),
    "diff": ("bench.bench_diff", "Diff"),
    "deliver": ("bench.bench_deliver", "Render & deliver"),
    "daily": ("bench.bench_daily", "Daily run"),
    "rank": ("bench.bench_rank", "Ranking"),
    "site": ("bench.bench_site", "Site"),
}
HISTORIES = {  # section → days of history it reads, (full, quick)
    "load": ((1, 3650), (1, 365)),
    "diff": ((1, 365, 3650), (1, 30, 365)),
    "daily": ((1096,), ()),
    "deliver": ((30,), (30,)),
    "rank": ((365,), (30,)),
    "site": ((1096,), (90,)),
}
SECTION_TIMEOUT_S = {"full": 1800.0, "quick": 240.0}
RESULTS = {"full": ROOT / "bench" / "RESULTS.md", "quick": ROOT / "bench" / "RESULTS-quick.md"}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections (all by default), print their tables, write the markdown."""
    args = _parser().parse_args(argv)
    if args.section:
        return run_one_section(args)
    mode = "quick" if args.quick else "full"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="paperdigest-bench-"))
    names = args.only or list(SECTIONS)
    started, began, load_at_start = datetime.now(UTC), time.perf_counter(), load_now()
    rows: list[Row] = []
    loads: dict[str, str] = {}  # the machine is shared: its load when each section started
    crashed = False
    try:
        _build_histories(names, workdir, args.quick)
        _prime_prefect(names, Context(quick=args.quick, workdir=workdir))
        for name in names:
            section_began, loads[SECTIONS[name][1]] = time.perf_counter(), load_now()
            section_rows, ok = run_section_process(name, workdir, args.quick)
            took = time.perf_counter() - section_began
            print_section(f"{SECTIONS[name][1]} ({took:.0f} s)", section_rows)
            rows += section_rows
            crashed |= not ok
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = markdown_report(
        rows,
        command=_command(argv),
        started=started,
        seconds=time.perf_counter() - began,
        quick=args.quick,
        load_at_start=load_at_start,
        section_loads=loads,
    )
    output = Path(args.output) if args.output else RESULTS[mode]
    write_report(output, text)
    print(f"\nwrote {output} ({time.perf_counter() - began:.0f} s)")
    return 1 if crashed else 0


def run_section_process(name: str, workdir: Path, quick: bool) -> tuple[list[Row], bool]:
    """Run one section in a child process; a crash becomes a row saying so."""
    rows_path = workdir / f"{name}.rows.json"
    rows_path.unlink(missing_ok=True)
    argv = [PYTHON, "-m", "bench.run_all", "--section", name, "--workdir", str(workdir)]
    argv += ["--rows-out", str(rows_path)] + (["--quick"] if quick else [])
    timeout = SECTION_TIMEOUT_S["quick" if quick else "full"]
    child = run_child(argv, timeout_s=timeout)
    if child.exit_code == 0 and rows_path.exists():
        return [Row(**row) for row in json.loads(rows_path.read_text())], True
    tail = " ".join(child.stderr.strip().splitlines()[-3:])[-400:]
    print(child.stderr[-4000:], file=sys.stderr)
    crash = Row(
        SECTIONS[name][1],
        "(the whole section)",
        f"CRASHED (exit {child.exit_code} after {child.wall_s:.0f} s)",
        note=tail,
        missed=True,
    )
    return [crash], False


def run_one_section(args: argparse.Namespace) -> int:
    """In the child: run the section's module and write its rows as JSON."""
    ctx = Context(quick=args.quick, workdir=Path(args.workdir))
    module = importlib.import_module(SECTIONS[args.section][0])
    rows = module.run(ctx)
    Path(args.rows_out).write_text(json.dumps([row.as_dict() for row in rows]))
    return 0


def _build_histories(names: list[str], workdir: Path, quick: bool) -> None:
    days = sorted({n for name in names for n in HISTORIES.get(name, ((), ()))[quick]})
    if not days:
        return
    argv = [PYTHON, "-m", "bench.history", str(workdir), *map(str, days)]
    began = time.perf_counter()
    child = run_child(argv, timeout_s=SECTION_TIMEOUT_S["full"])
    if child.exit_code != 0:  # each section builds what it lacks, and reports its own crash
        print(f"building the histories failed:\n{child.stderr[-2000:]}", file=sys.stderr)
        return
    listed = ", ".join(map(str, days))
    print(f"built histories of {listed} days in {time.perf_counter() - began:.0f} s")


def _prime_prefect(names: list[str], ctx: Context) -> None:
    """Migrate the shared Prefect home once, unmeasured, before the runs that use it."""
    if not {"backfill", "daily"} & set(names):
        return
    try:
        seconds = prime_prefect_home(ctx.prefect_home)
    except (OSError, subprocess.SubprocessError) as exc:  # the first run migrates it instead
        print(f"could not prime Prefect's database: {exc}", file=sys.stderr)
        return
    print(f"primed Prefect's database in {ctx.prefect_home} in {seconds:.0f} s")


def _command(argv: list[str] | None) -> str:
    given = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python bench/run_all.py", *given])
    make = {(): "make bench", ("--quick",): "make bench-quick"}.get(tuple(given))
    return f"`{make}` (`{command}`)" if make else f"`{command}`"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled down, for CI (< 2 min)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only SECTION")
    parser.add_argument("--output", help="markdown file (default bench/RESULTS[-quick].md)")
    parser.add_argument("--workdir", help="where to put warehouses and servers' files")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--rows-out", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
