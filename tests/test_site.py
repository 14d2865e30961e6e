"""The published site and feeds: every link works, pages are well formed, feeds parse exactly,
hostile text cannot script anything, and a re-publish with no change rewrites nothing."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import feedparser
import pytest
from site_build import FIRST_DIGEST, SECOND_DIGEST, SEED_DAY, build_warehouse, publish

from flows.cli import main
from flows.models import Change, Digest, DigestPaper
from flows.site import (
    STATE_FILE,
    DayDigest,
    Sighting,
    SiteData,
    SiteSettings,
    build_site,
    iso_week,
    paper_slug,
    write_site,
)
from flows.warehouse import Warehouse

# The injection cases of the email tests (tests/test_render.py), and a few more.
HOSTILE_TITLES = (
    "<script>alert('x')</script> Diffusion",
    '"><img src=x onerror=alert(1)>',
    'Innocent</a><a href="javascript:alert(1)">click',
    "</script><script>alert(2)</script>",
    "\u2028\u2029 line separators ]]> -->",
)


class Page(HTMLParser):
    """What a crawler sees of a page: links, scripts, headings, title, lang, handlers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.scripts: list[str | None] = []
        self.h1 = 0
        self.lang: str | None = None
        self.title = ""
        self._in_title = False
        self.handlers: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "html":
            self.lang = found.get("lang")
        if tag == "h1":
            self.h1 += 1
        if tag == "title":
            self._in_title = True
        if tag == "script":
            self.scripts.append(found.get("src"))
        self.links += [v or "" for k, v in attrs if k in ("href", "src")]
        self.handlers += [k for k, _ in attrs if k.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def parse_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A warehouse from the bundled pages and recorded API days, and its published site."""
    work = tmp_path_factory.mktemp("site")
    db = work / "papers.duckdb"
    build_warehouse(db, work / "pages")
    publish(db, work / "site")
    return db, work / "site"


# ---- the crawler ----


def test_every_link_resolves_and_every_page_is_well_formed(built: tuple[Path, Path]) -> None:
    _, site = built
    pages = sorted(site.rglob("*.html"))
    reached, queue = set(), [site / "index.html"]
    while queue:
        path = queue.pop()
        if path in reached:
            continue
        reached.add(path)
        page = parse_page(path)
        assert page.lang == "en", path
        assert page.title.strip(), path
        assert page.h1 == 1, f"{path}: {page.h1} h1"
        for link in page.links:
            parts = urlsplit(link)
            assert parts.scheme in ("", "http", "https", "mailto"), f"{path}: {link}"
            if parts.scheme or not parts.path:
                continue
            assert not link.startswith("/"), f"{path}: {link} is not relative"
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{path.relative_to(site)} links to missing {link}"
            if target.suffix == ".html":
                queue.append(target)
    assert set(pages) == reached, "pages no link leads to"
    names = {p.relative_to(site).as_posix() for p in pages}
    assert {"index.html", f"days/{SEED_DAY}.html", f"days/{FIRST_DIGEST}.html"} <= names
    assert f"days/{SECOND_DIGEST}.html" in names  # a digest day with no list of its own
    assert f"weeks/{iso_week(FIRST_DIGEST)}.html" in names
    # every paper a day page shows has its page; the two old API pages state no digest date,
    # so their papers are on no day page and get none
    assert sum(n.startswith("papers/") for n in names) == count(built[0], SHOWN_PAPERS)
    assert count(built[0], "papers") > sum(n.startswith("papers/") for n in names)


# Papers a day page shows: on a dated list, or mailed. The two old API pages state no digest
# date, so papers seen only on them are on no day page and get no page of their own.
SHOWN_PAPERS = (
    "papers WHERE paper_id IN (SELECT paper_id FROM sightings WHERE digest_date IS NOT NULL"
    " UNION SELECT paper_id FROM digest_items)"
)


def count(db: Path, table: str) -> int:
    with Warehouse.open(db) as wh:
        return wh.fetch_dicts(f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_day_page_of_a_mailed_digest_shows_trending_with_the_diffs_reasons(built) -> None:
    _, site = built
    html = (site / "days" / f"{SECOND_DIGEST}.html").read_text(encoding="utf-8")
    reasons = re.findall(r'class="reason">([^<]*)<', html)
    assert len(reasons) == 5
    assert reasons[0].startswith("+40 upvotes since ") and "+40 since last mailed" in reasons[0]
    assert '<h2>Trending <span class="count">5</span></h2>' in html
    first = (site / "days" / f"{FIRST_DIGEST}.html").read_text(encoding="utf-8")
    assert "<h2>New " in first and 'class="authors"' in first and 'class="excerpt"' in first
    assert 'href="https://arxiv.org/abs/' in first and 'href="../papers/' in first
    seed = (site / "days" / f"{SEED_DAY}.html").read_text(encoding="utf-8")
    assert "<h2>On the list " in seed  # the seeds came in with an import: the list as loaded


def test_paper_page_has_an_svg_chart_of_its_sightings(built) -> None:
    db, site = built
    with Warehouse.open(db) as wh:
        rows = wh.site_sightings()
    # a paper seen more than once, on a dated list (papers of undated pages get no page)
    dated = {s[0] for s in rows if s[1] is not None}
    paper_id = max(sorted(dated), key=lambda i: sum(1 for s in rows if s[0] == i))
    n = sum(1 for s in rows if s[0] == paper_id)
    assert n >= 2
    html = (site / "papers" / f"{paper_slug(paper_id)}.html").read_text(encoding="utf-8")
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, flags=re.S)
    assert svg and "<script" not in svg.group(0)
    points = re.search(r'class="l-votes" points="([^"]*)"', svg.group(0)).group(1).split()
    assert len(points) == n
    assert html.count("<tr><td>") == n  # one row per sighting


def test_week_page_merges_days_without_repeats_ranked_by_gain(built) -> None:
    _, site = built
    html = (site / "weeks" / f"{iso_week(FIRST_DIGEST)}.html").read_text(encoding="utf-8")
    links = re.findall(r'<h3 class="title"><a href="([^"]+)"', html)
    assert links and len(links) == len(set(links))
    gains = [int(g.replace(",", "")) for g in re.findall(r'class="gain">\+([\d,]+)<', html)]
    assert gains == sorted(gains, reverse=True)
    assert gains[0] >= 40  # the paper that gained 40 in the re-fetch leads


def test_index_lists_the_latest_digests_first(built) -> None:
    _, site = built
    html = (site / "index.html").read_text(encoding="utf-8")
    days = re.findall(r'href="days/([\d-]+)\.html"', html)
    assert days == sorted(days, reverse=True) and days[0] == SECOND_DIGEST.isoformat()
    index = (site / "search-index.js").read_text(encoding="ascii")
    rows = json.loads(index.removeprefix("window.PAPERDIGEST_SEARCH = ").rstrip().rstrip(";"))
    assert len(rows) == count(built[0], SHOWN_PAPERS)
    assert all((site / path).is_file() for _, path, _ in rows)


# ---- the feeds ----


def test_feeds_parse_with_no_bozo_and_exactly_one_entry_per_digest(built) -> None:
    _, site = built
    days = sorted((p.stem for p in (site / "days").glob("*.html")), reverse=True)
    ids = [f"tag:paperdigest.invalid,2024:digest/{d}" for d in days]
    links = [f"days/{d}.html" for d in days]
    atom = parse_feed(site / "feed.atom")
    assert not atom.bozo, atom.get("bozo_exception")
    assert atom.version == "atom10"
    assert [e.id for e in atom.entries] == ids
    assert [e.link for e in atom.entries] == links
    assert atom.entries[0].title.startswith("Daily Papers · Sat Aug 15, 2026 · 5 trending")
    content = atom.entries[0].content[0].value
    assert "+40 upvotes since" in content and "<script" not in content
    # feedparser 6.0 (the released line) reads no JSON Feed: check it against the 1.1 spec.
    feed = json_feed_items(site / "feed.json")
    assert [i["id"] for i in feed] == ids and [i["url"] for i in feed] == links
    assert [i["title"] for i in feed] == [e.title for e in atom.entries]
    assert "+40 upvotes since" in feed[0]["content_html"]
    day_page = (site / links[0]).read_text(encoding="utf-8")
    titles = re.findall(r'<h3 class="title"><a href="[^"]*">([^<]*)<', day_page)
    assert re.findall(r'<h3 class="title"><a href="[^"]*">([^<]*)<', feed[0]["content_html"]) == (
        titles
    )  # the day page's papers, in its order


def json_feed_items(path: Path) -> list[dict]:
    """The items of a JSON Feed 1.1 document, after checking what the spec requires."""
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(document["title"], str) and document["title"]
    assert isinstance(document["items"], list)
    for item in document["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_html") or item.get("content_text"), str)
        for key in ("date_published", "date_modified"):
            assert datetime.fromisoformat(item[key]).tzinfo is not None  # RFC 3339
    return document["items"]


def parse_feed(path: Path) -> feedparser.FeedParserDict:
    """Parse a feed as a reader fetching it would (feedparser picks JSON Feed by type)."""
    kind = "application/feed+json" if path.suffix == ".json" else "application/atom+xml"
    return feedparser.parse(path.read_bytes(), response_headers={"content-type": kind})


def test_feeds_use_the_site_url_and_keep_ids_across_rebuilds(built, tmp_path: Path) -> None:
    db, _ = built
    publish(db, tmp_path / "a", "https://digest.example.org/papers/")
    atom = feedparser.parse((tmp_path / "a" / "feed.atom").read_bytes())
    assert not atom.bozo
    assert atom.entries[0].id == f"tag:digest.example.org,2024:digest/{SECOND_DIGEST}"
    assert atom.entries[0].link == f"https://digest.example.org/papers/days/{SECOND_DIGEST}.html"
    content = atom.entries[0].content[0].value
    assert 'href="https://digest.example.org/papers/papers/' in content
    # A rebuild from scratch elsewhere gives the same ids and the same times.
    publish(db, tmp_path / "b", "https://digest.example.org/papers/")
    again = feedparser.parse((tmp_path / "b" / "feed.atom").read_bytes())
    assert [(e.id, e.updated) for e in again.entries] == [(e.id, e.updated) for e in atom.entries]


def test_feeds_keep_the_latest_30_entries(tmp_path: Path) -> None:
    days = [synthetic_day(date(2026, 1, 1) + timedelta(n)) for n in range(40)]
    data = SiteData(tuple(reversed(days)), {}, {})
    files = dict(build_site(data, SiteSettings(tmp_path))[0])
    atom = feedparser.parse(files["feed.atom"])
    feed_json = json.loads(files["feed.json"])
    assert len(atom.entries) == len(feed_json["items"]) == 30
    assert atom.entries[0].id.endswith("digest/2026-02-09")
    assert feed_json["items"][-1]["id"].endswith("digest/2026-01-11")
    assert feed_json["version"] == "https://jsonfeed.org/version/1.1"


def test_updated_changes_only_when_the_entrys_content_does(tmp_path: Path) -> None:
    first = synthetic_day(date(2026, 3, 2))
    second = synthetic_day(date(2026, 3, 3))
    settings = SiteSettings(tmp_path)
    _, times = build_site(SiteData((second, first), {}, {}), settings)
    later = {k: v | {"updated": "2026-03-04T00:00:00+00:00"} for k, v in times.items()}
    changed = replace(second.digest, new=(replace(second.digest.new[0], upvotes=999),))
    data = SiteData((replace(second, digest=changed), first), {}, {})
    _, again = build_site(data, settings, later)
    assert again["2026-03-02"] == later["2026-03-02"]  # same content: same time
    assert again["2026-03-03"]["updated"] != later["2026-03-03"]["updated"]
    assert again["2026-03-03"]["sha256"] != later["2026-03-03"]["sha256"]


def synthetic_day(day: date, title: str = "A Paper", **paper: object) -> DayDigest:
    one = DigestPaper(
        paper_id=f"2601.{day.toordinal() % 100000:05d}",
        arxiv_id=f"2601.{day.toordinal() % 100000:05d}",
        title=title,
        abstract="An abstract.",
        authors=("Ada Lovelace",),
        digest_date=day,
        rank=1,
        upvotes=10,
        reason="new",
        **paper,
    )
    digest = Digest(digest_date=day, data_through=day, new=(one,))
    return DayDigest(digest, True, datetime.combine(day, datetime.min.time(), tzinfo=UTC))


# ---- hostile text ----


def hostile_data() -> SiteData:
    papers, sightings, days = {}, {}, []
    for n, title in enumerate(HOSTILE_TITLES):
        day = date(2026, 5, 4) + timedelta(n)
        built = synthetic_day(
            day,
            title,
            github_url="javascript:alert(1)",
            project_url="data:text/html,<script>alert(1)</script>",
            ai_summary=title + " <iframe src=//evil>",
            ai_keywords=("<b onmouseover=alert(1)>kw</b>",),
            organization="<svg onload=alert(1)>",
        )
        paper = replace(built.digest.new[0], authors=(title, "<img src=x onerror=alert(2)>"))
        change = Change(paper.paper_id, title, "stars_jump", "+200 GitHub stars <script>")
        trending = replace(paper, reason=title, upvote_gain=5)
        digest = replace(built.digest, new=(), trending=(trending,), changes=(change,))
        days.append(replace(built, digest=digest))
        papers[paper.paper_id] = paper
        seen_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        sightings[paper.paper_id] = [Sighting(day, seen_at, 1, 3), Sighting(day, seen_at, 2, 8)]
    return SiteData(tuple(reversed(days)), papers, sightings)


@pytest.mark.parametrize("site_url", [None, "https://digest.example.org"])
def test_hostile_titles_and_abstracts_cannot_script_any_page_or_feed(
    tmp_path: Path, site_url: str | None
) -> None:
    files = dict(build_site(hostile_data(), SiteSettings(tmp_path, site_url))[0])
    for name, content in files.items():
        if not name.endswith(".html"):
            continue
        page = Page()
        page.feed(content.decode("utf-8"))
        expected = ["search-index.js", "search.js"] if name == "index.html" else []
        assert page.scripts == expected, name  # only the site's own scripts, by src
        assert not page.handlers, (name, page.handlers)
        assert not {"img", "iframe", "svg", "b"} & set(page.tags) or name.startswith("papers/")
        for link in page.links:
            assert urlsplit(link).scheme in ("", "http", "https"), (name, link)
    for paper_page in (n for n in files if n.startswith("papers/")):
        page = Page()
        page.feed(files[paper_page].decode("utf-8"))
        assert page.tags.count("svg") == 1 and "img" not in page.tags and "iframe" not in page.tags
    atom = feedparser.parse(files["feed.atom"])
    assert not atom.bozo and len(atom.entries) == len(HOSTILE_TITLES)
    titles = {e.title.split(" · ")[0] for e in atom.entries}
    assert titles == {"Daily Papers"}
    for entry in atom.entries:
        check_fragment(entry.content[0].value)
    for item in json.loads(files["feed.json"])["items"]:
        check_fragment(item["content_html"])
    assert b"</script" not in files["feed.json"]
    index = files["search-index.js"].decode("ascii")  # ASCII only: no raw separators
    assert "\u2028" not in index and "</script" not in index.lower()


def check_fragment(html: str) -> None:
    page = Page()
    page.feed(html)
    assert not page.scripts and not page.handlers
    assert not {"img", "iframe", "svg", "script"} & set(page.tags), page.tags
    assert all(urlsplit(link).scheme in ("", "http", "https") for link in page.links)


# ---- incremental, atomic writes ----


def test_republish_with_no_change_rewrites_zero_files(built, tmp_path: Path) -> None:
    db, _ = built
    out = tmp_path / "site"
    first = publish(db, out)
    assert len(first.written) == first.files > 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = publish(db, out)
    assert again.written == [] and again.removed == [] and again.unchanged == first.files
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps  # state file too
    assert not list(out.rglob("*.tmp"))


def test_a_change_rewrites_only_the_pages_it_touches(tmp_path: Path) -> None:
    days = (synthetic_day(date(2026, 3, 3)), synthetic_day(date(2026, 3, 2)))
    data = SiteData(days, {p.paper_id: p for d in days for p in d.digest.new}, {})
    settings = SiteSettings(tmp_path)
    files, times = build_site(data, settings)
    write_site(files, tmp_path, None, times)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    older = replace(days[1].digest.new[0], title="A Renamed Paper")
    changed = (days[0], replace(days[1], digest=replace(days[1].digest, new=(older,))))
    data = SiteData(changed, {p.paper_id: p for d in changed for p in d.digest.new}, {})
    files, times = build_site(data, settings, state["entries"])
    report = write_site(files, tmp_path, state["files"], times)
    assert sorted(report.written) == [
        "days/2026-03-02.html",
        "feed.atom",
        "feed.json",
        "index.html",  # its top paper's title
        f"papers/{older.paper_id}.html",
        "search-index.js",
        "weeks/2026-W10.html",
    ]


def test_pages_no_longer_built_are_removed(tmp_path: Path) -> None:
    (tmp_path / "days").mkdir()
    write_site({"index.html": b"a", "days/x.html": b"b"}, tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    report = write_site({"index.html": b"a"}, tmp_path, state["files"])
    assert report.removed == ["days/x.html"] and not (tmp_path / "days" / "x.html").exists()
    outside = tmp_path.parent / "keep.txt"
    outside.write_text("mine")
    write_site({"index.html": b"a"}, tmp_path, {"../keep.txt": "x:1"})
    assert outside.read_text() == "mine"  # a forged state file cannot delete outside the site


def test_a_file_edited_on_disk_is_rewritten(tmp_path: Path) -> None:
    write_site({"index.html": b"original"}, tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    (tmp_path / "index.html").write_bytes(b"tampered")  # same size, other bytes
    report = write_site({"index.html": b"original"}, tmp_path, state["files"])
    assert report.written == ["index.html"]
    assert (tmp_path / "index.html").read_bytes() == b"original"


def test_paper_slugs_are_plain_file_names() -> None:
    assert paper_slug("2608.13489") == "2608.13489"
    for odd in ("t:some title key", "../../etc/passwd", "a/b", ".hidden"):
        slug = paper_slug(odd)
        assert re.fullmatch(r"t-[0-9a-f]{16}", slug), slug


# ---- the command ----


def test_publish_command_prints_where_the_site_is(built, tmp_path: Path, capsys) -> None:
    db, _ = built
    out = tmp_path / "out"
    assert main(["--db", str(db), "publish", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("site: ") and line.count("\n") == 0
    assert f"→ {out / 'index.html'}" in line
    assert "feeds use relative links: set PAPERDIGEST_SITE_URL" in line
    assert main(["--db", str(db), "publish", "--out", str(out), "--url", "ftp://x"]) == 2
    assert "site URL must be an http(s) URL" in capsys.readouterr().err


def test_publish_help_documents_its_options(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["publish", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--out DIR" in out and "PAPERDIGEST_SITE_DIR" in out and "PAPERDIGEST_SITE_URL" in out


# ---- settings and the run's last step ----------------------------------------------------------


def test_site_settings_come_from_the_environment(tmp_path: Path) -> None:
    from flows.config import ConfigError, load_settings

    settings = load_settings({"PAPERDIGEST_DB": str(tmp_path / "w" / "papers.duckdb")})
    assert settings.site_path == tmp_path / "w" / "site"
    assert settings.site_url is None and settings.email_full_papers == 25
    settings = load_settings(
        {
            "PAPERDIGEST_SITE_DIR": str(tmp_path / "public"),
            "PAPERDIGEST_SITE_URL": "https://me.github.io/papers/",
            "PAPERDIGEST_EMAIL_FULL_PAPERS": "10",
        }
    )
    assert settings.site_path == tmp_path / "public"
    assert settings.email_full_papers == 10
    from flows.pipeline import render_settings_for

    rendering = render_settings_for(settings)
    assert rendering.archive_url == "https://me.github.io/papers/" and rendering.full_papers == 10
    with pytest.raises(ConfigError, match="site URL"):
        load_settings({"PAPERDIGEST_SITE_URL": "javascript:alert(1)"})
    with pytest.raises(ConfigError, match="email_full_papers"):
        load_settings({"PAPERDIGEST_EMAIL_FULL_PAPERS": "-1"})


def test_a_site_that_cannot_be_written_is_reported_not_raised(built, tmp_path: Path) -> None:
    from flows.config import load_settings
    from flows.site import publish_after_run

    db, _ = built
    blocked = tmp_path / "site"
    blocked.write_text("a file where the folder should be")
    settings = load_settings({"PAPERDIGEST_SITE_DIR": str(blocked)})
    with Warehouse.open(db) as wh:
        report = publish_after_run(wh, settings)
    assert report.error and str(blocked) in report.error
    assert report.line().startswith("site: not published: ")
    assert "\n" not in report.line()
