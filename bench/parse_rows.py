"""Parse: `bench/bench_parse.py`'s figures, each next to the floor of its format.

The floor is what any parser of the same bytes must at least do: `json.loads` of an API page,
or finding the DailyPapers props of an HTML page and `json.loads` of them. Text pages and the
2026 card layout have no such floor (parsing them is the work).
"""

from __future__ import annotations

import json
import re
import statistics

from bench import bench_parse
from bench.harness import Context, Row, peak_rss_mb, timed

SECTION = "Parse"
_PROPS = re.compile(rb'data-target="DailyPapers" data-props="([^"]*)"')
_ENTITIES = (("&quot;", '"'), ("&#39;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def run(ctx: Context) -> list[Row]:
    """One row per bench_parse case."""
    results = bench_parse.run(quick=ctx.quick)
    pages_by_case = {name: pages for name, _, pages in bench_parse._cases()}
    repeats = 3 if ctx.quick else 15
    return [_row(result, pages_by_case.get(result["case"], []), repeats) for result in results]


def _row(result: dict, pages: list[bytes], repeats: int) -> Row:
    floor_s = _floor_seconds(pages, repeats)
    result_text = f"{result['mb_per_s']:.1f} MB/s; {result['ms_per_page']:.2f} ms/page"
    baseline, verdict = "", "no floor"
    if floor_s:
        floor_mb_s = result["bytes"] / 1e6 / floor_s
        baseline = f"json.loads floor: {floor_mb_s:.0f} MB/s"
        verdict = f"{floor_mb_s / result['mb_per_s']:.1f}× the floor's time (no target)"
    return Row(
        SECTION,
        f"{result['case']}: {result['pages']} page(s), {result['bytes'] / 1000:,.0f} KB",
        result_text,
        baseline=baseline,
        verdict=verdict,
        peak_mb=peak_rss_mb(),
        note=f"median of {repeats}",
        figures={"mb_per_s": result["mb_per_s"], "ms_per_page": result["ms_per_page"]},
    )


def _floor_seconds(pages: list[bytes], repeats: int) -> float | None:
    """Median seconds of the floor over all pages, or None when the format has none."""
    decoders = [_floor_for(page) for page in pages]
    if not decoders or None in decoders:
        return None
    return statistics.median(
        timed(lambda: [decode(page) for decode, page in zip(decoders, pages, strict=True)])
        for _ in range(repeats)
    )


def _floor_for(page: bytes) -> object:
    if page.lstrip()[:1] in (b"[", b"{"):
        return json.loads
    if _PROPS.search(page):
        return _props_json
    return None


def _props_json(page: bytes) -> object:
    match = _PROPS.search(page)
    assert match is not None
    props = match.group(1).decode("utf-8")
    for entity, char in _ENTITIES:
        props = props.replace(entity, char)
    return json.loads(props)
