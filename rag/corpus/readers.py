"""Streaming corpus readers: one input file -> Documents (and, for MediaWiki dumps, Redirects).

Every reader holds one record at a time (memory does not grow with the file) and reads plain,
.gz, .bz2 or .xz files (by suffix). Formats live in the FORMATS registry; `detect_format` picks one
from the file name, or from the first bytes when the name says nothing (wikiextractor's `wiki_00`).

    format           file                                   records
    wikiextractor    .jsonl with {"id","url","title","text"} one article per line; a first text line
                                                            repeating the title is dropped
    wikiextractor-doc  wikiextractor's default output        <doc id=.. url=.. title=..> ... </doc>
    jsonl            any other .jsonl/.ndjson               fields named by id/title/text_field
    tsv              .tsv with a header row                 same; CSV double-quote quoting allowed
    parquet          .parquet                               same; read by record batches
    mediawiki-xml    pages-articles .xml dump               namespace-0 pages, wikitext stripped to
                                                            plain text; redirects become Redirect records

Malformed input (not JSON, invalid UTF-8, missing fields, wrong column count) raises BadInputError
naming the file and line; with skip_bad=True such records are skipped and counted in `stats`.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from rag.compressed import CountingFile, open_binary, split_suffixes
from rag.errors import BadInputError
from rag.registry import Registry
from rag.types import Document

log = logging.getLogger(__name__)

# format name -> CorpusReader subclass
FORMATS = Registry("corpus format")

MAX_EXAMPLES = 5  # bad records quoted in the stats (and the manifest)


@dataclass(frozen=True)
class Redirect:
    """A redirect page of a MediaWiki dump: `alias` is another name of the article `target`."""

    alias: str
    target: str


@dataclass
class ReadStats:
    """What a reader saw besides the documents it yielded."""

    n_docs: int = 0  # documents yielded (empty ones included)
    n_bad: int = 0  # malformed records skipped (skip_bad=True)
    bad_examples: list[str] = field(default_factory=list)  # "file:line: reason", the first few
    n_redirects: int = 0
    n_other_namespaces: int = 0  # dump pages outside the article namespace

    def as_dict(self) -> dict:
        return {
            "n_docs": self.n_docs,
            "n_bad": self.n_bad,
            "bad_examples": list(self.bad_examples),
            "n_redirects": self.n_redirects,
            "n_other_namespaces": self.n_other_namespaces,
        }


@dataclass(frozen=True)
class Fields:
    """Names of the id, title and text fields of generic records.

    title=None: records have no title (passages get an empty one). number_docs=True: records have no
    id; the 1-based line (or row) number is used instead.
    """

    id: str = "id"
    title: str | None = "title"
    text: str = "text"
    number_docs: bool = False


class CorpusReader(ABC):
    """Reads one file. `records()` streams Documents (and Redirects); `documents()` is derived."""

    name: str = ""
    suffixes: tuple[str, ...] = ()  # format suffixes auto-detected as this format

    def __init__(self, path: str | os.PathLike, *, fields: Fields = Fields(), skip_bad: bool = False):
        self.path = Path(path)
        self.fields = fields
        self.skip_bad = skip_bad
        self.stats = ReadStats()
        self._raw: CountingFile | None = None
        self.line: int | None = None  # line (or row) of the generic record last read, for messages

    @abstractmethod
    def records(self) -> Iterator[Document | Redirect]:
        """Stream the file's records in order; bad ones raise BadInputError (or are counted, skip_bad)."""

    def documents(self) -> Iterator[Document]:
        return (r for r in self.records() if isinstance(r, Document))

    def bytes_read(self) -> int:
        """Bytes of the (compressed) file consumed so far."""
        return self._raw.pos if self._raw is not None else 0

    def _open(self) -> IO[bytes]:
        f, self._raw = open_binary(self.path)
        return f

    def _bad(self, line: int | None, reason: str) -> None:
        """A malformed record: raise, or count it and go on (skip_bad)."""
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        if not self.skip_bad:
            raise BadInputError(f"{where}: {reason} (pass --skip-bad to skip such records)")
        self.stats.n_bad += 1
        if len(self.stats.bad_examples) < MAX_EXAMPLES:
            self.stats.bad_examples.append(f"{where}: {reason}")
        log.debug("skipped %s: %s", where, reason)  # one summary per source, not a warning per line

    def _document(self, rec: dict, line: int) -> Document | None:
        """A generic record -> Document, checking the configured fields; None when it was skipped."""
        self.line = line
        f = self.fields
        missing = [n for n in (None if f.number_docs else f.id, f.title, f.text) if n is not None and n not in rec]
        if missing:
            present = ", ".join(map(repr, rec)) or "none"
            msg = f"missing field {missing[0]!r} (fields present: {present})"
            if missing[0] == f.id:
                msg += "; choose the id field with --id-field, or number records by line with --number-docs"
            elif missing[0] == f.title:
                msg += "; choose it with --title-field, or --title-field '' for records without titles"
            else:
                msg += "; choose it with --text-field"
            if self.stats.n_docs == 0 and self.stats.n_bad == 0:
                # the first record already lacks it: a wrong field name, not a damaged record
                raise BadInputError(f"{self.path}:{line}: {msg}")
            self._bad(line, msg)
            return None
        text = rec[f.text]
        if text is None:
            text = ""
        if not isinstance(text, str):
            self._bad(line, f"field {f.text!r} is a {type(text).__name__}, expected a string")
            return None
        title = rec[f.title] if f.title is not None else ""
        title = "" if title is None else str(title)
        doc_id = str(line) if f.number_docs else rec[f.id]
        if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()) or isinstance(doc_id, (dict, list)):
            self._bad(line, f"field {f.id!r} is empty or not a scalar: {doc_id!r}")
            return None
        return Document(doc_id=str(doc_id).strip(), title=title.strip(), text=text)


