"""Benchmark parse_page per format: MB/s and ms per page.

Run: .venv/bin/python bench/bench_parse.py [--quick]
A bench runner can call run(quick) and get one dict per case.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(ROOT))

from flows.parse import parse_page  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
DAY_PAGE = FIXTURES / "hf-html" / "papers_2024-08-01.html"
CARDS_PAGE = FIXTURES / "parse" / "papers_2026_cards.html"
TRENDING_TARGET_BYTES = 1_500_000
_PROPS = re.compile(r'(data-target="DailyPapers" data-props=")([^"]*)(")')
TODAY = date(2025, 11, 20)


def run(quick: bool) -> list[dict]:
    """Time every case; returns rows with format, pages, bytes, ms_per_page and mb_per_s."""
    repeats = 3 if quick else 15
    return [_measure(name, fmt, pages, repeats) for name, fmt, pages in _cases()]


def _cases() -> list[tuple[str, str, list[bytes]]]:
    return [
        ("saved text pages (3 seeds)", "text", _read_all(FIXTURES / "seeds", "*.txt")),
        ("API JSON (5 days)", "api", _read_all(FIXTURES / "hf-api", "*.json")),
        ("HTML day page (props)", "html", [DAY_PAGE.read_bytes()]),
        ("HTML trending ~1.5 MB (props)", "html", [synthetic_trending_page()]),
        ("HTML 2026 cards (fallback)", "html", [CARDS_PAGE.read_bytes()]),
    ]


def _read_all(folder: Path, pattern: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.glob(pattern))]


def synthetic_trending_page(target_bytes: int = TRENDING_TARGET_BYTES) -> bytes:
    """The real day page with its props grown to a trending page of about target_bytes."""
    page = DAY_PAGE.read_text(encoding="utf-8")
    match = _PROPS.search(page)
    if match is None:
        raise SystemExit(f"{DAY_PAGE}: no DailyPapers props to grow")
    props = json.loads(html.unescape(match.group(2)))
    items = _trending_items(props["dailyPapers"], target_bytes - (len(page) - len(match.group(2))))
    trending = {key: value for key, value in props.items() if key != "date"} | {
        "dailyPapers": items
    }
    escaped = html.escape(json.dumps(trending, ensure_ascii=False), quote=True)
    return (page[: match.start(2)] + escaped + page[match.end(2) :]).encode("utf-8")


def _trending_items(day_items: list[dict], budget: int) -> list[dict]:
    # Trending items carry isTrending and may lack submittedOnDailyAt; ids must differ.
    items: list[dict] = []
    used = 0
    while used < budget:
        item = json.loads(json.dumps(day_items[len(items) % len(day_items)]))
        item["paper"]["id"] = f"2601.{len(items):05d}"
        item["paper"].pop("submittedOnDailyAt", None)
        item["isTrending"] = True
        items.append(item)
        used += len(html.escape(json.dumps(item, ensure_ascii=False), quote=True))
    return items


def _measure(name: str, fmt: str, pages: list[bytes], repeats: int) -> dict:
    size = sum(len(page) for page in pages)
    parse_all = _parser_for(pages)
    parse_all()  # warm up: imports, regex compilation
    seconds = statistics.median(_timed(parse_all) for _ in range(repeats))
    return {
        "case": name,
        "format": fmt,
        "pages": len(pages),
        "bytes": size,
        "ms_per_page": 1000 * seconds / len(pages),
        "mb_per_s": size / 1e6 / seconds,
    }


def _parser_for(pages: list[bytes]) -> Callable[[], None]:
    def parse_all() -> None:
        for index, page in enumerate(pages):
            parse_page(page, name=f"bench-{index}", today=TODAY)

    return parse_all


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def format_table(rows: list[dict]) -> str:
    """Rows as a plain-text table."""
    header = f"{'case':<32} {'fmt':<5} {'pages':>5} {'KB':>8} {'ms/page':>9} {'MB/s':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['case']:<32} {row['format']:<5} {row['pages']:>5} {row['bytes'] / 1000:>8.0f}"
            f" {row['ms_per_page']:>9.2f} {row['mb_per_s']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for CI)")
    args = parser.parse_args(argv)
    print(format_table(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
