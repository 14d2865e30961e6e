"""Topic matching after its speed-up: the same answers as the field-by-field definition.

`match_topics` searches one NUL-joined string per paper (cached) instead of every text of every
field; these properties hold it to the plain reading of its docstring.
"""

from __future__ import annotations

import re

from deliver_fakes import typical_digest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.models import DigestPaper, Topics
from flows.render import excluded_by, match_topics

WORDS = ["agent", "Agents", "diffusion", "large", "language", "model", "art", "start", "ſtar"]
text = st.lists(st.sampled_from([*WORDS, "-", " ", "\n", "x"]), max_size=8).map("".join)
keyword = st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(" ".join)


def reference_field(paper: DigestPaper, keyword: str) -> str | None:
    """The definition: the first field (title, keywords, authors, abstract) with a text in
    which the keyword starts a word, its words split by any whitespace or hyphens."""
    body = r"[\s\-]+".join(re.escape(w) for w in keyword.split())
    pattern = re.compile(rf"(?<!\w){body}", re.IGNORECASE)
    fields = (
        ("title", (paper.title,)),
        ("keywords", paper.ai_keywords),
        ("authors", paper.authors),
        ("abstract", (paper.abstract, paper.ai_summary or "")),
    )
    for name, texts in fields:
        if any(pattern.search(t) for t in texts):
            return name
    return None


@settings(max_examples=300, deadline=None)
@given(
    title=text,
    keywords=st.lists(text, max_size=3),
    authors=st.lists(text, max_size=3),
    abstract=text,
    summary=st.none() | text,
    word=keyword,
)
def test_the_first_matching_field_is_the_one_the_definition_gives(
    title, keywords, authors, abstract, summary, word
) -> None:
    paper = DigestPaper(
        paper_id="2608.00001",
        title=title,
        abstract=abstract,
        ai_summary=summary,
        ai_keywords=tuple(keywords),
        authors=tuple(authors),
    )
    expected = reference_field(paper, word)
    why = match_topics(paper, Topics(include=(word,)))
    assert why == (f"matched '{word}' in {expected}" if expected else None)
    hidden = excluded_by(paper, Topics(exclude=(word,)))
    assert hidden == (f"excluded by '{word}' in {expected}" if expected else None)


def test_a_phrase_never_matches_across_two_keywords() -> None:
    paper = DigestPaper("p", title="t", abstract="", ai_keywords=("large", "language model"))
    assert match_topics(paper, Topics(include=("large language",))) is None
    assert match_topics(paper, Topics(include=("language",))) == "matched 'language' in keywords"


def test_the_digest_papers_match_as_before() -> None:
    for paper in typical_digest().new:
        for word in ("agent", "reasoning", "benchmark", "video"):
            expected = reference_field(paper, word)
            got = match_topics(paper, Topics(include=(word,)))
            assert got == (f"matched '{word}' in {expected}" if expected else None)
