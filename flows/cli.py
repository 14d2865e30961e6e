"""The `paperdigest` command line (also `python -m flows`).

Exit codes: 0 success, 1 failure (a one-line reason on stderr), 2 usage error.
Prefect is imported only by the commands that run flows, so `status` and friends start fast.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flows import __version__
from flows.config import PROJECT_ROOT, ConfigError, Settings, load_settings
from flows.prefect_env import prepare_prefect_env

log = logging.getLogger("paperdigest")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the command, map errors to exit codes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose)
    try:
        settings = load_settings(db=args.db, outbox=args.outbox, lock_wait=args.wait)
        return args.handler(args, settings)
    except ConfigError as exc:
        print(f"paperdigest: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("paperdigest: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # every failure is one clear line, never a traceback
        if args.verbose:
            log.exception("failed")
        print(f"paperdigest: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command (also used to check the README documents them)."""
    parser = argparse.ArgumentParser(
        prog="paperdigest",
        description="Hugging Face Daily Papers → DuckDB warehouse → digest email.",
    )
    parser.add_argument("--version", action="version", version=f"paperdigest {__version__}")
    parser.add_argument("--db", type=Path, help="warehouse file (env PAPERDIGEST_DB)")
    parser.add_argument("--outbox", type=Path, help="local outbox folder (env PAPERDIGEST_OUTBOX)")
    parser.add_argument(
        "--wait",
        type=float,
        help="seconds to wait for a busy warehouse (env PAPERDIGEST_LOCK_WAIT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (handler, help_text, add_args) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_args(sub)
        sub.set_defaults(handler=handler)
    return parser


# ---- commands -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daily digest flow."""
    if args.as_of and not args.offline:
        print(
            "paperdigest: run: --as-of needs --offline (fetched pages are timed by the fetch)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with _prefect_session() as flows:
        result = flows.daily_digest(
            date=_iso(args.date),
            offline_dir=str(args.offline) if args.offline else None,
            source=args.source,
            db=str(settings.db),
            outbox=str(settings.outbox),
            resend=args.resend,
            wait=settings.lock_wait,
            as_of=_iso_time(args.as_of),
        )
    if result["status"] == "failed":
        print(f"paperdigest: {result['error']}", file=sys.stderr)
        return EXIT_FAILURE
    print(result["summary"])
    return EXIT_OK if result["status"] == "ok" else EXIT_FAILURE


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Load saved pages into the warehouse."""
    with _prefect_session() as flows:
        result = flows.import_pages(
            paths=[str(p) for p in args.paths],
            date=_iso(args.date),
            db=str(settings.db),
            wait=settings.lock_wait,
            as_of=_iso_time(args.as_of),
        )
    if result["status"] == "failed":
        print(f"paperdigest: {result['error']}", file=sys.stderr)
        return EXIT_FAILURE
    for failure in result["failures"]:
        print(f"paperdigest: {failure}", file=sys.stderr)
    print(result["summary"])
    return EXIT_FAILURE if result["failures"] else EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print recent runs, totals, the span of digest dates, gaps and rejects."""
    from flows.report import print_status
    from flows.warehouse import Warehouse

    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        status = wh.status()
    print_status(status, as_json=args.json)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, settings: Settings) -> int:
    """Print the diff of a run (new, trending, late, changes)."""
    from flows.diff import DiffSettings, compute_diff, latest_run, resolve_since
    from flows.report import print_digest
    from flows.warehouse import Warehouse

    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        run_id = args.run or latest_run(wh)
        if run_id is None:
            print("paperdigest: the warehouse has no runs yet", file=sys.stderr)
            return EXIT_FAILURE
        since = resolve_since(wh, args.since) if args.since else None
        digest = compute_diff(
            wh,
            run_id=run_id,
            digest_date=args.date or settings.today(),
            since_run=since,
            settings=DiffSettings(window_days=settings.window_days, min_gain=settings.min_gain),
        )
    print_digest(digest, as_json=args.json)
    return EXIT_OK


def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    """Render the digest of the latest run to HTML and text files; print their paths."""
    from flows.pipeline import preview_digest

    html, text = preview_digest(
        settings, day=args.date, out_dir=args.out, address=getattr(args, "for_address", None)
    )
    print(html)
    print(text)
    return EXIT_OK


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Build the static archive site and its feeds from the warehouse; print where it is."""
    from flows.site import publish_site, site_settings_for
    from flows.warehouse import Warehouse

    if args.url:
        settings = settings.with_overrides(site_url=args.url)
    site_settings = site_settings_for(settings, args.out)
    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        report = publish_site(wh, site_settings)
    print(report.line())
    return EXIT_OK


def cmd_reparse(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild papers, sightings and rejects from the archived page bytes."""
    from flows.pipeline import reparse_archive
    from flows.warehouse import Warehouse

    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        pages, entries = reparse_archive(wh, args.date)
    print(f"reparsed {pages} archived pages, {entries} entries")
    return EXIT_OK


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Check the warehouse's integrity; exit 1 when any check fails."""
    from flows.warehouse import Warehouse

    with Warehouse.open(settings.db, wait_s=settings.lock_wait) as wh:
        problems = wh.integrity_problems()
    for problem, n in problems:
        print(f"FAIL {problem}: {n}")
    if not problems:
        print(f"ok: {settings.db} passes every integrity check")
    return EXIT_FAILURE if problems else EXIT_OK


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch and load a range of past days."""
    with _prefect_session():
        from flows.backfill import run_backfill_cli

        return run_backfill_cli(args, settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Register the daily and backfill deployments and serve them."""
    prepare_prefect_env()
    from flows.backfill import serve_deployments

    return serve_deployments(args, settings)


def cmd_subscribers(args: argparse.Namespace, settings: Settings) -> int:
    """Add, list or remove subscribers, or replace a subscriber's library."""
    from flows import subscribers
    from flows.library import read_library_file

    path = settings.subscribers_path
    # The library file is parsed before anything is written: a bad one changes nothing.
    library = read_library_file(args.library) if getattr(args, "library", None) else None
    if args.action == "add":
        subscribers.add_subscriber(
            path,
            args.address,
            include=args.include,
            exclude=args.exclude,
            cadence=args.cadence,
            library=library,
        )
        print(f"added {args.address} to {path}{_library_note(library)}")
    elif args.action == "library":
        subscribers.set_library(path, args.address, library)
        print(f"replaced the library of {args.address} in {path}{_library_note(library)}")
    elif args.action == "remove":
        subscribers.remove_subscriber(path, args.address)
        print(f"unsubscribed {args.address} in {path}")
    else:
        for r in subscribers.load_subscribers(path):
            state = "active" if r.active else "unsubscribed"
            topics = ", ".join(r.topics.include) or "-"
            library = f"\tlibrary: {r.library.name}" if r.library else ""
            print(f"{r.address}\t{r.cadence}\t{state}\tinclude: {topics}{library}")
    return EXIT_OK


def _library_note(library: Any) -> str:
    if library is None:
        return ""
    with_id = sum(1 for e in library.entries if e.arxiv_id)
    return (
        f" with a library of {len(library.entries)} papers "
        f"({with_id} with an arXiv id) from {library.source} ({library.fmt})"
    )


# ---- arguments of each command ------------------------------------------------------------


def _args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=_date, help="digest date (default: today in the timezone)")
    p.add_argument("--offline", type=Path, metavar="DIR", help="read saved pages from DIR")
    p.add_argument("--source", choices=("api", "html"), help="fetch source (default api)")
    p.add_argument("--resend", action="store_true", help="send again even if already sent")
    _arg_as_of(p)


