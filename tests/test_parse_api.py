"""HF JSON API pages: every schema era parses into the same cleaned Paper records."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from flows.models import Paper, Reject
from flows.parse import parse_page, title_key

API = Path(__file__).parent / "fixtures" / "hf-api"


def parse_fixture(day: str, **kwargs):
    path = API / f"daily_papers_{day}.json"
    return parse_page(path.read_bytes(), name=path.name, **kwargs)


def page_of(*items: dict, **kwargs):
    return parse_page(json.dumps(list(items)), name="api-test", **kwargs)


def item(paper_id="2503.02130", **paper_fields) -> dict:
    paper = {"id": paper_id, "title": "A title", "summary": "An abstract."} | paper_fields
    return {"paper": paper, "title": paper["title"], "numComments": 0}


@pytest.mark.parametrize(
    ("day", "count"),
    [
        ("2024-05-27", 13),
        ("2025-01-21", 1),
        ("2025-03-31", 15),
        ("2026-08-13", 20),
        ("2026-08-14", 23),
    ],
)
def test_each_api_fixture_parses_every_item(day, count):
    page = parse_fixture(day)
    raw = json.loads((API / f"daily_papers_{day}.json").read_text(encoding="utf-8"))
    assert page.fmt == "api"
    assert (len(page.papers), page.rejects) == (count, ())
    assert [paper.paper_id for paper in page.papers] == [entry["paper"]["id"] for entry in raw]
    assert all(isinstance(paper.arxiv_id, str) for paper in page.papers)
    assert [paper.rank for paper in page.papers] == list(range(1, count + 1))


def test_gamefactory_record_with_requested_date():
    page = parse_fixture("2025-01-21", digest_date=date(2025, 1, 21))
    assert page.digest_date == date(2025, 1, 21)
    assert page.papers == (
        Paper(
            paper_id="2501.08325",
            title="GameFactory: Creating New Games with Generative Interactive Videos",
            abstract=(
                "Generative game engines have the potential to revolutionize game development"
                " by autonomously creating new content and reducing manual workload. However,"
                " existing video-based game generation methods fail to address the critical "
                "challenge of scene generalization, limiting their applicability to existing "
                "games with fixed styles and scenes. In this paper, we present GameFactory, a"
                " framework focused on exploring scene generalization in game video "
                "generation. To enable the creation of entirely new and diverse games, we "
                "leverage pre-trained video diffusion models trained on open-domain video "
                "data. To bridge the domain gap between open-domain priors and small-scale "
                "game dataset, we propose a multi-phase training strategy that decouples game"
                " style learning from action control, preserving open-domain generalization "
                "while achieving action controllability. Using Minecraft as our data source, "
                "we release GF-Minecraft, a high-quality and diversity action-annotated video"
                " dataset for research. Furthermore, we extend our framework to enable "
                "autoregressive action-controllable game video generation, allowing the "
                "production of unlimited-length interactive game videos. Experimental results"
                " demonstrate that GameFactory effectively generates open-domain, diverse, "
                "and action-controllable game videos, representing a significant step forward"
                " in AI-driven game generation. Our dataset and project page are publicly "
                "available at https://vvictoryuki.github.io/gamefactory/."
            ),
            rank=1,
            arxiv_id="2501.08325",
            authors=(
                "Jiwen Yu",
                "Yiran Qin",
                "Xintao Wang",
                "Pengfei Wan",
                "Di Zhang",
                "Xihui Liu",
            ),
            n_authors=6,
            published_on=date(2025, 1, 14),
            digest_date=date(2025, 1, 21),
            upvotes=28,
            comments=2,
        ),
    )


def test_top_level_published_at_is_never_the_digest_date():
    # Before March 2025 the top-level publishedAt was the submission time (here 2025-01-20).
    page = parse_fixture("2025-01-21")
    assert page.digest_date is None
    assert page.papers[0].digest_date is None
    assert page.papers[0].published_on == date(2025, 1, 14)


def test_full_2026_record_with_github_project_ai_fields_and_organization():
    page = parse_fixture("2026-08-13")
    assert page.digest_date == date(2026, 8, 13)
    assert page.papers[10] == Paper(
        paper_id="2608.10450",
        title="Persistent Recursive Worlds Enable Autonomous Software Evolution",
        abstract=(
            "Complex software systems develop over timescales that exceed the lifespan of"
            " any individual coding agent. Most agentic software systems preserve "
            "continuity through persistent sessions, memories, managers or shared "
            "context. We introduce EvoX Genesis (hereafter, Genesis), which instead makes"
            " the software project persistent while allowing local agents to remain "
            "finite-lived. Genesis represents software as a persistent recursive world: "
            "each local world is situated by an accepted version and a repository path, "
            "finite-lived agents propose local changes, recursive delegation moves work "
            "across paths, and only accepted consequences advance the persistent version "
            "history. We evaluate this organization across formation, continuation and "
            "redevelopment. Starting from a repository with no compiler implementation, "
            "Genesis used DeepSeek V4 Flash to build a Rust-based C compiler with about "
            "250k tracked lines; the run lasted over 120 hours, archived over 1,000 agent"
            " episodes and incurred only US$44 in model-token charges. The compiler "
            "passed the complete c-testsuite and most LLVM and Csmith tests. In a "
            "separate compiler world generated with GLM 5.2, development continued after "
            "repeated agent replacement while retaining full test performance. Genesis "
            "also reimplemented 13 MESA modules with over 100k Fortran lines as a Rust "
            "workspace with nearly 90k Rust lines; across six numerical workloads, it "
            "achieved median speedups of 1.55--6.87x. These results show that "
            "long-horizon software development can be organized around a persistent "
            "project rather than a persistent agent."
        ),
        rank=11,
        arxiv_id="2608.10450",
        authors=("Beichen Huang", "Zhenyu Liang", "Bowen Zheng", "Ran Cheng"),
        n_authors=4,
        published_on=date(2026, 8, 12),
        digest_date=date(2026, 8, 13),
        upvotes=2,
        comments=1,
        github_url="https://github.com/EMI-Group/genesis",
        github_stars=12,
        project_url="https://genesis.evox.group/",
        ai_summary=(
            "Genesis organizes long-horizon software development around a persistent "
            "project rather than persistent agents, enabling multi-day compiler "
            "construction and numerical module reimplementation with low cost and high "
            "performance."
        ),
        ai_keywords=("DeepSeek V4 Flash", "GLM 5.2"),
        organization="The Hong Kong Polytechnic University",
    )


def test_2025_03_dates_come_from_paper_fields_not_the_top_level():
    page = parse_fixture("2025-03-31")
    raw = json.loads((API / "daily_papers_2025-03-31.json").read_text(encoding="utf-8"))
    assert {paper.digest_date for paper in page.papers} == {date(2025, 3, 31)}
    assert [paper.published_on for paper in page.papers] == [
        date.fromisoformat(entry["paper"]["publishedAt"][:10]) for entry in raw
    ]
    assert page.papers[0].published_on == date(2025, 3, 28)


def test_requested_date_wins_over_submitted_on_daily_at():
    page = parse_fixture("2025-03-31", digest_date=date(2025, 4, 1))
    assert page.digest_date == date(2025, 4, 1)
    assert {paper.digest_date for paper in page.papers} == {date(2025, 4, 1)}


def test_titles_and_abstracts_have_line_breaks_joined():
    papers = parse_fixture("2024-05-27").papers
    assert papers[0].title == (
        "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    )
    assert all("\n" not in paper.title + paper.abstract for paper in papers)
    assert all("  " not in paper.title + paper.abstract for paper in papers)


def test_paper_title_wins_over_the_tex_top_level_title():
    papers = {paper.paper_id: paper for paper in parse_fixture("2024-05-27").papers}
    assert papers["2405.14906"].title == (
        "AutoCoder: Enhancing Code Large Language Model with AIEV-Instruct"
    )


def test_organization_is_the_fullname_string():
    papers = parse_fixture("2026-08-14").papers
    assert papers[0].organization == "alibaba"
    with_org = [paper for paper in papers if paper.organization]
    assert len(with_org) == 15


def test_ids_stay_strings_even_when_written_as_json_numbers():
    text = '[{"paper": {"id": 2503.02130, "title": "Zeros", "summary": "Kept."}}]'
    assert parse_page(text, name="n").papers[0].paper_id == "2503.02130"
    assert page_of(item("2503.02130v2")).papers[0].arxiv_id == "2503.02130"


def test_version_suffix_is_dropped_and_bad_ids_fall_back_to_the_title_key():
    page = page_of(
        item("2503.02130v3"), item("not-an-id", title="Other"), item(25030213, title="other")
    )
    assert [paper.paper_id for paper in page.papers] == ["2503.02130", title_key("Other")]
    assert page.papers[1].arxiv_id is None


def test_there_is_no_top_level_upvotes_and_unknown_keys_are_ignored():
    entry = item(upvotes=7, brandNewField={"x": [1, 2]}) | {"upvotes": 999, "isTrending": True}
    paper = page_of(entry).papers[0]
    assert paper.upvotes == 7


def test_absent_and_null_optional_keys_are_the_same():
    bare = page_of(item()).papers[0]
    nulls = page_of(
        item(githubRepo=None, githubStars=None, projectPage=None, ai_summary=None, authors=None)
    ).papers[0]
    assert (
        bare
        == nulls
        == Paper(
            paper_id="2503.02130",
            title="A title",
            abstract="An abstract.",
            rank=1,
            arxiv_id="2503.02130",
            comments=0,
        )
    )


def test_only_http_urls_are_kept():
    paper = page_of(
        item(githubRepo="javascript:alert(1)", projectPage="https://example.org/p")
    ).papers[0]
    assert (paper.github_url, paper.project_url) == (None, "https://example.org/p")


def test_organization_name_used_when_no_fullname_and_top_level_organization_counts():
    by_name = page_of(item(organization={"name": "acme"})).papers[0]
    top_level = page_of(item() | {"organization": {"fullname": "Acme Labs"}}).papers[0]
    assert (by_name.organization, top_level.organization) == ("acme", "Acme Labs")


def test_empty_array_is_a_valid_page_with_no_papers():
    page = parse_page(b"[]", name="weekend", digest_date=date(2025, 3, 29))
    assert (page.fmt, page.digest_date, page.papers, page.rejects) == (
        "api",
        date(2025, 3, 29),
        (),
        (),
    )


def test_bad_items_are_quarantined_and_the_rest_still_loads():
    page = page_of(
        item("2501.00001"),
        item("2501.00002", title="   "),
        {"paper": "not an object"},
        item("2501.00003", summary=None) | {"summary": None},
        item("2501.00004", title="\u200b\u200f"),
        item("2501.00005", summary="..."),
        item("2501.00006"),
    )
    assert [paper.paper_id for paper in page.papers] == ["2501.00001", "2501.00006"]
    assert [paper.rank for paper in page.papers] == [1, 2]
    assert [(reject.position, reject.reason) for reject in page.rejects] == [
        (2, "no title"),
        (3, "API item has no paper object"),
        (4, "no abstract"),
        (5, "no title"),
        (6, "abstract has no letters or digits"),
    ]
    assert page.rejects[1] == Reject(
        3, "API item has no paper object", '{"paper": "not an object"}'
    )


def test_a_rejects_excerpt_shows_the_paper_without_its_author_list():
    authors = [{"name": f"Author {n}"} for n in range(500)]
    page = page_of(item("2501.00001", title="", authors=authors))
    assert [(reject.position, reject.reason) for reject in page.rejects] == [(1, "no title")]
    assert page.rejects[0].excerpt == (
        '{"id": "2501.00001", "title": "", "summary": "An abstract."}'
    )


def test_authors_and_keywords_clean_alike_on_the_fast_path_and_the_slow_one():
    entry = item(
        authors=[
            {"name": "Ada Lovelace"},
            {"name": "  Alan   Turing\n"},
            {"name": "", "fullname": "Grace Hopper"},
            {"name": "Cafe\u0301 \u200bOwner"},
            {"name": "Tab\tBed\x00"},
            " ",
        ],
        ai_keywords=["llm", " rl  agents ", "x\x7fy", "e\u0301", ""],
    )
    paper = page_of(entry).papers[0]
    assert paper.authors == ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Café Owner", "Tab Bed")
    assert paper.ai_keywords == ("llm", "rl agents", "xy", "\u00e9")


def test_duplicate_ids_on_one_page_keep_the_first():
    page = page_of(item("2501.00001", upvotes=1), item("2501.00001v2", upvotes=2))
    assert [(paper.paper_id, paper.upvotes, paper.rank) for paper in page.papers] == [
        ("2501.00001", 1, 1)
    ]


def test_weird_value_types_never_crash_and_are_dropped():
    entry = item(
        upvotes="12",
        githubStars=-4,
        authors=[{"name": "A"}, "B", 3, {"user": {"fullname": "C"}}, {}],
        ai_keywords=["x", 5, None, " y "],
        publishedAt="yesterday",
        organization=["nope"],
    ) | {"numComments": True}
    paper = page_of(entry).papers[0]
    assert (paper.upvotes, paper.github_stars, paper.comments) == (12, None, None)
    assert (paper.authors, paper.n_authors) == (("A", "B", "C"), 3)
    assert (paper.ai_keywords, paper.published_on, paper.organization) == (("x", "y"), None, None)
