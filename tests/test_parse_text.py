"""Saved text pages: the three seed pages parse exactly, with page and card dates resolved."""

from __future__ import annotations

import codecs
from datetime import date
from pathlib import Path

import pytest

from flows.models import Paper, Reject
from flows.parse import parse_page, title_key

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
PAGE_000 = SEEDS / "000_9e473fa17dbd8c2f.txt"
PAGE_001 = SEEDS / "001_817413739b35ed18.txt"
PAGE_002 = SEEDS / "002_55e7857e2ab8d0d2.txt"
TODAY = date(2025, 11, 20)
REPEATED_TITLE = "Learning from Future: A Novel Self-Training Framework for Semantic Segmentation"


def parse_seed(path: Path, **kwargs):
    return parse_page(path.read_bytes(), name=path.name, today=TODAY, **kwargs)


@pytest.mark.parametrize(("path", "expected"), [(PAGE_000, 229), (PAGE_001, 113), (PAGE_002, 67)])
def test_each_seed_page_has_its_exact_entry_count(path, expected):
    page = parse_seed(path)
    assert page.fmt == "text"
    assert len(page.papers) == expected
    assert page.rejects == ()
    assert [paper.rank for paper in page.papers] == list(range(1, expected + 1))


def test_seed_pages_hold_409_entries_and_391_distinct_papers():
    papers = [paper for path in (PAGE_000, PAGE_001, PAGE_002) for paper in parse_seed(path).papers]
    assert len(papers) == 409
    assert len({paper.paper_id for paper in papers}) == 391
    assert all(paper.paper_id == title_key(paper.title) for paper in papers)
    assert all(paper.arxiv_id is None and paper.authors == () for paper in papers)


def test_a_paper_repeated_on_all_three_pages_has_one_id():
    ids = [
        {paper.paper_id for paper in parse_seed(path).papers if paper.title == REPEATED_TITLE}
        for path in (PAGE_000, PAGE_001, PAGE_002)
    ]
    assert ids[0] == ids[1] == ids[2] == {title_key(REPEATED_TITLE)}


def test_001_has_108_papers_with_author_count_and_date_and_5_without_footer():
    papers = parse_seed(PAGE_001).papers
    with_footer = [paper for paper in papers if paper.n_authors and paper.published_on]
    without = [paper.title for paper in papers if paper.n_authors is None]
    assert len(with_footer) == 108
    assert without == [
        "UniVerse-1: Unified Audio-Video Generation via Stitching of Experts",
        "Training Vision-Language Process Reward Models for Test-Time Scaling in Multimodal "
        "Reasoning: Key Insights and Lessons Learned",
        "Evolving Language Models without Labels: Majority Drives Selection, Novelty Promotes "
        "Variation",
        "Skill-Targeted Adaptive Training",
        "Towards More Diverse and Challenging Pre-training for Point Cloud Learning: "
        "Self-Supervised Cross Reconstruction with Decoupled Views",
    ]
    assert all(paper.published_on is None for paper in papers if paper.n_authors is None)


def test_real_world_anomaly_detection_record():
    papers = {paper.title: paper for paper in parse_seed(PAGE_001).papers}
    assert papers["Real-world Anomaly Detection in Surveillance Videos"] == Paper(
        paper_id="t:2746878a082712eb",
        title="Real-world Anomaly Detection in Surveillance Videos",
        abstract=(
            "Surveillance videos are able to capture a variety of realistic anomalies. In"
            " this paper, we propose to learn anomalies by exploiting both normal and "
            "anomalous videos. To avoid annotating the anomalous segments or clips in "
            "training videos, which is very time consuming, we propose to learn anomaly "
            "through the deep multiple instance ranking framework by leveraging weakly "
            "labeled training videos, i.e. the training labels (anomalous or normal) are "
            "at video-level instead of clip-level. In our approach, we consider normal "
            "and anomalous videos as bags and video segments as instances in multiple "
            "instance learning (MIL), and automatically learn a deep anomaly ranking "
            "model that predicts high anomaly scores for anomalous video segments. "
            "Furthermore, we introduce sparsity and temporal smoothness constraints in "
            "the ranking loss function to better localize anomaly during training. We "
            "also introduce a new large-scale first of its kind dataset of 128 hours of "
            "videos. It consists of 1900 long and untrimmed real-world surveillance "
            "videos, with 13 realistic anomalies such as fighting, road accident, "
            "burglary, robbery, etc. as well as normal activities. This dataset can be "
            "used for two tasks. First, general anomaly detection considering all "
            "anomalies in one group and all normal activities in another group. Second, "
            "for recognizing each of 13 anomalous activities. Our experimental results "
            "show that our MIL method for anomaly detection achieves significant "
            "improvement on anomaly detection performance as compared to the "
            "state-of-the-art approaches. We provide the results of several recent deep "
            "learning baselines on anomalous activity recognition. The low recognition "
            "performance of these baselines reveals that our dataset is very challenging "
            "and opens more opportunities for future work. The dataset is available at: "
            "https://webpages.uncc.edu/cchen62/dataset.html"
        ),
        rank=3,
        n_authors=3,
        published_on=date(2018, 1, 12),
        digest_date=date(2025, 11, 3),
    )


