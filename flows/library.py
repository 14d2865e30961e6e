"""Readers' libraries: what a reader already reads, from the files reference managers export.

A library file may be BibTeX, a Zotero CSV export, RIS, or a plain list of arXiv ids and
Hugging Face / arXiv paper URLs. Parsing is a pure function of the text; a file that yields
no usable entry is refused with a `LibraryError` naming the file and the reason.

The parsed entries of each reader are stored as a small JSON file beside the subscribers file
(`subscribers.libraries/<address>.json`), so the ranking never needs the original export.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.atomic import write_atomic

log = logging.getLogger("paperdigest.library")

FORMATS = ("bibtex", "zotero-csv", "ris", "ids")
MAX_FILE_BYTES = 20_000_000
MAX_ENTRIES = 20_000
STORE_VERSION = 1

# New-style arXiv ids (YYMM.NNNN[N]) and old-style ones (hep-th/9901001), version optional.
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z][a-z.\-]*/\d{7}"
_ID_AT = re.compile(rf"(?<![\w.])(?:arxiv[:\s]\s*)?({_NEW_ID}|{_OLD_ID})(?:v\d+)?(?![\w])", re.I)
_BARE_ID = re.compile(rf"(?:arxiv:\s*)?({_NEW_ID}|{_OLD_ID})(?:v\d+)?", re.I)
_PAPER_URL = re.compile(
    rf"https?://(?:www\.)?(?:huggingface\.co/papers|(?:export\.)?arxiv\.org/(?:abs|pdf|html))"
    rf"/({_NEW_ID}|{_OLD_ID})(?:v\d+)?(?:\.pdf)?/?(?:[?#].*)?",
    re.I,
)
_ARXIV_DOI = re.compile(rf"10\.48550/arxiv\.({_NEW_ID}|{_OLD_ID})", re.I)
# Zotero CSV columns that can carry an arXiv id, and those holding text.
_CSV_ID_COLUMNS = ("Url", "DOI", "Extra", "Archive ID", "Report Number", "Loc. in Archive")


class LibraryError(ValueError):
    """A library file cannot be used; the message names the file and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    """One paper of a reader's library: its arXiv id when known, and whatever text it had."""

    arxiv_id: str | None = None
    title: str = ""
    abstract: str = ""
    keywords: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """Title, abstract and keywords as one text (empty when the entry has none)."""
        return " ".join(p for p in (self.title, self.abstract, " ".join(self.keywords)) if p)


@dataclass(frozen=True, slots=True)
class Library:
    """A parsed library file: its entries and what kind of file it was."""

    source: str  # the file name it came from
    fmt: str  # one of FORMATS
    entries: tuple[LibraryEntry, ...]

    @property
    def sha256(self) -> str:
        """A hash of the entries (not of the file), the ranking cache's key for this library."""
        return library_hash(self.entries)


# ---------------------------------------------------------------------------------------
# Parsing


