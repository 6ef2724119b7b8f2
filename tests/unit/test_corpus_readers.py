"""Corpus readers on tiny hand-made files: every format and compression, every kind of bad input."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
from pathlib import Path

import pytest

from rag.corpus.readers import FORMATS, Fields, Redirect, detect_format, open_reader
from rag.errors import BadInputError
from rag.types import Document

COMPRESS = {"": lambda b: b, ".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}

WIKI_RECORDS = [
    {"id": "12", "url": "?curid=12", "title": "Anarchism", "text": "Anarchism\n\nAnarchism is a political philosophy."},
    {"id": "25", "url": "?curid=25", "title": "Autism", "text": "Autism is a disorder.\nSigns.\nParents notice signs."},
    {"id": "39", "url": "?curid=39", "title": "Albedo", "text": ""},
]


def write(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path`, compressed by the path's suffix."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(COMPRESS.get(path.suffix, COMPRESS[""])(data))
    return path


def jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def read(path, format=None, **kw):
    fields = kw.pop("fields", Fields())
    r = open_reader(path, format, fields=fields, **kw)
    return r, list(r.records())


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2", ".xz"])
def test_wikiextractor_jsonl_every_compression(tmp_path, suffix):
    path = write(tmp_path / f"wiki.jsonl{suffix}", jsonl(WIKI_RECORDS))
    assert detect_format(path) == "wikiextractor"
    r, docs = read(path)
    assert [d.doc_id for d in docs] == ["12", "25", "39"]
    # the title repeated on the first line is dropped; other lines are kept
    assert docs[0] == Document("12", "Anarchism", "Anarchism is a political philosophy.")
    assert docs[1].text == WIKI_RECORDS[1]["text"]
    assert docs[2].text == ""
    assert r.stats.n_docs == 3 and r.stats.n_bad == 0
    assert r.bytes_read() == path.stat().st_size


def test_title_line_only_dropped_when_it_is_the_title(tmp_path):
    rec = {"id": "1", "url": "", "title": "Paris", "text": "Paris Hilton is not the city.\nMore."}
    _, docs = read(write(tmp_path / "w.jsonl", jsonl([rec])))
    assert docs[0].text == rec["text"]


def test_generic_jsonl_with_field_names(tmp_path):
    recs = [{"docid": 7, "name": "Seven", "body": "seven words"}, {"docid": "8", "name": None, "body": "eight"}]
    path = write(tmp_path / "c.jsonl.gz", jsonl(recs))
    assert detect_format(path) == "jsonl"
    _, docs = read(path, fields=Fields(id="docid", title="name", text="body"))
    assert docs == [Document("7", "Seven", "seven words"), Document("8", "", "eight")]


def test_missing_id_field_lists_the_fields_present(tmp_path):
    path = write(tmp_path / "c.jsonl", jsonl([{"title": "A", "text": "a"}]))
    with pytest.raises(BadInputError, match=r"c\.jsonl:1: missing field 'id' \(fields present: 'title', 'text'\).*--number-docs"):
        read(path)


def test_number_docs_uses_line_numbers(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"text": "a"}\n\n{"text": "b"}\n')
    _, docs = read(path, fields=Fields(title=None, number_docs=True))
    assert docs == [Document("1", "", "a"), Document("3", "", "b")]


def test_missing_field_in_a_later_record(tmp_path):
    path = write(tmp_path / "c.jsonl", jsonl([{"id": 1, "title": "A", "text": "a"}, {"id": 2, "title": "B"}, {"id": 3, "title": "C", "text": "c"}]))
    with pytest.raises(BadInputError, match=r"c\.jsonl:2: missing field 'text'"):
        read(path)
    r, docs = read(path, skip_bad=True)
    assert [d.doc_id for d in docs] == ["1", "3"]
    assert r.stats.n_bad == 1 and "c.jsonl:2" in r.stats.bad_examples[0]


def test_missing_field_in_the_first_record_is_an_error_even_with_skip_bad(tmp_path):
    # a wrong field name, not a damaged record: skipping every line would hide it
    path = write(tmp_path / "c.jsonl", jsonl([{"id": 1, "body": "a"}, {"id": 2, "body": "b"}]))
    with pytest.raises(BadInputError, match="missing field 'title'"):
        read(path, skip_bad=True)


@pytest.mark.parametrize("suffix", ["", ".xz"])
def test_line_that_is_not_json(tmp_path, suffix):
    good = jsonl(WIKI_RECORDS[:2])
    path = write(tmp_path / f"w.jsonl{suffix}", good + '{"id": "3", "title": "T", "text": \n' + jsonl(WIKI_RECORDS[2:]))
    with pytest.raises(BadInputError, match=rf"w\.jsonl{suffix}:3: not valid JSON"):
        read(path)
    r, docs = read(path, skip_bad=True)
    assert [d.doc_id for d in docs] == ["12", "25", "39"]
    assert r.stats.n_bad == 1


def test_json_that_is_not_an_object(tmp_path):
    path = write(tmp_path / "w.jsonl", '{"id": "1", "title": "T", "text": "x"}\n[1, 2]\n')
    with pytest.raises(BadInputError, match=r"w\.jsonl:2: expected a JSON object, got a list"):
        read(path)


def test_text_of_the_wrong_type(tmp_path):
    path = write(tmp_path / "w.jsonl", '{"id": "1", "title": "T", "text": "x"}\n{"id": "2", "title": "T", "text": 5}\n')
    with pytest.raises(BadInputError, match=r"w\.jsonl:2: field 'text' is a int"):
        read(path)


def test_invalid_utf8(tmp_path):
    data = jsonl(WIKI_RECORDS[:1]).encode() + b'{"id": "2", "title": "B\xff\xfe", "text": "b"}\n' + jsonl(WIKI_RECORDS[1:2]).encode()
    path = write(tmp_path / "w.jsonl.gz", data)
    with pytest.raises(BadInputError, match=r"w\.jsonl\.gz:2: invalid UTF-8"):
        read(path)
    r, docs = read(path, skip_bad=True)
    assert [d.doc_id for d in docs] == ["12", "25"] and r.stats.n_bad == 1


def test_nonexistent_and_empty_files(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        open_reader(tmp_path / "missing.jsonl")
    r, docs = read(write(tmp_path / "empty.jsonl", ""))
    assert docs == [] and r.stats.n_docs == 0


def test_unknown_format_lists_the_choices(tmp_path):
    path = write(tmp_path / "notes.txt", "just some text\n")
    with pytest.raises(BadInputError, match="cannot tell the corpus format.*--format.*jsonl.*mediawiki-xml"):
        detect_format(path)
    with pytest.raises(BadInputError, match="unknown corpus format 'csv'; choose one of: jsonl, mediawiki-xml, parquet, tsv"):
        open_reader(path, "csv")


def test_format_override(tmp_path):
    path = write(tmp_path / "records.txt", jsonl(WIKI_RECORDS[1:2]))
    _, docs = read(path, "jsonl")
    assert docs[0].doc_id == "25"


def test_registry_holds_every_builtin_format():
    assert set(FORMATS) >= {"wikiextractor", "wikiextractor-doc", "jsonl", "tsv", "parquet", "mediawiki-xml"}


def test_reading_streams(tmp_path):
    # the first document comes out long before the (compressed) file is consumed: constant memory
    rng = random.Random(0)
    recs = [{"id": str(i), "url": "", "title": f"T{i}", "text": "%x " % rng.getrandbits(80000)} for i in range(300)]
    path = write(tmp_path / "big.jsonl.gz", jsonl(recs))  # ~4 MB: incompressible text
    r = open_reader(path)
    it = r.documents()
    assert next(it).doc_id == "0"
    assert r.bytes_read() < path.stat().st_size / 2


# ---- TSV ------------------------------------------------------------------------------------------------------


def test_tsv_with_header_and_quotes(tmp_path):
    data = 'id\ttext\ttitle\n1\t"He said ""hi""\tthere"\tGreeting\n2\tplain text\tPlain\n\n'
    path = write(tmp_path / "psgs.tsv.gz", data)
    assert detect_format(path) == "tsv"
    r, docs = read(path)
    assert docs == [Document("1", "Greeting", 'He said "hi"\tthere'), Document("2", "Plain", "plain text")]


def test_tsv_wrong_column_count(tmp_path):
    path = write(tmp_path / "p.tsv", "id\ttitle\ttext\n1\tA\ta\n2\tB\n3\tC\tc\n")
    with pytest.raises(BadInputError, match=r"p\.tsv:3: 2 columns but the header has 3 \(id, title, text\)"):
        read(path)
    r, docs = read(path, skip_bad=True)
    assert [d.doc_id for d in docs] == ["1", "3"] and r.stats.n_bad == 1


def test_tsv_missing_column(tmp_path):
    path = write(tmp_path / "p.tsv", "docid\ttext\n1\ta\n")
    with pytest.raises(BadInputError, match=r"p\.tsv:2: missing field 'id' \(fields present: 'docid', 'text'\)"):
        read(path)
    _, docs = read(path, fields=Fields(id="docid", title=None))
    assert docs == [Document("1", "", "a")]


def test_tsv_invalid_utf8(tmp_path):
    path = write(tmp_path / "p.tsv", b"id\ttitle\ttext\n1\tA\ta\n2\tB\t\xc3\x28\n")
    with pytest.raises(BadInputError, match=r"p\.tsv:3: invalid UTF-8"):
        read(path)


# ---- Parquet ---------------------------------------------------------------------------------------------------


def _parquet(path: Path, n: int, **cols) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), path, row_group_size=max(1, n // 3))
    return path


def test_parquet_streamed_in_batches(tmp_path, monkeypatch):
    n = 10
    path = _parquet(tmp_path / "c.parquet", n, pid=[f"p{i}" for i in range(n)], head=[f"H{i}" for i in range(n)],
                    body=[f"text {i}" for i in range(n)], extra=list(range(n)))
    assert detect_format(path) == "parquet"
    monkeypatch.setattr(FORMATS["parquet"], "batch_rows", 3)
    r, docs = read(path, fields=Fields(id="pid", title="head", text="body"))
    assert docs == [Document(f"p{i}", f"H{i}", f"text {i}") for i in range(n)]
    assert r.bytes_read() == path.stat().st_size


def test_parquet_missing_column(tmp_path):
    path = _parquet(tmp_path / "c.parquet", 1, id=["1"], text=["x"])
    with pytest.raises(BadInputError, match=r"no column 'title' \(columns: id, text\)"):
        read(path)


def test_parquet_null_id_is_bad(tmp_path):
    path = _parquet(tmp_path / "c.parquet", 2, id=["1", None], title=["A", "B"], text=["a", "b"])
    with pytest.raises(BadInputError, match=r"c\.parquet:2: field 'id' is empty"):
        read(path)


def test_not_a_parquet_file(tmp_path):
    path = write(tmp_path / "c.parquet", "id,title\n")
    with pytest.raises(BadInputError, match="not a readable Parquet file"):
        read(path)


# ---- wikiextractor <doc> output -------------------------------------------------------------------------------


def test_wikiextractor_doc_format_sniffed(tmp_path):
    data = (
        '<doc id="12" url="https://en.wikipedia.org/wiki?curid=12" title="Anarchism &amp; co">\n'
        "Anarchism &amp; co\n\nAnarchism is a philosophy.\nSecond line.\n</doc>\n"
        '<doc id="25" url="x" title="Autism">\nAutism\n\nAutism is a disorder.\n</doc>\n'
    )
    path = write(tmp_path / "wiki_00.bz2", data)
    assert detect_format(path) == "wikiextractor-doc"
    _, docs = read(path)
    assert docs == [
        Document("12", "Anarchism & co", "Anarchism &amp; co\n\nAnarchism is a philosophy.\nSecond line.\n"),
        Document("25", "Autism", "Autism is a disorder.\n"),
    ]


def test_wikiextractor_doc_truncated(tmp_path):
    path = write(tmp_path / "wiki_01", '<doc id="1" url="" title="A">\nA\n\ntext\n')
    with pytest.raises(BadInputError, match=r"wiki_01:1: <doc> is never closed"):
        read(path)


# ---- MediaWiki XML ---------------------------------------------------------------------------------------------

XML = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo><sitename>Wikipedia</sitename></siteinfo>
  <page>
    <title>AccessibleComputing</title><ns>0</ns><id>10</id>
    <redirect title="Computer accessibility" />
    <revision><id>1</id><text xml:space="preserve">#REDIRECT [[Computer accessibility]] {{R from move}}</text></revision>
  </page>
  <page>
    <title>Anarchism</title><ns>0</ns><id>12</id>
    <revision><id>2</id><text xml:space="preserve">{{Infobox|name={{nested|x}}}}
'''Anarchism''' is a [[political philosophy]] that advocates [[self-governance|self-governed]] societies.&lt;ref&gt;{{cite book|title=X}}&lt;/ref&gt;
&lt;!-- hidden comment --&gt;
[[File:A.jpg|thumb|A [[caption]] here]]
== History ==
It began in the ''1840s''.
== References ==
{{reflist}}
[[Category:Political ideologies]]
[[de:Anarchismus]]</text></revision>
  </page>
  <page>
    <title>Wikipedia:About</title><ns>4</ns><id>13</id>
    <revision><id>3</id><text xml:space="preserve">Project page.</text></revision>
  </page>
  <page>
    <title>Old redirect</title><ns>0</ns><id>14</id>
    <revision><id>4</id><text xml:space="preserve">#redirect [[anarchism#History|x]]</text></revision>
  </page>
</mediawiki>
"""