def test_reasonrank_record_has_year_of_page_and_upvotes():
    papers = {paper.title: paper for paper in parse_seed(PAGE_001).papers}
    title = "ReasonRank: Empowering Passage Ranking with Strong Reasoning Ability"
    assert papers[title] == Paper(
        paper_id="t:ef0c8271824552a5",
        title="ReasonRank: Empowering Passage Ranking with Strong Reasoning Ability",
        abstract=(
            "Large Language Model (LLM) based listwise ranking has shown superior "
            "performance in many passage ranking tasks. With the development of Large "
            "Reasoning Models, many studies have demonstrated that step-by-step reasoning"
            " during test-time helps improve listwise ranking performance. However, due "
            "to the scarcity of reasoning-intensive training data, existing rerankers "
            "perform poorly in many complex ranking scenarios and the ranking ability of "
            "reasoning-intensive rerankers remains largely underdeveloped. In this paper,"
            " we first propose an automated reasoning-intensive training data synthesis "
            "framework, which sources training queries and passages from diverse domains "
            "and applies DeepSeek-R1 to generate high-quality training labels. A "
            "self-consistency data filtering mechanism is designed to ensure the data "
            "quality. To empower the listwise reranker with strong reasoning ability, we "
            "further propose a two-stage post-training approach, which includes a "
            "cold-start supervised fine-tuning (SFT) stage for reasoning pattern learning"
            " and a reinforcement learning (RL) stage for further ranking ability "
            "enhancement. During the RL stage, based on the nature of listwise ranking, "
            "we design a multi-view ranking reward, which is more effective than a "
            "ranking metric-based reward. Extensive experiments demonstrate that our "
            "trained reasoning-intensive reranker ReasonRank outperforms existing "
            "baselines significantly and also achieves much lower latency than pointwise "
            "reranker Rank1. Through further experiments, our ReasonRank has achieved "
            "state-of-the-art (SOTA) performance 40.6 on the BRIGHT "
            "leaderboard\\footnote{https://brightbenchmark.github.io/.} Our codes are "
            "available at https://github.com/8421BCD/ReasonRank."
        ),
        rank=6,
        n_authors=7,
        published_on=date(2025, 8, 9),
        digest_date=date(2025, 11, 3),
        upvotes=4,
    )