def _decode(reader: CorpusReader, raw: bytes, line: int) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        reader._bad(line, f"invalid UTF-8 at byte {e.start} of the line ({raw[max(0, e.start - 10):e.start + 10]!r})")
        return None


@FORMATS.register("jsonl")
class JsonlReader(CorpusReader):
    """One JSON object per line; blank lines are ignored."""

    name = "jsonl"
    suffixes = (".jsonl", ".ndjson", ".json")

    def records(self) -> Iterator[Document | Redirect]:
        with self._open() as f:
            for line_no, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                s = _decode(self, raw, line_no)
                if s is None:
                    continue
                try:
                    rec = json.loads(s)
                except json.JSONDecodeError as e:
                    array = line_no == 1 and s.lstrip().startswith("[")
                    hint = "; a JSON array is not JSON lines (one object per line)" if array else ""
                    self._bad(line_no, f"not valid JSON ({e.msg} at column {e.colno}){hint}")
                    continue
                if not isinstance(rec, dict):
                    self._bad(line_no, f"expected a JSON object, got a {type(rec).__name__}")
                    continue
                doc = self._document(rec, line_no)
                if doc is not None:
                    yield self._finish(doc)

    def _finish(self, doc: Document) -> Document:
        self.stats.n_docs += 1
        return doc


def drop_title_line(title: str, text: str) -> str:
    """wikiextractor output may start with the title on its own line; the passage carries the title anyway."""
    head, sep, rest = text.lstrip().partition("\n")
    if title and head.strip() == title:
        return rest.lstrip()
    return text


@FORMATS.register("wikiextractor")
class WikiextractorJsonReader(JsonlReader):
    """wikiextractor --json output: {"id", "url", "title", "text"} per line (any extra keys ignored)."""

    name = "wikiextractor"
    suffixes = ()  # a .jsonl whose first record has these keys; see detect_format

    def _finish(self, doc: Document) -> Document:
        self.stats.n_docs += 1
        return Document(doc.doc_id, doc.title, drop_title_line(doc.title, doc.text))


