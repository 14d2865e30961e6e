"""Format detection from content alone, and one-line refusals naming the input."""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pytest

from flows.models import PageFormatError
from flows.parse import detect_format, parse_page

FIXTURES = Path(__file__).parent / "fixtures"
API_PAGE = FIXTURES / "hf-api" / "daily_papers_2025-03-31.json"


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        *[(path, "text") for path in sorted((FIXTURES / "seeds").glob("*.txt"))],
        *[(path, "api") for path in sorted((FIXTURES / "hf-api").glob("*.json"))],
        (FIXTURES / "hf-html" / "papers_2024-08-01.html", "html"),
        (FIXTURES / "parse" / "papers_2026_cards.html", "html"),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_every_fixture_is_recognised_from_its_content(path, fmt):
    data = path.read_bytes()
    assert detect_format(data, name=path.name) == fmt
    assert detect_format(data, name="misleading.json.html.txt") == fmt
    assert detect_format(data.decode("utf-8"), name="as-str") == fmt


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
        lambda text: text.encode("utf-16"),
        lambda text: text.replace("\n", "\r\n").encode("utf-8"),
    ],
    ids=["utf8-bom", "utf16-bom", "crlf"],
)
def test_api_json_in_other_encodings_parses_the_same(encode):
    text = API_PAGE.read_text(encoding="utf-8")
    assert parse_page(encode(text), name="x") == parse_page(text, name="x")


def html_page(title: str, body: str = "") -> str:
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"


TRUNCATED = API_PAGE.read_bytes()[:5000]

REFUSALS = [
    (
        "429",
        html_page("Too Many Requests", "<h1>429 Too Many Requests</h1>"),
        "HTML error page, not a Daily Papers page (title: 'Too Many Requests')",
    ),
    (
        "503",
        html_page("503 Service Temporarily Unavailable", "<center>nginx</center>"),
        "HTML error page, not a Daily Papers page (title: '503 Service Temporarily Unavailable')",
    ),
    (
        "waf",
        html_page("Just a moment...", '<script src="/challenge.js"></script>'),
        "HTML error page, not a Daily Papers page (title: 'Just a moment...')",
    ),
    (
        "login",
        html_page("Hugging Face \u2013 The AI community building the future.", "<form>"),
        "HTML error page, not a Daily Papers page "
        "(title: 'Hugging Face \u2013 The AI community building the future.')",
    ),
    ("no-title", "<html><body>oops</body></html>", "HTML page without a title"),
    ("strings", json.dumps(["2503.02130", "2503.02131"]), "JSON list of strings, not API items"),
    ("numbers", "[1, 2.5]", "JSON list of numbers, not API items"),
    ("objects", '[{"id": "1"}]', "JSON list of objects without a 'paper' object"),
    ("envelope", '{"dailyPapers": []}', "JSON object is not an API response (keys: dailyPapers)"),
    (
        "api-error",
        '{"error": "Invalid date\\nformat"}',
        "JSON object is not an API response (error: 'Invalid date format')",
    ),
    ("scalar", '"hello"', "JSON string, not an API response"),
    ("binary", bytes(range(256)) * 4, "binary data"),
    ("gzip", gzip.compress(API_PAGE.read_bytes()), "binary data (gzip-compressed)"),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(100), "binary data (PNG image)"),
    ("controls", "\x01\x02\x03\x04 not text \x05\x06", "binary data"),
    ("empty", b"", "empty file"),
    ("empty-str", "", "empty file"),
    ("blank", b" \r\n\t\n", "empty file (only whitespace)"),
    ("bom-only", codecs.BOM_UTF8, "empty file"),
    ("truncated", TRUNCATED, f"truncated JSON at byte {len(TRUNCATED.rstrip())}"),
    ("truncated-short", b'[{"paper": {"id": "25', "truncated JSON at byte 21"),
    ("bad-json", b'[{"paper": }]', "invalid JSON at byte 11: Expecting value"),
    ("trailing", b"[] []", "invalid JSON at byte 3: Extra data"),
    ("deep", "[" * 100_000, "JSON nested too deeply"),
    ("xml", '<?xml version="1.0"?><rss></rss>', "XML document, not a Daily Papers page"),
    ("prose", "Just some notes\nabout papers\n", "plain text without the Daily Papers header"),
    ("not-bytes", 12345, "expected bytes or str, got int"),
]


@pytest.mark.parametrize(("case", "data", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_one_line_and_name_the_input(case, data, reason):
    for action in (detect_format, parse_page):
        with pytest.raises(PageFormatError) as error:
            action(data, name=f"pages/{case}.bin")
        message = str(error.value)
        assert message.startswith(f"pages/{case}.bin: ")
        assert "\n" not in message
        assert reason in message
        assert error.value.name == f"pages/{case}.bin"


def test_the_real_day_page_with_a_waf_script_is_still_a_papers_page():
    data = (FIXTURES / "hf-html" / "papers_2024-08-01.html").read_bytes()
    assert b"awswaf" in data
    assert detect_format(data, name="day") == "html"


def test_an_hf_papers_page_without_props_or_cards_is_html_but_fails_to_parse():
    page = html_page("Daily Papers - Hugging Face", "<main>new markup</main>")
    assert detect_format(page, name="day") == "html"
    with pytest.raises(PageFormatError, match="page format changed"):
        parse_page(page, name="day")