def _args_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="saved pages or folders")
    p.add_argument("--date", type=_date, help="digest date of pages that do not say their year")
    _arg_as_of(p)


def _arg_as_of(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--as-of",
        type=_time,
        metavar="TIMESTAMP",
        help="when the saved pages were captured, e.g. 2026-08-14T09:00Z (UTC unless an offset "
        "is given); default: a time the page states, else its digest day at 23:59 UTC, "
        "marked estimated",
    )


def _args_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _args_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=_date, help="digest date to label the diff with")
    p.add_argument("--since", metavar="RUN|DATE", help="count as new everything after this")
    p.add_argument("--run", type=int, help="the run to diff (default: the latest)")
    _args_json(p)


def _args_preview(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=_date, help="digest date (default: the latest run's)")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "preview", help="output folder")
    p.add_argument(
        "--for",
        dest="for_address",
        metavar="ADDRESS",
        help="as this subscriber gets it (their topics; 'For you' first with a library)",
    )


def _args_publish(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="site folder (env PAPERDIGEST_SITE_DIR; default: site/ beside the warehouse)",
    )
    p.add_argument("--url", help="the URL the site is served from (env PAPERDIGEST_SITE_URL)")


def _args_reparse(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=_date, help="the 'today' year-less dates are resolved against")