_DOC_OPEN = re.compile(r'<doc\s+([^>]*)>\s*$')
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@FORMATS.register("wikiextractor-doc")
class WikiextractorDocReader(CorpusReader):
    """wikiextractor's default output: `<doc id="12" url=".." title="Anarchism">` text lines `</doc>`."""

    name = "wikiextractor-doc"
    suffixes = ()  # extensionless wiki_00 files; detected from the first bytes

    def records(self) -> Iterator[Document | Redirect]:
        import html

        attrs: dict[str, str] | None = None
        start = 0
        lines: list[str] = []
        with self._open() as f:
            for line_no, raw in enumerate(f, 1):
                s = _decode(self, raw, line_no)
                if s is None:
                    continue
                if attrs is None:
                    m = _DOC_OPEN.match(s.strip())
                    if m:
                        attrs = {k: html.unescape(v) for k, v in _ATTR.findall(m.group(1))}
                        start, lines = line_no, []
                        if "id" not in attrs:
                            self._bad(line_no, f"<doc> without an id attribute: {s.strip()[:80]!r}")
                            attrs = {"id": ""}
                    elif s.strip():
                        self._bad(line_no, f"text outside <doc ...> ... </doc>: {s.strip()[:80]!r}")
                elif s.strip() == "</doc>":
                    if attrs["id"]:
                        title = attrs.get("title", "")
                        self.stats.n_docs += 1
                        yield Document(attrs["id"], title, drop_title_line(title, "".join(lines)))
                    attrs = None
                else:
                    lines.append(s)
        if attrs is not None:
            self._bad(start, "<doc> is never closed by </doc> (truncated file?)")


@FORMATS.register("tsv")
class TsvReader(CorpusReader):
    """Tab-separated, header row first (names the fields); fields may be CSV-quoted (DPR's psgs_w100.tsv)."""

    name = "tsv"
    suffixes = (".tsv", ".tab")

    def records(self) -> Iterator[Document | Redirect]:
        csv.field_size_limit(1 << 30)  # whole articles can exceed the 128 KiB default
        line_no = 0

        def lines(f) -> Iterator[str]:
            nonlocal line_no
            for line_no, raw in enumerate(f, 1):  # noqa: B007 - line_no is read by the loop below
                s = _decode(self, raw, line_no)
                if s is not None:
                    yield s

        with self._open() as f:
            rows = csv.reader(lines(f), delimiter="\t", quotechar='"', strict=False)
            header = next(rows, None)
            if header is None:
                return
            header = [h.strip() for h in header]
            while True:
                try:
                    row = next(rows)
                except StopIteration:
                    break
                except csv.Error as e:
                    self._bad(line_no, f"cannot parse the row ({e})")
                    continue
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    self._bad(line_no, f"{len(row)} columns but the header has {len(header)} ({', '.join(header)})")
                    continue
                doc = self._document(dict(zip(header, row)), line_no)
                if doc is not None:
                    self.stats.n_docs += 1
                    yield doc


@FORMATS.register("parquet")
class ParquetReader(CorpusReader):
    """A Parquet file streamed by record batches; `line` in messages is the 1-based row number."""

    name = "parquet"
    suffixes = (".parquet", ".pq")
    batch_rows = 4096

    def records(self) -> Iterator[Document | Redirect]:
        import pyarrow.parquet as pq

        if not self.path.exists():
            raise BadInputError(f"{self.path}: no such file")
        if split_suffixes(self.path)[1]:
            raise BadInputError(f"{self.path}: Parquet files are compressed inside; decompress the outer file first")
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for non-Parquet bytes
            raise BadInputError(f"{self.path}: not a readable Parquet file ({e})") from e
        f = self.fields
        names = pf.schema_arrow.names
        wanted = [n for n in (None if f.number_docs else f.id, f.title, f.text) if n is not None]
        for n in wanted:
            if n not in names:
                raise BadInputError(
                    f"{self.path}: no column {n!r} (columns: {', '.join(names)}); choose it with "
                    "--id-field/--title-field/--text-field (or --number-docs, --title-field '')"
                )
        size = self.path.stat().st_size
        n_rows = max(pf.metadata.num_rows, 1)
        row = 0
        self._raw = CountingFile(io.BytesIO())  # progress: rows done as a share of the file size
        for batch in pf.iter_batches(batch_size=self.batch_rows, columns=wanted):
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                row += 1
                doc = self._document({n: cols[n][i] for n in wanted}, row)
                if doc is not None:
                    self.stats.n_docs += 1
                    yield doc
            self._raw.pos = size * row // n_rows


