"""Property tests: whatever comes in, only PageFormatError escapes parse_page/detect_format."""

from __future__ import annotations

import html
import json
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.models import PageFormatError, ParsedPage
from flows.parse import canonical_arxiv_id, detect_format, parse_page, title_key

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TODAY = date(2025, 11, 20)

# Prefixes steer random input into each format's parser instead of stopping at detection.
PREFIXES = st.sampled_from(
    [
        "",
        "[",
        '[{"paper": ',
        "{",
        "<",
        "<!doctype html><title>Daily Papers - Hugging Face</title>",
        '<div data-target="DailyPapers" data-props="',
        '<article><h3><a href="/papers/2401.00001">',
        "Get trending papers in your email inbox!\n",
        "new\n\nSubscribe\n\nbyAK and the research community\n\nNov 3\n\n",
    ]
)
JSON_KEYS = st.sampled_from(
    [
        "paper",
        "id",
        "title",
        "summary",
        "authors",
        "name",
        "upvotes",
        "publishedAt",
        "submittedOnDailyAt",
        "numComments",
        "githubRepo",
        "githubStars",
        "projectPage",
        "ai_summary",
        "ai_keywords",
        "organization",
        "fullname",
        "dailyPapers",
        "date",
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(JSON_KEYS | st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


def only_page_format_errors(data: bytes | str) -> None:
    for action in (detect_format, parse_page):
        try:
            result = action(data, name="fuzz", **({"today": TODAY} if action is parse_page else {}))
        except PageFormatError as error:
            assert "\n" not in str(error)
            assert str(error).startswith("fuzz: ")
        else:
            assert isinstance(result, ParsedPage | str)


@FAST
@given(st.text())
def test_arbitrary_text(text):
    only_page_format_errors(text)


@FAST
@given(st.binary())
def test_arbitrary_bytes(data):
    only_page_format_errors(data)


@FAST
@given(PREFIXES, st.text())
def test_arbitrary_text_behind_each_format_prefix(prefix, text):
    only_page_format_errors(prefix + text)
    only_page_format_errors((prefix + text).encode("utf-8", errors="surrogatepass"))


@FAST
@given(JSON_VALUES)
def test_arbitrary_json_in_api_items(value):
    for items in ([value], [{"paper": value}], [{"paper": {"id": value, "title": value}}]):
        only_page_format_errors(json.dumps(items))


@FAST
@given(JSON_VALUES)
def test_arbitrary_json_in_html_props(value):
    props = html.escape(json.dumps({"dailyPapers": [{"paper": value}], "date": value}))
    page = f'<html><div data-target="DailyPapers" data-props="{props}"></div></html>'
    only_page_format_errors(page)


@FAST
@given(st.text())
def test_title_key_and_arxiv_id_never_raise(text):
    assert title_key(text).startswith("t:")
    assert len(title_key(text)) == 18
    result = canonical_arxiv_id(text)
    assert result is None or isinstance(result, str)


@FAST
@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1), st.text(" .,:;!?-\n\t"))
def test_title_key_ignores_added_punctuation_and_whitespace(title, noise):
    assert title_key(noise + title + noise) == title_key(title)


@FAST
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ", min_size=1))
def test_title_key_ignores_case(title):
    assert title_key(title.upper()) == title_key(title) == title_key(title.title())