@pytest.mark.parametrize("suffix", ["", ".bz2"])
def test_mediawiki_xml(tmp_path, suffix):
    path = write(tmp_path / f"dump.xml{suffix}", XML)
    assert detect_format(path) == "mediawiki-xml"
    r, recs = read(path)
    assert recs == [
        Redirect("AccessibleComputing", "Computer accessibility"),
        Document(
            "12",
            "Anarchism",
            "Anarchism is a political philosophy that advocates self-governed societies.\nHistory.\nIt began in the 1840s.",
        ),
        Redirect("Old redirect", "Anarchism"),
    ]
    assert r.stats.n_redirects == 2 and r.stats.n_other_namespaces == 1 and r.stats.n_docs == 1
    assert [d.doc_id for d in open_reader(path).documents()] == ["12"]


def test_mediawiki_xml_sniffed_without_suffix(tmp_path):
    assert detect_format(write(tmp_path / "dump", '<?xml version="1.0"?>\n' + XML)) == "mediawiki-xml"


def test_malformed_xml_names_the_line(tmp_path):
    path = write(tmp_path / "dump.xml", XML.replace("<ns>4</ns>", "<ns>4</nx>"))
    with pytest.raises(BadInputError, match=r"dump\.xml:\d+: malformed XML"):
        read(path)


