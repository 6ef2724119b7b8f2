"""build_passages and the `rag corpus` commands on tiny files: manifest, atomicity, ids, redirects."""
from __future__ import annotations

import bz2
import json
import lzma

import pytest
from click.testing import CliRunner

from rag.artifacts import partial_dir, quick_fingerprint
from rag.cli import main
from rag.corpus.build import _IdSet, build_passages, source_name
from rag.corpus.store import PassageStore
from rag.errors import ArtifactError, BadInputError

from tests.unit.test_corpus_readers import XML


def wiki(path, ids, words=150, compress=None):
    lines = "".join(
        json.dumps({"id": str(i), "url": f"?curid={i}", "title": f"Title {i}", "text": " ".join(f"d{i}w{j}" for j in range(words))}) + "\n"
        for i in ids
    )
    data = lines.encode()
    path.write_bytes(compress(data) if compress else data)
    return path


def test_build_two_sources(tmp_path):
    a = wiki(tmp_path / "a.jsonl.xz", [1, 2, 3], compress=lzma.compress)
    b = wiki(tmp_path / "b.jsonl", [4, 5], words=100)
    out = tmp_path / "store"
    m = build_passages([a, b], out, words=100)
    store = PassageStore(out)
    assert len(store) == 3 * 2 + 2 * 1 == m["n_passages"]
    assert store.pids() == ["1#0", "1#1", "2#0", "2#1", "3#0", "3#1", "4#0", "5#0"]
    p = store.get(["2#1"])[0]
    assert p.title == "Title 2" and p.text.split() == [f"d2w{j}" for j in range(100, 150)] and p.position == 1
    assert m["n_docs"] == m["n_docs_read"] == 5 and m["words"] == 100 and m["n_bad"] == 0 and m["n_redirects"] == 0
    assert [s["format"] for s in m["sources"]] == ["wikiextractor", "wikiextractor"]
    assert [s["n_passages"] for s in m["sources"]] == [6, 2]
    assert m["sources"][0]["fingerprint"] == quick_fingerprint(a) and m["sources"][0]["path"] == str(a.resolve())
    assert set(m["files"]) == {"passages.parquet", "redirects.tsv"}
    assert list(store.redirects()) == []


def test_duplicate_ids_across_sources_are_an_error_or_prefixed(tmp_path):
    a = wiki(tmp_path / "wiki-a.jsonl", [1, 2])
    b = wiki(tmp_path / "wiki-b.jsonl.bz2", [3, 2], compress=bz2.compress)
    out = tmp_path / "store"
    with pytest.raises(BadInputError, match=r"wiki-b\.jsonl\.bz2:2: document id '2' was already used at \S*wiki-a\.jsonl:2;.*--prefix-ids"):
        build_passages([a, b], out)
    assert not out.exists() and not partial_dir(out).exists()
    m = build_passages([a, b], out, prefix_ids=True)
    assert PassageStore(out).pids()[::2] == ["wiki-a:1#0", "wiki-a:2#0", "wiki-b:3#0", "wiki-b:2#0"]
    assert [s["id_prefix"] for s in m["sources"]] == ["wiki-a:", "wiki-b:"]


def test_duplicate_id_within_a_source(tmp_path):
    with pytest.raises(BadInputError, match=r"a\.jsonl:3: document id '7' was already used at \S*a\.jsonl:1;"):
        build_passages([wiki(tmp_path / "a.jsonl", [7, 8, 7])], tmp_path / "s")


def test_the_first_repeat_in_reading_order_is_named_with_both_lines(tmp_path):
    # 9 repeats first (line 4), though 5 repeats too (line 5) and the id check runs a block at a time
    src = wiki(tmp_path / "a.jsonl", [5, 1, 9, 9, 5])
    with pytest.raises(BadInputError, match=r"a\.jsonl:4: document id '9' was already used at \S*a\.jsonl:3;"):
        build_passages([src], tmp_path / "s")
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(tmp_path / "s"), "--no-progress"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "a.jsonl:4:" in r.output, r.output


def test_bad_json_lines_are_counted_in_one_summary_not_one_warning_each(tmp_path, caplog):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(['{"id": "%d", "title": "t", "text": "some words here"}\n' % i for i in range(5)])
                   + "{broken\n" * 30)
    with caplog.at_level("WARNING"):
        r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(tmp_path / "s"), "--skip-bad",
                                      "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "at at column" not in r.output + caplog.text
    assert "30 bad records skipped" in r.output  # the summary, with the first few examples, not 30 warnings
    assert sum("not valid JSON" in line for line in (r.output + caplog.text).splitlines()) <= 5


def test_id_set_checks_across_blocks():
    ids = _IdSet(block=3)
    assert [ids.add(str(i)) for i in range(7)] == [None] * 7
    assert ids.flush() is None
    assert [ids.add(x) for x in ("x", "y", "4")][-1] == "4"  # found when its block is checked
    ids = _IdSet(block=100)
    for x in ("a", "b", "a"):
        ids.add(x)
    assert ids.flush() == "a"


def test_source_names():
    assert source_name(__import__("pathlib").Path("enwiki-2015.jsonl.xz")) == "enwiki-2015"
    assert source_name(__import__("pathlib").Path("wiki_00")) == "wiki_00"
    assert source_name(__import__("pathlib").Path("v1.2.tsv")) == "v1.2"


