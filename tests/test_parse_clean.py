"""The shared cleaning layer: title keys, arXiv ids, text, counts, URLs and decoding."""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.parse import canonical_arxiv_id, title_key
from flows.parse.clean import (
    as_count,
    as_date,
    as_http_url,
    as_keywords,
    as_names,
    clean_text,
    clean_title,
    decode_bytes,
    parse_count,
)

# Text that reaches every path of clean_text: clean ASCII (the fast paths), and ASCII
# whitespace, controls, combining marks, invisible and other non-ASCII characters.
TRICKY_TEXT = st.text(st.sampled_from(list("ab .\n")), max_size=12) | st.text(
    st.sampled_from(list("ab .\t\n\r\x0b\x0c\x1c\x1f\x00\x01\x7f\x85\xa0\u0301\u200b\u3000"))
    | st.characters(),
    max_size=12,
)


def test_title_key_is_sha1_of_the_normalised_title():
    expected = "t:" + hashlib.sha1(b"attentionisallyouneed").hexdigest()[:16]
    assert title_key("Attention Is All You Need") == expected


@pytest.mark.parametrize(
    "variant",
    [
        "attention is all you need",
        "ATTENTION IS ALL YOU NEED",
        "  Attention\tis all\nyou   need. ",
        "Attention: is all — you need?!",
        "Attention\u200b Is All You Need",  # zero-width space
        "\uff21ttention Is All You Need",  # full-width A, folded by NFKC
    ],
)
def test_title_key_ignores_case_whitespace_punctuation_and_width(variant):
    assert title_key(variant) == title_key("Attention Is All You Need")


def test_title_key_distinguishes_different_titles_and_handles_non_ascii():
    assert title_key("Attention Is All You Need") != title_key("Attention Is Not All You Need")
    assert title_key("Straße") == title_key("STRASSE")
    assert title_key("Café") == title_key("Cafe\u0301")  # composed vs combining accent
    assert len(title_key("深度学习")) == 18


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2503.02130", "2503.02130"),
        ("2503.02130v2", "2503.02130"),
        (" arXiv:2503.02130v12 ", "2503.02130"),
        ("https://arxiv.org/abs/2503.02130v2", "2503.02130"),
        ("http://arxiv.org/pdf/2503.02130v1.pdf", "2503.02130"),
        ("https://export.arxiv.org/abs/1706.03762", "1706.03762"),
        ("0704.0001", "0704.0001"),
        ("hep-th/9901001", "hep-th/9901001"),
        ("hep-th/9901001v3", "hep-th/9901001"),
        ("math.GT/0309136", "math.GT/0309136"),
        ("https://arxiv.org/abs/cond-mat/0102536v1", "cond-mat/0102536"),
        ("2503.0213", None),  # a float ate the trailing zero
        ("2513.02130", None),  # month 13
        ("1234", None),
        ("", None),
        ("https://example.org/abs/2503.02130", None),
        ("t:0123456789abcdef", None),
    ],
)
def test_canonical_arxiv_id(text, expected):
    assert canonical_arxiv_id(text) == expected


def test_canonical_arxiv_id_rejects_non_strings():
    assert canonical_arxiv_id(2503.0213) is None  # type: ignore[arg-type]


def test_clean_title_strips_invisible_characters_and_normalises():
    raw = "\u202eDeep\u200d  Cafe\u0301\n  Models\u2069\ufeff"
    assert clean_title(raw) == "Deep Café Models"


def test_abstract_text_keeps_everything_but_whitespace_and_controls():
    raw = "Line one,\n  wrapped\u00a0here.\x00 Keeps \u200b zero-width and <tags> & 100%."
    assert clean_text(raw) == "Line one, wrapped here. Keeps \u200b zero-width and <tags> & 100%."


def general_clean_text(value: str) -> str | None:
    """clean_text without its fast paths: drop controls, NFC, collapse whitespace."""
    text = re.sub("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff]", "", value)
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip() or None


@settings(max_examples=500, deadline=None)
@given(TRICKY_TEXT)
def test_clean_text_fast_paths_match_the_general_rule(value):
    assert clean_text(value) == general_clean_text(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(TRICKY_TEXT | st.none() | st.integers(), max_size=4), TRICKY_TEXT)
def test_names_and_keywords_clean_every_value_alike(values, fallback):
    expected = tuple(name for name in map(clean_title, values) if name)
    assert as_names(values) == expected
    authors = [{"name": value, "fullname": fallback} for value in values]
    assert as_names(authors) == tuple(
        name for value in values if (name := clean_title(value or fallback))
    )
    assert as_keywords(values) == tuple(word for word in map(clean_text, values) if word)


@pytest.mark.parametrize("value", [None, "", "   \n\t", 5, ["x"]])
def test_clean_text_of_nothing_is_none(value):
    assert clean_text(value) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("843", 843),
        ("1,056", 1056),
        ("3.29k", 3290),
        ("40.1k", 40100),
        ("1.2M", 1_200_000),
        (" 12 ", 12),
        ("-", None),
        ("", None),
        ("n/a", None),
        ("9" * 40, None),
        ("1.5", None),
    ],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (True, None), (-1, None), (2.0, 2), (2.5, None), (float("nan"), None), ("7", 7)],
)
def test_as_count(value, expected):
    assert as_count(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-24T17:34:15.000Z", date(2024, 5, 24)),
        ("2024-02-30", None),
        ("May 24", None),
        (20240524, None),
    ],
)
def test_as_date(value, expected):
    assert as_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://github.com/a/b", "https://github.com/a/b"),
        (" http://example.org/x ", "http://example.org/x"),
        ("javascript:alert(1)", None),
        ("data:text/html,hi", None),
        ("/relative/path", None),
        ("https://", None),
        ("https://exa mple.org", None),
        ("http://[::1", None),
        (None, None),
    ],
)
def test_as_http_url(value, expected):
    assert as_http_url(value) == expected


@pytest.mark.parametrize(
    "data",
    [
        "héllo\nwörld".encode(),
        codecs.BOM_UTF8 + "héllo\r\nwörld".encode(),
        "héllo\nwörld".encode("utf-16"),
        codecs.BOM_UTF16_BE + "héllo\rwörld".encode("utf-16-be"),
        "héllo\nwörld".encode("cp1252"),
        "héllo\nwörld".encode("latin-1"),
    ],
)
def test_decode_bytes_handles_boms_legacy_encodings_and_newlines(data):
    assert decode_bytes(data) == "héllo\nwörld"
