"""The site's feeds: Atom (RFC 4287, written by feedgen) and JSON Feed 1.1, one entry per digest.

Each entry's content is the digest's HTML and its link the day page. Ids are tag URIs that
never change between rebuilds; `updated` is what the site recorded for the entry's content.
Without a site URL the links are relative to the feed's own location (the site's root).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from feedgen.feed import FeedGenerator

from flows import PROJECT_URL, __version__

JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One digest as a feed entry."""

    id: str  # a tag URI, stable across rebuilds
    title: str
    link: str  # the day page (absolute with a site URL, else relative to the site root)
    html: str  # the digest's HTML, already escaped
    updated: datetime  # changes only when the content does
    published: datetime


def atom_feed(entries: list[FeedEntry], title: str, site_url: str | None, feed_id: str) -> bytes:
    """The Atom feed (newest entry first); its `updated` is the newest entry's."""
    root = _root(site_url)
    feed = FeedGenerator()
    feed.id(feed_id)
    feed.title(title)
    feed.subtitle("Hugging Face Daily Papers: trending, new and missed papers, with reasons")
    feed.link(href=f"{root}index.html", rel="alternate")
    feed.link(href=f"{root}feed.atom", rel="self")
    feed.generator("paperdigest", version=__version__, uri=PROJECT_URL)
    feed.language("en")
    if entries:
        feed.updated(max(e.updated for e in entries))
    # feedgen lists entries in the reverse order they were added: add the oldest first.
    for entry in reversed(entries):
        item = feed.add_entry()
        item.id(entry.id)
        item.title(entry.title)
        item.link(href=entry.link, rel="alternate")
        item.content(entry.html, type="html")
        item.updated(entry.updated)
        item.published(entry.published)
    return feed.atom_str(pretty=True)


def json_feed(entries: list[FeedEntry], title: str, site_url: str | None) -> bytes:
    """The JSON Feed 1.1 document (newest entry first)."""
    root = _root(site_url)
    document = {
        "version": JSON_FEED_VERSION,
        "title": title,
        "home_page_url": f"{root}index.html",
        "feed_url": f"{root}feed.json",
        "language": "en",
        "items": [
            {
                "id": entry.id,
                "url": entry.link,
                "title": entry.title,
                "content_html": entry.html,
                "date_published": entry.published.isoformat(),
                "date_modified": entry.updated.isoformat(),
            }
            for entry in entries
        ],
    }
    text = json.dumps(document, ensure_ascii=False, indent=1)
    # "</" cannot end a <script> block that embeds this document; JSON allows the escape.
    return (text.replace("</", "<\\/") + "\n").encode("utf-8")


def _root(site_url: str | None) -> str:
    return site_url.rstrip("/") + "/" if site_url else ""