def test_xml_that_is_not_a_dump(tmp_path):
    with pytest.raises(BadInputError, match="not a MediaWiki dump"):
        read(write(tmp_path / "x.xml", "<html><body/></html>"))


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_truncated_compressed_file(tmp_path, suffix):
    rng = random.Random(1)
    recs = [{"id": str(i), "url": "", "title": "T", "text": "%x" % rng.getrandbits(4000)} for i in range(50)]
    path = write(tmp_path / f"w.jsonl{suffix}", jsonl(recs))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadInputError, match=rf"w\.jsonl\{suffix}: corrupt or truncated {suffix} data"):
        read(path)


def test_stopping_early_ends_the_decompressing_thread(tmp_path):
    import threading

    path = write(tmp_path / "w.jsonl.xz", jsonl(WIKI_RECORDS * 100))
    r = open_reader(path)
    it = r.records()
    next(it)
    it.close()  # what a `break` out of the loop does once the generator is dropped
    assert not [t for t in threading.enumerate() if t.name.startswith("decompress w.jsonl.xz")]


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2", ".xz", ".XZ"])
def test_open_text_reads_every_compression(tmp_path, suffix):
    """rag.compressed.open_text: the one opener of compressed text (lexicon surface forms, the world's name lists)."""
    from rag.compressed import open_text

    path = tmp_path / f"forms.tsv{suffix}"
    path.write_bytes(COMPRESS[suffix.lower()]("mozart\tW_A_Mozart\r\nsalzburg\tSalzburg\n".encode()))
    with open_text(path) as f:
        assert f.read().splitlines() == ["mozart\tW_A_Mozart", "salzburg\tSalzburg"]
    with pytest.raises(BadInputError, match="no such file"):
        open_text(tmp_path / "missing.tsv.xz")
