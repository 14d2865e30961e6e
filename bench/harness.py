"""What every benchmark section shares: its context, the rows it reports, and how it measures.

A section is a module with `run(ctx: Context) -> list[Row]`. Times are wall-clock seconds
(`time.perf_counter`); memory is peak RSS (`ru_maxrss`) of the process that did the work, read
with `os.wait4` for child processes.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass(frozen=True, slots=True)
class Context:
    """How a section should run: quick (CI smoke test) or full, and where it may write."""

    quick: bool
    workdir: Path

    def scaled(self, full: int, quick: int) -> int:
        """`full` in full mode, `quick` in quick mode."""
        return quick if self.quick else full

    def folder(self, name: str) -> Path:
        """A fresh-or-reused folder for this run's files."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def prefect_home(self) -> Path:
        """The PREFECT_HOME every run with Prefect's temporary server shares (see run_all)."""
        return self.folder("prefect-home")


@dataclass(slots=True)
class Row:
    """One line of the results table: a figure next to the baseline it is judged against."""

    section: str
    case: str
    result: str  # the figure(s), formatted
    baseline: str = ""  # the baseline's figure(s), formatted ("" when there is none)
    verdict: str = ""  # the target and whether it was met, e.g. "≤ 2×: 1.4× ✅"
    peak_mb: float | None = None  # peak RSS of the process that did the work
    note: str = ""
    missed: bool = False  # True when a stated target was missed
    figures: dict[str, float] = field(default_factory=dict)  # raw numbers, for the JSON record

    def as_dict(self) -> dict:
        """Plain values (for passing rows between processes)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How a child process ended: exit code, wall time, peak RSS and its output."""

    exit_code: int
    wall_s: float
    peak_mb: float
    stdout: str
    stderr: str

    def check(self, what: str) -> ChildResult:
        """Raise with the end of stderr when the child failed."""
        if self.exit_code != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{what} exited with {self.exit_code}:\n{tail}")
        return self


def run_child(
    argv: list[str], *, env: dict[str, str] | None = None, timeout_s: float = 1800.0
) -> ChildResult:
    """Run a command to completion; its wall time and peak RSS come from `os.wait4`."""
    out_path, err_path = _scratch("stdout"), _scratch("stderr")
    with out_path.open("w+") as out, err_path.open("w+") as err:
        began = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)
        status, usage = _wait(process, timeout_s)
        wall = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    return ChildResult(
        os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024, stdout, stderr
    )


def _wait(process: subprocess.Popen, timeout_s: float) -> tuple[int, resource.struct_rusage]:
    """Reap the child ourselves (wait4 gives its rusage); kill it when it overruns."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == process.pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if time.monotonic() > deadline:
            process.kill()  # our own child, by its pid
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        time.sleep(0.02)


def _scratch(kind: str) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{time.time_ns()}.{kind}"


def peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mb() -> float:
    """Peak RSS of this program since it started, in MB: unlike `peak_rss_mb` (and a child's
    `wait4` figure), not the size of the parent it was started from, which Linux carries over
    into ru_maxrss at exec."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mb()  # no /proc: the wider figure


def timed(action: Callable[[], object]) -> float:
    """Seconds one call of `action` takes."""
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def median_time(action: Callable[[], object], repeats: int) -> float:
    """Median seconds over `repeats` calls."""
    return statistics.median(timed(action) for _ in range(repeats))


def limit_verdict(value: float, limit: float, unit: str, digits: int = 2) -> tuple[str, bool]:
    """'≤ 400 MB: 361 MB ✅ met' and whether the target was missed (value above limit)."""
    missed = value > limit
    mark = "❌ missed" if missed else "✅ met"
    return f"≤ {limit:g}{unit}: {value:.{digits}f}{unit} {mark}", missed


def ratio_verdict(value: float, baseline: float, limit: float, what: str = "×") -> tuple[str, bool]:
    """'≤ 2×: 1.40× ✅ met' and whether the target was missed (value/baseline above limit)."""
    return limit_verdict(value / baseline if baseline else float("inf"), limit, what)