def read_library_file(path: Path) -> Library:
    """Read and parse a library export; LibraryError (naming the file) when it is unusable."""
    path = Path(path)
    name = str(path)
    try:
        if not path.is_file():
            raise LibraryError(name, "no such file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LibraryError(name, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
        data = path.read_bytes()
    except OSError as err:
        raise LibraryError(name, f"cannot read the file: {err.strerror or err}") from err
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LibraryError(name, f"not UTF-8 text (byte {err.start}); export as UTF-8") from err
    return parse_library(text, name)


def parse_library(text: str, name: str) -> Library:
    """Parse library text of any supported format (detected from the content)."""
    if "\x00" in text:
        raise LibraryError(name, "binary data, not a library export")
    if not text.strip():
        raise LibraryError(name, "the file is empty")
    fmt = detect_format(text)
    parser = {
        "bibtex": parse_bibtex,
        "zotero-csv": parse_zotero_csv,
        "ris": parse_ris,
        "ids": parse_id_list,
    }[fmt]
    entries = _deduplicated(parser(text, name))
    if not entries:
        raise LibraryError(
            name, f"no usable entry in this {fmt} file (each needs an arXiv id or a title)"
        )
    if len(entries) > MAX_ENTRIES:
        raise LibraryError(name, f"{len(entries):,} entries; the limit is {MAX_ENTRIES:,}")
    return Library(source=Path(name).name, fmt=fmt, entries=tuple(entries))


def detect_format(text: str) -> str:
    """Which kind of export the text is: bibtex, zotero-csv, ris or ids."""
    body = text.lstrip()
    first_line = body.split("\n", 1)[0]
    if re.match(r"TY  - ", body):
        return "ris"
    if re.search(r"^\s*@\s*[A-Za-z]+\s*[{(]", text, re.M):
        return "bibtex"
    header = [h.strip().strip('"').lower() for h in first_line.split(",")]
    if "title" in header and len(header) >= 3:
        return "zotero-csv"
    return "ids"


def parse_bibtex(text: str, name: str) -> list[LibraryEntry]:
    """Entries of a BibTeX file (title, abstract, keywords; the arXiv id from eprint/url/doi)."""
    import bibtexparser

    try:
        library = bibtexparser.parse_string(text)
    except Exception as err:  # bibtexparser raises assorted errors on broken input
        raise LibraryError(name, f"not valid BibTeX: {_one_line(str(err))}") from err
    if not library.entries:
        reason = "no BibTeX entry could be read"
        if library.failed_blocks:
            line = library.failed_blocks[0].start_line + 1
            reason += f" (the first broken one starts on line {line})"
        raise LibraryError(name, reason)
    if library.failed_blocks:
        log.warning("%s: %d broken BibTeX block(s) skipped", name, len(library.failed_blocks))
    entries = []
    for entry in library.entries:
        fields = {k.lower(): _bib_text(str(f.value)) for k, f in entry.fields_dict.items()}
        ids = [fields.get(k, "") for k in ("eprint", "arxivid", "arxiv", "url", "doi", "journal")]
        prefixed = fields.get("archiveprefix", "").lower() == "arxiv"
        entries.append(
            LibraryEntry(
                arxiv_id=_arxiv_id_in(ids, bare_ok=prefixed or bool(fields.get("arxivid"))),
                title=fields.get("title", ""),
                abstract=fields.get("abstract", ""),
                keywords=_split_keywords(fields.get("keywords", "")),
            )
        )
    return entries


def parse_zotero_csv(text: str, name: str) -> list[LibraryEntry]:
    """Entries of a Zotero CSV export ("Title", "Abstract Note", "Manual Tags", "Url", …)."""
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as err:
        raise LibraryError(name, f"not valid CSV: {err}") from err
    entries = []
    for row in rows:
        values = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
        ids = [values.get(c, "") for c in _CSV_ID_COLUMNS]
        tags = ";".join(values.get(c, "") for c in ("Manual Tags", "Automatic Tags"))
        entries.append(
            LibraryEntry(
                arxiv_id=_arxiv_id_in(ids, bare_ok=False),
                title=_one_line(values.get("Title", "")),
                abstract=_one_line(values.get("Abstract Note", "")),
                keywords=_split_keywords(tags),
            )
        )
    return entries


def parse_ris(text: str, name: str) -> list[LibraryEntry]:
    """Entries of an RIS export (TI/T1, AB, KW, UR, DO)."""
    import rispy

    try:
        records = rispy.loads(text)
    except Exception as err:  # rispy raises assorted errors on broken input
        raise LibraryError(name, f"not valid RIS: {_one_line(str(err))}") from err
    entries = []
    for record in records:
        ids = [*record.get("urls", []), record.get("doi", ""), *record.get("notes", [])]
        ids += [record.get("number", ""), record.get("accession_number", "")]
        title = record.get("title") or record.get("primary_title") or ""
        entries.append(
            LibraryEntry(
                arxiv_id=_arxiv_id_in([str(i) for i in ids], bare_ok=False),
                title=_one_line(str(title)),
                abstract=_one_line(str(record.get("abstract", ""))),
                keywords=tuple(_one_line(str(k)) for k in record.get("keywords", []) if k),
            )
        )
    return entries


def parse_id_list(text: str, name: str) -> list[LibraryEntry]:
    """A plain list: one arXiv id or paper URL per line; blank lines and # comments skipped."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("http") else raw.strip()
        if not line:
            continue
        arxiv_id = _id_of_line(line)
        if arxiv_id is None:
            raise LibraryError(
                name, f"line {number}: not an arXiv id or paper URL: {_clip(line, 60)!r}"
            )
        entries.append(LibraryEntry(arxiv_id=arxiv_id))
    return entries


def _id_of_line(line: str) -> str | None:
    for pattern in (_PAPER_URL, _BARE_ID):
        match = pattern.fullmatch(line)
        if match:
            return match.group(1).lower() if "/" in match.group(1) else match.group(1)
    return None


def _arxiv_id_in(values: Iterable[str], *, bare_ok: bool) -> str | None:
    """The first arXiv id in URLs, arXiv DOIs, "arXiv:…" notes (or bare ids when bare_ok)."""
    for value in values:
        if not value:
            continue
        for pattern in (_PAPER_URL, _ARXIV_DOI):
            match = pattern.search(value)
            if match:
                return match.group(1)
        match = _ID_AT.search(value)
        if match and (bare_ok or re.search(r"arxiv", value, re.I)):
            return match.group(1)
    return None


def _bib_text(value: str) -> str:
    """BibTeX field text without protecting braces or the commonest escapes."""
    value = re.sub(r"\\[`'^\"~=.]\{?([A-Za-z])\}?", r"\1", value)
    value = value.replace("\\&", "&").replace("\\%", "%").replace("\\_", "_").replace("~", " ")
    return _one_line(value.replace("{", "").replace("}", ""))


def _split_keywords(value: str) -> tuple[str, ...]:
    return tuple(k for k in (_one_line(p) for p in re.split(r"[;,]", value)) if k)


def _deduplicated(entries: Sequence[LibraryEntry]) -> list[LibraryEntry]:
    """Entries with an id or a title, each arXiv id once (the first one with text wins)."""
    kept: dict[str, LibraryEntry] = {}
    for index, entry in enumerate(entries):
        if not entry.arxiv_id and not entry.title:
            continue
        key = entry.arxiv_id or f"#{index}"
        if key not in kept or (not kept[key].text and entry.text):
            kept[key] = entry
    return list(kept.values())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------
# The stored copy beside the subscribers file


def library_hash(entries: Sequence[LibraryEntry]) -> str:
    """SHA-256 of the entries' ids and text, in order: changes whenever the library does."""
    digest = hashlib.sha256()
    for entry in entries:
        fields = (entry.arxiv_id or "", entry.title, entry.abstract, "\x1f".join(entry.keywords))
        digest.update(("\x1e".join(fields) + "\n").encode("utf-8"))
    return digest.hexdigest()


def libraries_dir(subscribers_path: Path) -> Path:
    """Where the readers' libraries live: `<subscribers file>.libraries/` beside it."""
    return subscribers_path.with_name(subscribers_path.name.removesuffix(".json") + ".libraries")


def library_file_name(address: str) -> str:
    """A file name for one reader's library (the address is already validated)."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", address.replace("@", "-at-"))
    tag = hashlib.sha256(address.lower().encode("utf-8")).hexdigest()[:8]
    return f"{slug[:80]}-{tag}.json"


def write_library(path: Path, library: Library) -> None:
    """Write a reader's parsed library atomically (temporary file, fsync, rename)."""
    payload = {
        "version": STORE_VERSION,
        "source": library.source,
        "format": library.fmt,
        "sha256": library.sha256,
        "entries": [asdict(e) for e in library.entries],
    }
    write_atomic(path, (json.dumps(payload, indent=1) + "\n").encode("utf-8"), durable=True)


def load_stored_library(path: Path) -> Library:
    """A reader's stored library; LibraryError (naming the file) when it is unreadable."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = tuple(
            LibraryEntry(
                arxiv_id=e.get("arxiv_id"),
                title=str(e.get("title", "")),
                abstract=str(e.get("abstract", "")),
                keywords=tuple(str(k) for k in e.get("keywords", ())),
            )
            for e in payload["entries"]
        )
        return Library(source=str(payload["source"]), fmt=str(payload["format"]), entries=entries)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise LibraryError(str(path), f"cannot read the stored library: {err}") from err
