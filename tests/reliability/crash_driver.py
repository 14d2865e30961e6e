"""The work the kill trials interrupt: an import, a backfill and a delivery, as plain functions.

Run as a script (`python crash_driver.py MODE CONFIG.json`) it prints "T0" once its imports are
done (kill delays are measured from there) and "done" when the work is finished. With
PAPERDIGEST_TEST_CRASH_AT="Warehouse.<method>:N" in the environment it SIGKILLs itself on the
N-th call of that method: a kill at a known-dangerous point instead of a random one.
The test process imports this module too and calls the same functions for undisturbed runs.

Each function is the plain-function core of the corresponding flow (flows.daily.import_pages,
flows.backfill.backfill, flows.daily.daily_digest's delivery), without Prefect:
- import: read each saved page, load it (one transaction per page), record the run;
- backfill: skip complete days, fetch the rest in batches of two days on 4 threads, load each
  batch in this thread (one transaction) and mark complete the days whose pages are all in;
- delivery: diff the load run, then `deliver_run_digest` with the warehouse as the send ledger.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date
from pathlib import Path
from typing import Any

from flows.config import load_settings
from flows.diff import compute_diff
from flows.fetch import FetchSettings, HFClient
from flows.pipeline import RunTotals, deliver_run_digest, fetch_days, ingest_files, load_days
from flows.warehouse import Warehouse

CRASH_ENV = "PAPERDIGEST_TEST_CRASH_AT"


def run_import(db: Path, files: list[Path]) -> dict[str, Any]:
    """Load saved pages, one transaction each, in one recorded run."""
    with Warehouse.open(db, wait_s=30) as wh:
        run_id = wh.start_run("import", {"paths": [str(f) for f in files]})
        totals = RunTotals()
        for outcome in ingest_files(wh, files, run_id, None, date.today()):
            totals.add(outcome)
        wh.finish_run(run_id, "partial" if totals.failures else "ok", totals.as_dict())
    return totals.as_dict()


def run_backfill(db: Path, base_url: str, days: list[date], page_limit: int) -> dict[str, Any]:
    """Fetch and load a range of days from the API, resuming after complete days."""
    settings = FetchSettings(
        base_url=base_url,
        page_limit=page_limit,
        connect_timeout=2,
        read_timeout=10,
        max_retries=1,
        backoff_factor=0.01,
    )
    loaded, failed = [], []
    with Warehouse.open(db, wait_s=30) as wh:
        run_id = wh.start_run("backfill", {"start": str(days[0]), "end": str(days[-1])})
        done = wh.complete_days(days[0], days[-1], "api")
        todo = [d for d in days if d not in done]
        with HFClient(settings) as client, ThreadPoolExecutor(max_workers=4) as pool:
            batches = [todo[n : n + 2] for n in range(0, len(todo), 2)]  # as the flow batches
            futures = [pool.submit(fetch_days, client, batch, "api") for batch in batches]
            for future in as_completed(futures):
                for result in load_days(wh, future.result(), run_id, "api"):
                    if result.status == "loaded":
                        loaded.append(str(result.day))
                    else:
                        failed.append(f"{result.day}: {result.error}")
        wh.finish_run(run_id, "partial" if failed else "ok", {"loaded": len(loaded)})
    return {"loaded": sorted(loaded), "failed": failed}


def run_delivery(db: Path, outbox: Path, load_run: int, day: date) -> dict[str, Any]:
    """Deliver the digest of `load_run` (everything it loaded counts as new) to every
    subscriber, with the warehouse as the exactly-once ledger (SMTP from the environment)."""
    settings = load_settings(db=db, outbox=outbox)
    with Warehouse.open(db, wait_s=30) as wh:
        run_id = wh.start_run("daily", {"date": day.isoformat()})
        digest = compute_diff(wh, run_id=load_run, digest_date=day, since_run=0)
        outcome = deliver_run_digest(wh, digest, run_id, settings)
        status = "partial" if outcome.failed else "ok"
        wh.finish_run(run_id, status, {"sent": outcome.sent, "failed": len(outcome.failed)})
    return {"sent": outcome.sent, "already": outcome.already_sent, "failed": outcome.failed}


def run(mode: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one mode with its configuration (as written by the test)."""
    db = Path(config["db"])
    if mode == "import":
        return run_import(db, [Path(f) for f in config["files"]])
    if mode == "backfill":
        days = [date.fromisoformat(d) for d in config["days"]]
        return run_backfill(db, config["base_url"], days, config["page_limit"])
    if mode == "delivery":
        return run_delivery(
            db, Path(config["outbox"]), config["load_run"], date.fromisoformat(config["day"])
        )
    raise ValueError(f"unknown mode {mode!r}")


def install_crash_point(spec: str) -> None:
    """SIGKILL this process on the N-th call of Warehouse.<method> ("Warehouse.mark_sent:3")."""
    target, _, nth = spec.partition(":")
    owner, _, method = target.partition(".")
    if owner != "Warehouse":
        raise ValueError(f"crash points are Warehouse methods, not {target!r}")
    original = getattr(Warehouse, method)
    calls = 0

    def crash_on_nth_call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(Warehouse, method, crash_on_nth_call)


def main(argv: list[str]) -> int:
    mode, config_path = argv
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    if os.environ.get(CRASH_ENV):
        install_crash_point(os.environ[CRASH_ENV])
    print("T0", flush=True)
    result = run(mode, config)
    print("done", json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