def _args_none(p: argparse.ArgumentParser) -> None:
    pass


def _args_backfill(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=_date, required=True, help="first day (YYYY-MM-DD)")
    p.add_argument("--end", type=_date, required=True, help="last day (YYYY-MM-DD)")
    p.add_argument("--source", choices=("api", "html"), help="fetch source (default api)")
    p.add_argument("--workers", type=int, default=4, help="concurrent fetches (default 4)")
    p.add_argument("--refresh", action="store_true", help="re-fetch days already complete")
    p.add_argument("--dask", metavar="ADDRESS", help="run fetch tasks on this Dask scheduler")
    p.add_argument("--email", action="store_true", help="also mail the digest of the last day")
    p.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="do not rebuild the archive site at the end (run `paperdigest publish` later)",
    )


def _args_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cron", help="daily schedule (env PAPERDIGEST_CRON, default '0 7 * * 1-5')")
    p.add_argument("--timezone", help="schedule timezone (env PAPERDIGEST_TIMEZONE, default UTC)")
    p.add_argument(
        "--dry-run", action="store_true", help="build and print the deployments, do not serve"
    )


def _args_subscribers(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add or update a subscriber")
    add.add_argument("address")
    add.add_argument("--include", nargs="*", default=(), metavar="KW", help="topic keywords")
    add.add_argument("--exclude", nargs="*", default=(), metavar="KW", help="keywords to drop")
    add.add_argument("--cadence", choices=("daily", "weekdays", "weekly"), default="daily")
    add.add_argument(
        "--library",
        type=Path,
        metavar="FILE",
        help="papers you read, to rank your digest: BibTeX, Zotero CSV, RIS, or arXiv ids/URLs",
    )
    library = actions.add_parser("library", help="replace a subscriber's library file")
    library.add_argument("address")
    library.add_argument(
        "library", type=Path, metavar="FILE", help="BibTeX, Zotero CSV, RIS, or arXiv ids/URLs"
    )
    remove = actions.add_parser("remove", help="unsubscribe an address (kept as unsubscribed)")
    remove.add_argument("address")
    actions.add_parser("list", help="list subscribers")


Handler = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, tuple[Handler, str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": (cmd_run, "run the daily digest flow (fetch, load, diff, render, deliver)", _args_run),
    "import": (
        cmd_import,
        "load saved pages (text, API JSON, HTML) into the warehouse",
        _args_import,
    ),
    "status": (cmd_status, "recent runs, totals, date span, gaps and rejects", _args_json),
    "diff": (cmd_diff, "what is new, trending, late and changed in a run", _args_diff),
    "preview": (cmd_preview, "render the digest to HTML and text files", _args_preview),
    "publish": (
        cmd_publish,
        "build the static archive site and its Atom and JSON feeds",
        _args_publish,
    ),
    "reparse": (cmd_reparse, "rebuild derived tables from the archived pages", _args_reparse),
    "check": (cmd_check, "check the warehouse's integrity", _args_none),
    "backfill": (cmd_backfill, "fetch and load a range of past days", _args_backfill),
    "serve": (cmd_serve, "register the daily and backfill deployments and serve them", _args_serve),
    "subscribers": (
        cmd_subscribers,
        "add, list or remove subscribers; set their libraries",
        _args_subscribers,
    ),
}


# ---- helpers of this module ---------------------------------------------------------------


@contextmanager
def _prefect_session() -> Iterator[Any]:
    """Prefect imported and an API to talk to for the block; yields the module of the flows."""
    daily = _prefect_flows()
    from flows.heartbeats import own_heartbeats
    from flows.prefect_server import prefect_api

    with prefect_api(), own_heartbeats():
        yield daily


def _prefect_flows() -> Any:
    prepare_prefect_env()
    gc.disable()  # imports make objects, not garbage: no collection while they run
    try:
        _import_prefect_frozen()
        from flows import daily
    finally:
        gc.enable()
    return daily


def _import_prefect_frozen() -> None:
    """Import Prefect (once per process) and freeze every object alive at that point.

    Prefect's import makes ~200k objects that every full collection walks again, the
    interpreter's last one at exit included (0.3 s). It runs before `flows.daily` imports DuckDB:
    frozen DuckDB objects would never be freed, and DuckDB's bindings print them as leaks at exit.
    """
    if "prefect.main" in sys.modules:
        return
    import prefect.main  # noqa: F401 - imported here to be frozen

    gc.freeze()


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _time(value: str) -> datetime:
    from flows.capture import parse_as_of

    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _iso_time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]
