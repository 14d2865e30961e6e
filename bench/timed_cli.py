"""Run the real `paperdigest` command line, timing the command (benchmarks only).

    PAPERDIGEST_RATE_LIMIT=off python -m bench.timed_cli TIMINGS.json -- backfill --start …

Before the command it starts Prefect's temporary server (as the CLI does when no PREFECT_API_URL
is set) and runs an empty flow, so the command's own time (`command_s`) can be told apart from
the server's startup and the client's first run (`prefect_warmup_s`).
TIMINGS.json also gets the peak RSS of this process.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

# The client-side rate limit (500 API calls / 100 page loads per 5 minutes) would pace a
# three-year backfill to ~8 minutes by design; the benchmark's server is a local replay, so
# the callers set PAPERDIGEST_RATE_LIMIT=off, the setting any mirror may use.
RATE_LIMIT_OFF = {"PAPERDIGEST_RATE_LIMIT": "off"}


def warm_up_prefect() -> None:
    """Run an empty flow: the first flow run of a process sets up Prefect's client."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> None:
        """Do nothing: the flow run itself is the point."""

    warm_up()


def main(argv: list[str]) -> int:
    """Run the command after `--`; write its timings and this process's peak RSS."""
    timings_path, command = Path(argv[0]), argv[argv.index("--") + 1 :]
    from flows import cli
    from flows.prefect_env import prepare_prefect_env

    prepare_prefect_env()  # before Prefect is imported: it reads its settings once
    from flows.prefect_server import prefect_api

    began = time.perf_counter()
    with prefect_api():  # the temporary server the command would start, started here
        warm_up_prefect()
        warmup_s = time.perf_counter() - began
        began = time.perf_counter()
        exit_code = cli.main(command)
        command_s = time.perf_counter() - began
    timings = {
        "exit_code": exit_code,
        "prefect_warmup_s": warmup_s,
        "command_s": command_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    timings_path.write_text(json.dumps(timings))
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
