"""Tests of flows.library and the `subscribers add --library` / `subscribers library` commands.

The library files in tests/fixtures/library/ are small hand-written exports in the shapes
Zotero writes them (Better BibTeX, CSV with Zotero's columns, RIS) and a plain reading list.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from flows.library import (
    LibraryEntry,
    LibraryError,
    detect_format,
    libraries_dir,
    load_stored_library,
    parse_library,
    read_library_file,
)
from flows.subscribers import add_subscriber, load_subscribers, set_library

LIBRARIES = Path(__file__).parent / "fixtures" / "library"


# ---- each format --------------------------------------------------------------------------


def test_bibtex_export_gives_ids_titles_abstracts_and_keywords() -> None:
    library = read_library_file(LIBRARIES / "world_models.bib")
    assert library.fmt == "bibtex"
    assert library.source == "world_models.bib"
    ids = [e.arxiv_id for e in library.entries]
    # from url/doi, from eprint + archivePrefix, none, and an eprint with a version suffix
    assert ids == ["2405.15223", "2501.08325", None, "2412.14803"]
    first = library.entries[0]
    assert first.title == "iVideoGPT: Interactive VideoGPTs are Scalable World Models"
    assert first.abstract.startswith("World models empower model-based agents")
    assert "Computer Science - Robotics" in first.keywords
    # an entry without an arXiv id still counts by its text
    assert library.entries[2].title == "Recurrent World Models Facilitate Policy Evolution"
    assert "world model" in library.entries[2].text


def test_zotero_csv_export() -> None:
    library = read_library_file(LIBRARIES / "agents.csv")
    assert library.fmt == "zotero-csv"
    assert [e.arxiv_id for e in library.entries] == ["2608.13552", "2608.11274", None]
    assert library.entries[0].keywords[:2] == ("agents", "world models")
    assert library.entries[2].title == "Tool-Using Language Agents in Open Environments"
    assert library.entries[2].abstract.startswith("Language-model agents")


def test_ris_export() -> None:
    library = read_library_file(LIBRARIES / "diffusion.ris")
    assert library.fmt == "ris"
    assert [e.arxiv_id for e in library.entries] == ["2608.10615", "2608.12997", None]
    assert library.entries[0].abstract.startswith("Discrete diffusion models")
    assert library.entries[2].keywords == ("diffusion", "score matching")


def test_plain_list_of_ids_and_urls() -> None:
    library = read_library_file(LIBRARIES / "reading_list.txt")
    assert library.fmt == "ids"
    # comments and blank lines skipped; versions and prefixes dropped; the repeat kept once
    assert [e.arxiv_id for e in library.entries] == [
        "2608.12149",
        "2503.22329",
        "2608.13430",
        "2607.29211",
        "2503.21614",
    ]


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("TY  - JOUR\nTI  - x\nER  - \n", "ris"),
        ("% comment\n@article{k, title={x}}\n", "bibtex"),
        ('"Key","Item Type","Title"\n"A","preprint","x"\n', "zotero-csv"),
        ("2608.12149\n", "ids"),
    ],
)
def test_format_is_detected_from_the_content(text: str, fmt: str) -> None:
    assert detect_format(text) == fmt


def test_old_style_ids_and_hf_urls_with_queries() -> None:
    library = parse_library(
        "hep-th/9901001v2\nhttps://huggingface.co/papers/2608.13430?ref=mail\n", "list.txt"
    )
    assert [e.arxiv_id for e in library.entries] == ["hep-th/9901001", "2608.13430"]


# ---- bad files: one line naming the file and the reason -------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.bib", "the file is empty"),
        ("broken.bib", "no BibTeX entry could be read"),
        ("not_a_list.txt", "line 2: not an arXiv id or paper URL"),
        ("no_usable.csv", "no usable entry in this zotero-csv file"),
        ("latin1.csv", "not UTF-8 text"),
        ("missing.bib", "no such file"),
    ],
)
def test_bad_library_files_name_the_file_and_the_reason(name: str, reason: str) -> None:
    with pytest.raises(LibraryError) as caught:
        read_library_file(LIBRARIES / name)
    message = str(caught.value)
    assert message.startswith(str(LIBRARIES / name) + ": ")
    assert reason in message
    assert "\n" not in message


def test_binary_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "library.bib"
    path.write_bytes(b"\x00\x01PK\x03\x04")
    with pytest.raises(LibraryError, match="binary data"):
        read_library_file(path)


# ---- storage beside the subscribers file --------------------------------------------------


def test_add_with_a_library_stores_it_beside_the_subscribers_file(tmp_path: Path) -> None:
    subscribers = tmp_path / "subscribers.json"
    library = read_library_file(LIBRARIES / "world_models.bib")
    reader = add_subscriber(subscribers, "ada@example.org", library=library)
    assert reader.library is not None
    assert reader.library.parent == libraries_dir(subscribers) == tmp_path / "subscribers.libraries"
    stored = load_stored_library(reader.library)
    assert stored.entries == library.entries
    assert stored.sha256 == library.sha256
    record = json.loads(subscribers.read_text())["subscribers"][0]
    assert record["library"]["entries"] == 4
    assert record["library"]["source"] == "world_models.bib"
    # updating topics later keeps the library
    again = add_subscriber(subscribers, "ada@example.org", include=["robot"])
    assert again.library == reader.library
    assert load_subscribers(subscribers)[0].library == reader.library


def test_set_library_replaces_it_and_refuses_unknown_readers(tmp_path: Path) -> None:
    subscribers = tmp_path / "subscribers.json"
    add_subscriber(
        subscribers, "ada@example.org", library=read_library_file(LIBRARIES / "world_models.bib")
    )
    replaced = set_library(
        subscribers, "ada@example.org", read_library_file(LIBRARIES / "diffusion.ris")
    )
    assert load_stored_library(replaced.library).entries[0].arxiv_id == "2608.10615"
    with pytest.raises(KeyError):
        set_library(subscribers, "bob@example.org", read_library_file(LIBRARIES / "diffusion.ris"))


def test_entry_text_joins_title_abstract_keywords() -> None:
    entry = LibraryEntry("2608.1", "Title", "Abstract", ("k1", "k2"))
    assert entry.text == "Title Abstract k1 k2"
    assert LibraryEntry("2608.1").text == ""


# ---- the command line ---------------------------------------------------------------------


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def subscribers_file(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "subs.json"
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(path))
    return path


def test_cli_add_with_library_then_replace_it(subscribers_file: Path, capsys) -> None:
    bib = str(LIBRARIES / "world_models.bib")
    code, out, _ = run_cli("subscribers", "add", "ada@example.org", "--library", bib, capsys=capsys)
    assert code == 0
    assert "with a library of 4 papers (3 with an arXiv id) from world_models.bib (bibtex)" in out
    code, out, _ = run_cli(
        "subscribers", "library", "ada@example.org", str(LIBRARIES / "agents.csv"), capsys=capsys
    )
    assert code == 0
    assert "replaced the library of ada@example.org" in out
    reader = load_subscribers(subscribers_file)[0]
    assert load_stored_library(reader.library).fmt == "zotero-csv"
    _, out, _ = run_cli("subscribers", "list", capsys=capsys)
    assert out.startswith("ada@example.org\tdaily\tactive\tinclude: -\tlibrary: ")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("bad", ["empty.bib", "broken.bib", "not_a_list.txt", "missing.csv"])
def test_cli_bad_library_exits_1_and_changes_nothing(
    subscribers_file: Path, capsys, bad: str
) -> None:
    ris = str(LIBRARIES / "diffusion.ris")
    add = ("subscribers", "add", "ada@example.org", "--include", "diffusion", "--library", ris)
    assert run_cli(*add, capsys=capsys)[0] == 0
    before = _snapshot(subscribers_file.parent)
    bad_path = str(LIBRARIES / bad)

    code, out, err = run_cli("subscribers", "library", "ada@example.org", bad_path, capsys=capsys)
    assert code == 1
    assert out == ""
    assert err.startswith(f"paperdigest: {bad_path}: ")
    assert err.count("\n") == 1
    code, _, err = run_cli(
        "subscribers", "add", "ada@example.org", "--cadence", "weekly", "--library", bad_path,
        capsys=capsys,
    )  # fmt: skip
    assert code == 1
    assert bad_path in err
    # the reader's settings (topics, cadence, library) are exactly as they were
    assert _snapshot(subscribers_file.parent) == before
    reader = load_subscribers(subscribers_file)[0]
    assert reader.cadence == "daily"
    assert reader.topics.include == ("diffusion",)


def test_cli_library_for_an_unknown_reader_exits_1(subscribers_file: Path, capsys) -> None:
    code, _, err = run_cli(
        "subscribers", "library", "nobody@example.org", str(LIBRARIES / "diffusion.ris"),
        capsys=capsys,
    )  # fmt: skip
    assert code == 1
    assert "nobody@example.org is not in" in err
    assert not subscribers_file.exists()