def test_corrupt_line_in_the_middle_leaves_nothing(tmp_path):
    path = wiki(tmp_path / "a.jsonl", range(1, 5))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + '{"id": "x", "title": \n' + "".join(lines[2:]))
    out = tmp_path / "store"
    with pytest.raises(BadInputError, match=r"a\.jsonl:3: not valid JSON"):
        build_passages([path], out)
    assert not out.exists() and not partial_dir(out).exists()
    m = build_passages([path], out, skip_bad=True)
    assert m["n_bad"] == 1 and m["sources"][0]["n_bad"] == 1 and "a.jsonl:3" in m["sources"][0]["bad_examples"][0]
    assert m["n_docs"] == 4


def test_empty_input_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInputError, match="no passages from .*empty.jsonl: 0 documents read"):
        build_passages([empty], tmp_path / "s")
    blank = wiki(tmp_path / "blank.jsonl", [1], words=0)
    with pytest.raises(BadInputError, match="1 documents read, 1 of them empty"):
        build_passages([blank], tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_missing_source_and_bad_arguments(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        build_passages([tmp_path / "nope.jsonl"], tmp_path / "s")
    src = wiki(tmp_path / "a.jsonl", [1])
    with pytest.raises(BadInputError, match="positive number of words"):
        build_passages([src], tmp_path / "s", words=0)
    with pytest.raises(BadInputError, match="limit_docs"):
        build_passages([src], tmp_path / "s", limit_docs=0)


def test_overwrite(tmp_path):
    src = wiki(tmp_path / "a.jsonl", [1])
    out = tmp_path / "s"
    build_passages([src], out)
    with pytest.raises(ArtifactError, match="already exists"):
        build_passages([src], out)
    wiki(src, [1, 2])
    assert build_passages([src], out, overwrite=True)["n_docs"] == 2


def test_limit_docs_spans_sources(tmp_path):
    a = wiki(tmp_path / "a.jsonl", [1, 2])
    b = wiki(tmp_path / "b.jsonl", [3, 4])
    m = build_passages([a, b], tmp_path / "s", limit_docs=3)
    assert m["n_docs_read"] == 3 and [s["n_docs"] for s in m["sources"]] == [2, 1] and m["limit_docs"] == 3


def test_folder_source_and_generic_fields(tmp_path):
    folder = tmp_path / "extract" / "AA"
    folder.mkdir(parents=True)
    (folder / "wiki_00").write_text('{"pid": "a", "body": "one two three"}\n')
    (folder / "wiki_01").write_text('{"pid": "b", "body": "four"}\n')
    (folder / ".hidden").write_text("junk")
    m = build_passages([tmp_path / "extract"], tmp_path / "s", id_field="pid", title_field=None, text_field="body", words=2)
    assert PassageStore(tmp_path / "s").pids() == ["a#0", "a#1", "b#0"]
    assert m["fields"] == {"id": "pid", "title": None, "text": "body"}


def test_redirects_written_and_listed(tmp_path):
    dump = tmp_path / "dump.xml.bz2"
    dump.write_bytes(bz2.compress(XML.encode()))
    m = build_passages([dump], tmp_path / "s")
    store = PassageStore(tmp_path / "s")
    assert list(store.redirects()) == [("AccessibleComputing", "Computer accessibility"), ("Old redirect", "Anarchism")]
    assert m["n_redirects"] == 2 and m["files"]["redirects.tsv"] > 0 and m["redirects"] == "redirects.tsv"
    assert m["sources"][0]["n_other_namespaces"] == 1


def test_progress_reports_every_byte(tmp_path):
    src = wiki(tmp_path / "a.jsonl.xz", range(50), compress=lzma.compress)
    seen = [0, 0, 0]

    def progress(b, d, p):
        seen[0] += b
        seen[1] += d
        seen[2] += p

    m = build_passages([src], tmp_path / "s", progress=progress)
    assert seen == [src.stat().st_size, 50, m["n_passages"]]


# ---- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_build_and_info(tmp_path):
    src = wiki(tmp_path / "a.jsonl.xz", [1, 2], compress=lzma.compress)
    out = tmp_path / "s"
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(out), "--words", "50"])
    assert r.exit_code == 0, r.output
    assert "2 documents -> 6 passages" in r.output and "6 passages of <= 50 words" in r.output
    r = CliRunner().invoke(main, ["corpus", "info", str(out), "--row", "1"])
    assert r.exit_code == 0, r.output
    assert "pid=1#1 title='Title 1'" in r.output and "d1w50 d1w51" in r.output
    r = CliRunner().invoke(main, ["corpus", "info", str(out), "--json"])
    assert json.loads(r.output)["n_passages"] == 6


def test_cli_errors_are_short_and_actionable(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text('{"id": "1", "title": "A", "text": "x"}\nnot json\n')
    out = tmp_path / "s"
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(out)])
    assert r.exit_code == 2 and "a.jsonl:2: not valid JSON" in r.output and "--skip-bad" in r.output
    assert not out.exists()
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(out), "--skip-bad", "--format", "jsonl"])
    assert r.exit_code == 0 and "1 bad records skipped" in r.output and "skipped " in r.output
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(out), "--format", "csv"])
    assert r.exit_code == 2 and "unknown corpus format 'csv'; choose one of:" in r.output
    r = CliRunner().invoke(main, ["corpus", "info", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no such folder" in r.output


def test_row_groups_flushed_in_the_middle_of_a_document(tmp_path, monkeypatch):
    import functools

    import rag.corpus.build as build_mod

    monkeypatch.setattr(build_mod, "PassageWriter", functools.partial(build_mod.PassageWriter, row_group=3))
    src = wiki(tmp_path / "a.jsonl", [1, 2], words=1000)
    m = build_passages([src], tmp_path / "s")
    store = PassageStore(tmp_path / "s")
    assert m["n_passages"] == len(store.table) == 20
    assert store.pids() == [f"{d}#{i}" for d in (1, 2) for i in range(10)]
