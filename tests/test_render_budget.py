"""The email's size budget on busy days: the first N papers of each section always keep their
summary, authors and links; past the budget the rest become short cards, then a compact
numbered list (or "N more on the web" when the archive site has a URL), never bare titles."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from deliver_fakes import DAY, many_papers_digest, typical_digest

from flows.render import DETAIL_STEPS, RenderSettings, render_fitted

SETTINGS = RenderSettings(
    unsubscribe_url="https://papers.example.org/unsubscribe?address={address}",
    unsubscribe_mailto="unsubscribe@papers.example.org",
)
WEB = replace(SETTINGS, archive_url="https://digest.example.org/papers/")


def cards(html: str) -> list[str]:
    """Each paper card's HTML (from its cell to the next)."""
    return re.findall(r'<td class="paper".*?</td></tr>', html, flags=re.S)


def full_card(card: str) -> bool:
    """A card with a summary, authors and a link (what "never bare titles" means)."""
    return 'class="excerpt"' in card and 'class="authors"' in card and "href=" in card


@pytest.mark.parametrize("n", [100, 300, 391])
def test_first_papers_of_each_section_keep_summary_authors_and_links(n: int) -> None:
    rendering = render_fitted(many_papers_digest(n), settings=SETTINGS)
    html = rendering.email.html
    assert rendering.html_bytes == len(html.encode("utf-8")) <= 100_000
    # 10 trending and 25 new papers, each a full card: never bare titles for those.
    found = cards(html)
    assert len(found) == 35 and all(full_card(c) for c in found)
    assert rendering.shown + rendering.omitted == n


def test_without_a_site_url_the_rest_is_a_compact_numbered_list() -> None:
    rendering = render_fitted(many_papers_digest(80), settings=SETTINGS)
    html, text = rendering.email.html, rendering.email.text
    assert rendering.detail == "list"
    assert rendering.listed == 45 and rendering.omitted == 0
    assert re.search(r'<ol class="compact" start="26"[^>]*>', html)
    assert html.count('class="compact-item"') == 45
    assert "\n26. " in text and "\n70. " in text  # numbered on after the 25 new cards


def test_a_list_too_long_for_the_budget_is_capped_with_a_link() -> None:
    rendering = render_fitted(many_papers_digest(391), settings=SETTINGS)
    html = rendering.email.html
    assert rendering.detail == "capped"
    assert rendering.listed > 0 and rendering.omitted > 0
    assert f"{rendering.omitted} more new on Hugging Face" in html
    assert f'href="https://huggingface.co/papers/date/{DAY}"' in html
    # As generous as the budget allows: one more listed title would not fit.
    assert rendering.html_bytes > 100_000 - 1_000


def test_with_a_site_url_the_rest_is_n_more_on_the_web() -> None:
    rendering = render_fitted(many_papers_digest(300), settings=WEB)
    html, text = rendering.email.html, rendering.email.text
    assert rendering.detail == "web" and rendering.omitted == 265
    assert "265 more new on the web" in html
    assert f'href="https://digest.example.org/papers/days/{DAY}.html"' in html
    assert f"265 more new on the web: https://digest.example.org/papers/days/{DAY}.html" in text
    assert 'class="compact-item"' not in html


def test_the_number_of_full_papers_is_a_setting() -> None:
    rendering = render_fitted(many_papers_digest(300), settings=replace(WEB, full_papers=5))
    found = cards(rendering.email.html)
    assert len(found) == 10 and all(full_card(c) for c in found)  # 5 trending + 5 new


@pytest.mark.parametrize(
    ("budget", "step"),
    [(100_000, "full"), (48_000, "short"), (30_000, "short-head"), (20_000, "shrunk")],
)
def test_each_degradation_step_kicks_in_when_needed(budget: int, step: str) -> None:
    settings = replace(SETTINGS, max_html_bytes=budget, full_papers=5)
    rendering = render_fitted(typical_digest(), settings=settings)
    assert rendering.detail == step
    assert rendering.html_bytes <= budget
    excerpts = re.findall(r'class="excerpt"[^>]*>([^<]*)<', rendering.email.html)
    assert excerpts  # every step keeps summaries for the first papers
    if step in ("short-head", "shrunk"):
        assert all(len(e) <= 140 for e in excerpts)


def test_steps_shrink_monotonically() -> None:
    sizes = []
    for budget in (100_000, 48_000, 30_000, 20_000):
        settings = replace(SETTINGS, max_html_bytes=budget, full_papers=5)
        sizes.append(render_fitted(typical_digest(), settings=settings).html_bytes)
    assert sizes == sorted(sizes, reverse=True)
    assert DETAIL_STEPS == ("full", "short", "list", "web", "capped", "short-head", "shrunk")


def test_typical_digest_is_well_under_the_budget() -> None:
    rendering = render_fitted(typical_digest(), settings=SETTINGS)
    assert rendering.detail == "full" and rendering.html_bytes < 70_000


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="archive_url"):
        RenderSettings(archive_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="full_papers"):
        RenderSettings(full_papers=-1)
