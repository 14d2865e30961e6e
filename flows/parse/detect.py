"""Recognise a page's format from its content alone (never its name), or refuse it in one line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

from flows.models import PageFormatError
from flows.parse.clean import clean_text, decode_bytes, normalise_newlines
from flows.parse.html import is_papers_html, page_title
from flows.parse.text import is_text_page

_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed"),
    (b"PK\x03\x04", "zip archive"),
    (b"%PDF", "PDF document"),
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
)
_UNICODE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_SAMPLE_CHARS = 8192
# C0/C1 controls except \t \n \v \f \r and NEL, and U+FFFD (what undecodable bytes become).
_BINARY_CHAR = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufffd]")
_JSON_KINDS = {str: "strings", bool: "booleans", int: "numbers", Decimal: "numbers"}


@dataclass(frozen=True, slots=True)
class Sniffed:
    """A recognised page: its format, its decoded text, and the decoded JSON for "api"."""

    fmt: str
    text: str
    payload: list[object] | None = None


def detect_format(data: bytes | str, *, name: str) -> str:
    """Return "api", "html" or "text" from the content, or raise PageFormatError naming it."""
    return sniff(data, name=name).fmt


def sniff(data: bytes | str, *, name: str, decoded: object = None) -> Sniffed:
    """Detect the format and keep the decoded text (and JSON) so parsing need not redo it.

    `decoded` is the JSON value of `data` when the caller has it (a JSON array only).
    """
    text = decode_page(data, name=name)
    start = text.lstrip()[:1]
    if start in ("[", "{", '"'):
        return Sniffed("api", text, _api_items(text, name, decoded))
    if start == "<" or "<html" in text[:2048].lower():
        return _sniff_markup(text, name)
    if is_text_page(text):
        return Sniffed("text", text)
    raise PageFormatError(
        name, "plain text without the Daily Papers header, not a Daily Papers page"
    )


def decode_page(data: bytes | str, *, name: str) -> str:
    """Decoded text with LF newlines; refuses empty, non-text and binary input."""
    if isinstance(data, bytes | bytearray | memoryview):
        text = _decode_bytes(bytes(data), name)
    elif isinstance(data, str):
        text = normalise_newlines(data)
    else:
        raise PageFormatError(name, f"expected bytes or str, got {type(data).__name__}")
    if not text.strip():
        raise PageFormatError(name, "empty file" if not text else "empty file (only whitespace)")
    if _looks_binary(text):
        raise PageFormatError(name, "binary data")
    return text


def _decode_bytes(data: bytes, name: str) -> str:
    if not data:
        raise PageFormatError(name, "empty file")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise PageFormatError(name, f"binary data ({kind})")
    # NUL bytes only belong in text when a UTF-16/32 byte order mark says so.
    if b"\x00" in data[:_SAMPLE_CHARS] and not data.startswith(_UNICODE_BOMS):
        raise PageFormatError(name, "binary data")
    return decode_bytes(data)


def _looks_binary(text: str) -> bool:
    sample = text[:_SAMPLE_CHARS]
    controls = len(_BINARY_CHAR.findall(sample))  # a C loop; a generator took ~0.5 ms a page
    # Real pages carry almost none; 1% leaves room for a stray form feed or bad byte.
    return "\x00" in sample or controls > max(2, len(sample) // 100)


def _api_items(text: str, name: str, decoded: object = None) -> list[object]:
    # The same value either way: strict JSON has no raw CR in strings, so the newline
    # normalisation that `text` went through cannot change it.
    value = decoded if isinstance(decoded, list) else _load_json(text, name)
    if isinstance(value, list):
        if problem := _list_problem(value):
            raise PageFormatError(name, problem)
        return value
    if isinstance(value, dict):
        raise PageFormatError(name, "JSON object is not an API response" + _object_hint(value))
    raise PageFormatError(name, f"JSON {_kind(value)[:-1]}, not an API response")


def _load_json(text: str, name: str) -> object:
    try:
        # Decimal keeps a number's digits: an id written 2503.02130 must not become 2503.0213.
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise PageFormatError(name, _json_error_reason(text, error)) from None
    except RecursionError:
        raise PageFormatError(name, "JSON nested too deeply") from None
    except ValueError as error:  # e.g. an integer with more digits than Python allows
        raise PageFormatError(name, f"invalid JSON: {clean_text(str(error))}") from None


def _json_error_reason(text: str, error: json.JSONDecodeError) -> str:
    end = len(text.rstrip())
    if error.pos >= end or error.msg.startswith("Unterminated string"):
        return f"truncated JSON at byte {_byte_offset(text, end)}"
    return f"invalid JSON at byte {_byte_offset(text, error.pos)}: {error.msg}"


def _byte_offset(text: str, char_index: int) -> int:
    return len(text[:char_index].encode("utf-8", errors="surrogatepass"))


def _list_problem(items: list[object]) -> str | None:
    """None for an API array (empty, or with API items); else what the list holds instead."""
    if not items or any(_is_api_item(item) for item in items):
        return None
    kinds = {_kind(item) for item in items}
    if kinds == {"objects"}:
        return "JSON list of objects without a 'paper' object, not API items"
    held = kinds.pop() if len(kinds) == 1 else "mixed values"
    return f"JSON list of {held}, not API items"


def _is_api_item(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("paper"), dict)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "objects"
    if isinstance(value, list):
        return "lists"
    if value is None:
        return "nulls"
    return _JSON_KINDS.get(type(value), "numbers")


def _object_hint(value: dict[str, object]) -> str:
    """A short pointer at what the object is: its error message, else its first keys."""
    error = value.get("error") or value.get("message")
    if isinstance(error, str) and clean_text(error):
        return f" (error: {clean_text(error)[:100]!r})"
    keys = ", ".join(clean_text(str(key))[:30] or "''" for key in list(value)[:5])
    return f" (keys: {keys})" if keys else " (empty object)"


def _sniff_markup(text: str, name: str) -> Sniffed:
    if is_papers_html(text):
        return Sniffed("html", text)
    if text.lstrip().startswith("<?xml") and "<html" not in text[:2048].lower():
        raise PageFormatError(name, "XML document, not a Daily Papers page")
    title = page_title(text)
    if title:
        raise PageFormatError(name, f"HTML error page, not a Daily Papers page (title: {title!r})")
    raise PageFormatError(name, "HTML page without a title or Daily Papers content")