def test_000_strips_the_glued_subscribe_button_and_uses_the_requested_date():
    page = parse_seed(PAGE_000, digest_date=date(2024, 6, 1))
    assert page.digest_date == date(2024, 6, 1)
    assert page.papers[0] == Paper(
        paper_id="t:e618221e1fdbcbc0",
        title=("DualPrompt: Complementary Prompting for Rehearsal-free Continual Learning"),
        abstract=(
            "Continual learning aims to enable a single model to learn a sequence of "
            "tasks without catastrophic forgetting. Top-performing methods usually "
            "require a rehearsal buffer to store past pristine examples for experience "
            "replay, which, however, limits their practical value due to privacy and "
            "memory constraints. In this work, we present a simple yet effective "
            "framework, DualPrompt, which learns a tiny set of parameters, called "
            "prompts, to properly instruct a pre-trained model to learn tasks arriving "
            "sequentially without buffering past examples. DualPrompt presents a novel "
            "approach to attach complementary prompts to the pre-trained backbone, and "
            "then formulates the objective as learning task-invariant and task-specific "
            '"instructions". With extensive experimental validation, DualPrompt '
            "consistently sets state-of-the-art performance under the challenging "
            "class-incremental setting. In particular, DualPrompt outperforms recent "
            "advanced continual learning methods with relatively large buffer sizes. We "
            "also introduce a more challenging benchmark, Split ImageNet-R, to help "
            "generalize rehearsal-free continual learning research. Source code is "
            "available at https://github.com/google-research/l2p."
        ),
        rank=1,
        digest_date=date(2024, 6, 1),
    )
    assert page.papers[-1] == Paper(
        paper_id="t:bd2fff3df626a2b9",
        title="Decoupled Contrastive Learning",
        abstract=(
            "Contrastive learning (CL) is one of the most successful paradigms for "
            "self-supervised learning (SSL). In a principled way, it considers two "
            'augmented "views" of the same image as positive to be pulled closer, and all'
            " other images as negative to be pushed further apart. However, behind the "
            "impressive success of CL-based techniques, their formulation often relies on"
            " heavy-computation settings, including large sample batches, extensive "
            "training epochs, etc. We are thus motivated to tackle these issues and "
            "establish a simple, efficient, yet competitive baseline of contrastive "
            "learning. Specifically, we identify, from theoretical and empirical studies,"
            " a noticeable negative-positive-coupling (NPC) effect in the widely used "
            "InfoNCE loss, leading to unsuitable learning efficiency concerning the batch"
            " size. By removing the NPC effect, we propose decoupled contrastive learning"
            " (DCL) loss, which removes the positive term from the denominator and "
            "significantly improves the learning efficiency. DCL achieves competitive "
            "performance with less sensitivity to sub-optimal hyperparameters, requiring "
            "neither large batches in SimCLR, momentum encoding in MoCo, or large epochs."
            " We demonstrate with various benchmarks while manifesting robustness as much"
            " less sensitive to suboptimal hyperparameters. Notably, SimCLR with DCL "
            "achieves 68.2% ImageNet-1K top-1 accuracy using batch size 256 within 200 "
            "epochs pre-training, outperforming its SimCLR baseline by 6.4%. Further, DCL"
            " can be combined with the SOTA contrastive learning method, NNCLR, to "
            "achieve 72.3% ImageNet-1K top-1 accuracy with 512 batch size in 400 epochs, "
            "which represents a new SOTA in contrastive learning. We believe DCL provides"
            " a valuable baseline for future contrastive SSL studies."
        ),
        rank=229,
        digest_date=date(2024, 6, 1),
    )


def test_page_without_header_date_takes_today_when_no_date_is_given():
    page = parse_seed(PAGE_000)
    assert page.digest_date == TODAY
    assert {paper.digest_date for paper in page.papers} == {TODAY}


def test_page_date_is_the_latest_header_date_not_after_today():
    assert parse_seed(PAGE_001).digest_date == date(2025, 11, 3)
    early = parse_page(PAGE_001.read_bytes(), name="001", today=date(2025, 11, 2))
    assert early.digest_date == date(2024, 11, 3)
    assert parse_seed(PAGE_002).digest_date == date(2025, 3, 11)


def test_page_year_comes_from_the_requested_date():
    page = parse_seed(PAGE_001, digest_date=date(2023, 11, 3))
    assert page.digest_date == date(2023, 11, 3)
    papers = {paper.title: paper for paper in page.papers}
    first = papers["Adversarial Training for Defense Against Label Poisoning Attacks"]
    assert (first.published_on, first.digest_date) == (date(2023, 2, 24), date(2023, 11, 3))


def test_page_year_is_the_requested_year_even_for_a_page_months_before_it():
    page = parse_seed(PAGE_002, digest_date=date(2025, 11, 3))
    assert page.digest_date == date(2025, 3, 11)


def test_card_dates_with_a_year_and_upvotes():
    papers = parse_seed(PAGE_001).papers
    dated = {(paper.published_on, paper.upvotes) for paper in papers if paper.upvotes}
    assert (date(2024, 12, 26), 2) in dated  # "Dec 26, 2024 2"
    assert (date(2025, 8, 9), 4) in dated  # "Aug 9 4"
    assert {paper.digest_date for paper in papers} == {date(2025, 11, 3)}


HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\nNov 3\n\n"
)
ABSTRACT = (
    "We study a problem that matters. Our method solves it well on every benchmark we "
    "tried, and we explain why it works so well, both in theory and in practice, across "
    "many settings and scales. Code is released."
)
ENTRY_A = f"Paper A\n\n{ABSTRACT}\n\n  • 2 authors\n·\nDec 5\n\n"
ENTRY_B = f"Paper B\n\n{ABSTRACT} B.\n\n  • 1 author\n·\nNov 2 12\n\n"


def test_year_less_card_date_later_in_year_than_page_is_from_the_year_before():
    page = parse_page(HEADER + ENTRY_A + ENTRY_B, name="p", today=TODAY)
    assert [(p.title, p.published_on, p.n_authors, p.upvotes) for p in page.papers] == [
        ("Paper A", date(2024, 12, 5), 2, None),
        ("Paper B", date(2025, 11, 2), 1, 12),
    ]


def test_missing_title_and_missing_abstract_are_quarantined_and_the_rest_parses():
    text = HEADER + f"{ABSTRACT}\n\nLonely title\n\n" + ENTRY_A + ENTRY_B + "Last title\n"
    page = parse_page(text, name="p", today=TODAY)
    assert [paper.title for paper in page.papers] == ["Paper A", "Paper B"]
    assert [paper.rank for paper in page.papers] == [1, 2]
    assert [(reject.position, reject.reason) for reject in page.rejects] == [
        (1, "no title"),
        (2, "no abstract"),
        (5, "no abstract"),
    ]
    assert page.rejects[0].excerpt == ABSTRACT
    assert all(len(reject.excerpt) <= 300 for reject in page.rejects)


def test_absurd_title_is_rejected_as_too_long():
    text = HEADER + "T" * 1001 + f"\n\n{ABSTRACT}\n\n" + ENTRY_A
    page = parse_page(text, name="p", today=TODAY)
    assert [reject.reason for reject in page.rejects] == ["title too long"]
    assert len(page.rejects[0].excerpt) == 300
    assert [paper.title for paper in page.papers] == ["Paper A"]


def test_duplicate_titles_on_one_page_keep_the_first():
    text = HEADER + ENTRY_A + ENTRY_A.replace("Paper A", "PAPER  a!")
    page = parse_page(text, name="p", today=TODAY)
    assert [(paper.title, paper.rank) for paper in page.papers] == [("Paper A", 1)]


def test_wrapped_lines_inside_a_block_are_joined():
    wrapped = ABSTRACT.replace(" Our method", "\nOur method").replace(" Code", "\n  Code")
    text = HEADER + f"A wrapped\ntitle\n\n{wrapped}\n\n" + ENTRY_B
    page = parse_page(text, name="p", today=TODAY)
    assert (page.papers[0].title, page.papers[0].abstract) == ("A wrapped title", ABSTRACT)


def test_stray_blank_lines_do_not_glue_a_line_per_entry_page():
    lines = PAGE_000.read_text(encoding="utf-8").split("\n")
    lines.insert(10, "")
    page = parse_page("\n".join(lines), name="000", today=TODAY)
    assert len(page.papers) == 229


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: text.replace("\n", "\r\n").encode("utf-8"), id="crlf"),
        pytest.param(lambda text: codecs.BOM_UTF8 + text.encode("utf-8"), id="utf8-bom"),
        pytest.param(lambda text: text.encode("utf-16"), id="utf16-bom"),
        pytest.param(lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"), id="utf16be"),
        pytest.param(lambda text: text, id="str"),
    ],
)
def test_encodings_and_line_endings_parse_the_same(encode):
    text = PAGE_001.read_text(encoding="utf-8")
    expected = parse_seed(PAGE_001)
    assert parse_page(encode(text), name="001", today=TODAY) == expected


def test_latin1_page_decodes_without_errors():
    text = HEADER + "Caf\u00e9 na\u00efve models\n\n" + ABSTRACT + "\n"
    page = parse_page(text.encode("latin-1"), name="p", today=TODAY)
    assert page.papers[0].title == "Café naïve models"


def test_parse_is_pure_same_input_same_output():
    assert parse_seed(PAGE_002) == parse_seed(PAGE_002)


def test_reject_type_is_the_contract_dataclass():
    page = parse_page(HEADER + "Lonely title\n", name="p", today=TODAY)
    assert page.rejects == (Reject(position=1, reason="no abstract", excerpt="Lonely title"),)
    assert page.papers == ()
