"""The benchmark's output: a rich table per section, and one self-contained markdown file.

The markdown (bench/RESULTS.md for the full run) carries the table, the command that made it,
the date, the machine (kernel, CPU, cores, memory, load) and the versions of Python, DuckDB and
Prefect, so it can be pasted as is into the README's Performance section.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.harness import Row

COLUMNS = ("Case", "Result", "Baseline", "Target / verdict", "Peak RSS", "Notes")

METHOD = """\
How to read it: every figure was measured on the machine above in the same run, next to the
baseline it is judged against. Times are wall-clock; "peak RSS" is the peak resident memory of
the process that did the work (each section runs in its own process; the backfill and daily
runs each in their own child process, measured with `wait4`; a run's publish in the Site section
in its own process, measured by it: VmHWM). The HTTP and SMTP servers run in
separate processes on 127.0.0.1 with no artificial delay. Synthetic days are the recorded
Hugging Face fixtures with shifted ids, dates and upvotes (`bench/synthetic.py`); long
histories are written in bulk with the rows daily runs would leave (`bench/history.py`).
Runs with Prefect's temporary server share one PREFECT_HOME whose database was migrated before
any measurement, as a scheduled run finds it. The client-side rate limit (500 API calls / 100
page loads per 5 minutes) was lifted for the backfill measurement only: with it, three years
would take ~8 minutes by design."""


def print_section(name: str, rows: list[Row], console: Console | None = None) -> None:
    """One section's rows as a rich table on the terminal."""
    table = Table(title=name, show_lines=True, expand=True)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*_cells(row, plain=True))
    console = console or Console()
    if not console.is_terminal:  # a CI log: wide rows beat 80-column ones
        console = Console(width=180)
    console.print(table)


def markdown_report(
    rows: list[Row],
    *,
    command: str,
    started: datetime,
    seconds: float,
    quick: bool,
    load_at_start: str,
    section_loads: dict[str, str],
) -> str:
    """The whole run as markdown: heading, command, machine, table, misses, method."""
    machine = machine_info() | {
        "load average": f"{load_at_start} at the start, {load_now()} at the end (1/5/15 min)"
    }
    lines = [
        "## Performance",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min with "
        f"{command}{' (quick mode: scaled down, see each row)' if quick else ''}.",
        "",
        "Machine: " + "; ".join(f"{key}: {value}" for key, value in machine.items()) + ".",
        "",
        "| Section | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    lines += [f"| {row.section} | " + " | ".join(_cells(row, plain=False)) + " |" for row in rows]
    missed = [row for row in rows if row.missed]
    loads = ", ".join(f"{name} {load}" for name, load in section_loads.items())
    lines += [
        "",
        _missed_line(missed),
        "",
        f"Load average (1/5/15 min) as each section began: {loads}.",
        "",
        METHOD,
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, text: str) -> None:
    """Write the markdown file."""
    path.write_text(text, encoding="utf-8")


def machine_info() -> dict[str, str]:
    """Kernel, CPU model, cores, memory, load average and the versions that matter."""
    uname = os.uname()
    return {
        "`uname -srm`": f"`{uname.sysname} {uname.release} {uname.machine}`",
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_gb():.0f} GB",
        "Python": platform.python_version(),
        "DuckDB": version("duckdb"),
        "Prefect": version("prefect"),
    }


def load_now() -> str:
    """The 1/5/15-minute load averages, e.g. "0.4/0.6/0.5"."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _cells(row: Row, *, plain: bool) -> list[str]:
    peak = f"{row.peak_mb:,.0f} MB" if row.peak_mb else ""
    cells = [row.case, row.result, row.baseline, row.verdict, peak, row.note]
    return cells if plain else [_escape(cell) for cell in cells]


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _missed_line(missed: list[Row]) -> str:
    if not missed:
        return "Every stated target was met."
    names = "; ".join(f"{row.section}: {row.case}" for row in missed)
    return f"Targets missed or checks failed ({len(missed)}): {names}."


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e9 if match else 0.0
