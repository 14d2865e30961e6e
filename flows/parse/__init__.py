"""Parse and clean digest pages: saved text pages, HF HTML pages and the HF JSON API.

Every function here is pure: no I/O, no network, no global state. Only PageFormatError
escapes, for any input; entries that cannot be cleaned come back as Reject records.
"""

from __future__ import annotations

from datetime import date

from flows.models import ParsedPage
from flows.parse.api import parse_api
from flows.parse.clean import canonical_arxiv_id, title_key
from flows.parse.detect import detect_format, sniff
from flows.parse.html import parse_html
from flows.parse.text import parse_text

__all__ = ["canonical_arxiv_id", "detect_format", "parse_page", "title_key"]


def parse_page(
    data: bytes | str,
    *,
    name: str,
    digest_date: date | None = None,
    today: date | None = None,
    decoded: object = None,
) -> ParsedPage:
    """Detect the page's format and parse it into cleaned papers and quarantined rejects.

    `decoded` is the JSON value of these bytes when the caller decoded them already (the
    fetch client does, to check API answers); it spares a second decode.
    """
    sniffed = sniff(data, name=name, decoded=decoded)
    if sniffed.fmt == "api":
        return parse_api(sniffed.payload or [], digest_date=digest_date)
    if sniffed.fmt == "html":
        return parse_html(sniffed.text, name=name, digest_date=digest_date)
    return parse_text(sniffed.text, digest_date=digest_date, today=today or date.today())