@FORMATS.register("mediawiki-xml")
class MediaWikiXmlReader(CorpusReader):
    """A pages-articles XML dump, streamed with iterparse: article pages (namespace 0) as plain text.

    Redirect pages are not articles: they are yielded as Redirect(alias=page title, target). Pages of
    other namespaces (Wikipedia:, Template:, ...) are counted and skipped. The doc id is the page id.
    """

    name = "mediawiki-xml"
    suffixes = (".xml",)

    def records(self) -> Iterator[Document | Redirect]:
        import xml.etree.ElementTree as ET

        from rag.corpus.wikitext import normalize_title, redirect_target, strip_markup

        f = self._open()
        parser = ET.iterparse(f, events=("start", "end"))
        root = None
        try:
            for event, el in parser:
                if root is None:
                    root = el
                    if _local(el.tag) != "mediawiki":
                        raise BadInputError(f"{self.path}: root element is <{_local(el.tag)}>, not a MediaWiki dump <mediawiki>")
                if event != "end" or _local(el.tag) != "page":
                    continue
                page = {_local(c.tag): c for c in el}
                title = (page["title"].text or "").strip() if "title" in page else ""
                ns = (page["ns"].text or "").strip() if "ns" in page else "0"
                page_id = (page["id"].text or "").strip() if "id" in page else ""
                text_el = None
                if "revision" in page:
                    text_el = next((c for c in page["revision"] if _local(c.tag) == "text"), None)
                wikitext = (text_el.text or "") if text_el is not None else ""
                root.clear()  # drop the finished page (and any before it): constant memory
                if ns != "0":
                    self.stats.n_other_namespaces += 1
                    continue
                target = None
                if "redirect" in page:
                    target = normalize_title(page["redirect"].get("title", "").split("#")[0]) or None
                if target is None:
                    target = redirect_target(wikitext)
                if target is not None:
                    self.stats.n_redirects += 1
                    yield Redirect(alias=title, target=target)
                    continue
                if not page_id:
                    self._bad(None, f"page {title!r} has no <id>")
                    continue
                self.stats.n_docs += 1
                yield Document(doc_id=page_id, title=title, text=strip_markup(wikitext))
        except ET.ParseError as e:
            line, col = e.position
            # the XML cannot be resynchronised after a syntax error, so skip_bad cannot help here
            reason = str(e).split(": line ")[0]  # ElementTree appends ": line L, column C" itself
            raise BadInputError(f"{self.path}:{line}: malformed XML at column {col} ({reason})") from None
        finally:
            f.close()


def _local(tag: str) -> str:
    """'{http://www.mediawiki.org/xml/export-0.10/}page' -> 'page' (any dump schema version)."""
    return tag.rsplit("}", 1)[-1]


def _sniff(path: Path) -> str | None:
    """Guess a format from the first decompressed bytes (files without a telling suffix)."""
    f, _ = open_binary(path)
    with f:
        head = f.read(4096)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("<doc"):
        return "wikiextractor-doc"
    if text.startswith("<mediawiki") or (text.startswith("<?xml") and "<mediawiki" in text):
        return "mediawiki-xml"
    if text.startswith("{"):
        return _jsonl_flavour(head)
    return None


_WIKIEXTRACTOR_KEYS = {"id", "url", "title", "text"}


def _jsonl_flavour(head: bytes) -> str:
    """'wikiextractor' when the first record has wikiextractor's keys, else 'jsonl'."""
    first = head.split(b"\n", 1)[0]
    try:
        rec = json.loads(first)
    except ValueError:  # a first line longer than the peek, or not JSON: the reader reports it
        keys = set(re.findall(rb'"(\w+)"\s*:', first))
        return "wikiextractor" if {k.encode() for k in _WIKIEXTRACTOR_KEYS} <= keys else "jsonl"
    return "wikiextractor" if isinstance(rec, dict) and _WIKIEXTRACTOR_KEYS <= rec.keys() else "jsonl"


def detect_format(path: str | os.PathLike) -> str:
    """Format name for `path`: from its suffix (.jsonl.xz -> jsonl or wikiextractor), else its first bytes."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    suffix, _ = split_suffixes(p)
    for name, cls in FORMATS.items():
        if suffix and suffix in cls.suffixes:
            if name == "jsonl":
                f, _ = open_binary(p)
                with f:
                    return _jsonl_flavour(f.read(1 << 16))
            return name
    sniffed = _sniff(p)
    if sniffed is None:
        choices = ", ".join(sorted(FORMATS))
        raise BadInputError(f"{p}: cannot tell the corpus format from the name or content; pass --format ({choices})")
    return sniffed


def open_reader(
    path: str | os.PathLike, format: str | None = None, *, fields: Fields = Fields(), skip_bad: bool = False
) -> CorpusReader:
    """The reader for one file: `format` from the FORMATS registry, or detected."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    cls = FORMATS.get(format or detect_format(p))
    return cls(p, fields=fields, skip_bad=skip_bad)
