"""The counts artifact (rag.counts) and `rag counts import`: external tables become counts folders, checked once."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.counts import EXTERNAL, NONE, OK, UNLINKED, CountsTable, from_records, load_counts, write_counts
from rag.entities.external import import_table
from rag.errors import ArtifactError, BadInputError
from rag.qa import load_questions, qa_fingerprint

QA = [("where was mozart born", "Salzburg"), ("what is the capital of austria", "Vienna"), ("who wrote faust", "Goethe")]


@pytest.fixture
def qa_file(tmp_path):
    p = tmp_path / "tiny.jsonl"
    p.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QA), encoding="utf-8")
    return p


def _jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_import_recognised_columns(qa_file, tmp_path):
    table = _jsonl(tmp_path / "ext.jsonl", [{"question_id": "tiny-0", "n_docs": 12, "text": "Where was  Mozart born "},
                                             {"question_id": "tiny-1", "n_docs": None},
                                             {"question_id": "tiny-2", "n_docs": 3, "label": "question-unlinked"}])
    rows, manifest = import_table(table, qa_file, tmp_path / "counts")
    assert [(r.qid, r.count, r.status, r.method) for r in rows] == [
        ("tiny-0", 12, OK, EXTERNAL), ("tiny-1", 0, UNLINKED, NONE), ("tiny-2", 3, "question-unlinked", NONE)]
    # question texts and answers come from the QA file; the folder records which file it was made for
    assert rows[0].question == "where was mozart born" and rows[1].answers == ("Vienna",)
    assert manifest["qa"] == {"path": str(qa_file), "fingerprint": qa_fingerprint(qa_file)}
    assert manifest["source"]["columns"] == {"qid": "question_id", "count": "n_docs", "status": "label", "question": "text"}
    assert manifest["summary"]["method"] == {"entity": 0, "surface": 0, "none": 2, "external": 1}
    assert manifest["summary"]["status"][UNLINKED] == 1

    # the evaluator's view: unlinked questions have no count, and the folder matches its QA file
    view = CountsTable.open(tmp_path / "counts")
    assert view.counts == {"tiny-0": 12, "tiny-1": None, "tiny-2": None}
    assert view.method_of("tiny-0") == EXTERNAL and view.status["tiny-2"] == "question-unlinked"
    view.check_matches(load_questions(qa_file), qa_file)


def test_import_refusals(qa_file, tmp_path):
    def refused(recs, match, **kw):
        with pytest.raises(BadInputError, match=match):
            import_table(_jsonl(tmp_path / "t.jsonl", recs), qa_file, tmp_path / "c", **kw)
        assert not (tmp_path / "c").exists()

    refused([{"qid": "tiny-0", "count": 1}, {"qid": "tiny-0", "count": 2}], "appears twice")
    refused([{"qid": "tiny-0", "count": -1}], "not a non-negative integer")
    refused([{"qid": "tiny-0", "count": 1.5}], "not a non-negative integer")
    refused([{"qid": "tiny-0", "count": "many"}], "not an integer")
    refused([{"qid": "nq-7", "count": 1}], r"1 of its 1 question ids are not in .*tiny-0")
    refused([{"qid": "tiny-0", "count": 1, "question": "who painted the mona lisa"}], "carry other questions")
    refused([{"key": "tiny-0", "count": 1}], r"no qid column \(looked for qid, question_id, id; columns: key, count\); name it with --qid-column")
    refused([{"qid": "tiny-0", "count": 1}], "no column 'freq'", columns={"count": "freq"})
    with pytest.raises(BadInputError, match="does not exist"):
        import_table(tmp_path / "none.jsonl", qa_file, tmp_path / "c")
    (tmp_path / "x.csv").write_text("qid,count\ntiny-0,1\n")
    with pytest.raises(BadInputError, match="not .csv"):
        import_table(tmp_path / "x.csv", qa_file, tmp_path / "c")


def test_cli_import_named_columns_then_show(qa_file, tmp_path):
    table = tmp_path / "ext.tsv"
    table.write_text("key\tfreq\ntiny-0\t5\ntiny-1\t\ntiny-2\t0\n", encoding="utf-8")
    r = CliRunner()
    res = r.invoke(main, ["counts", "import", str(table), "--qa", str(qa_file), "--out", str(tmp_path / "c"),
                          "--qid-column", "key", "--count-column", "freq"])
    assert res.exit_code == 0, res.output
    assert "imported 3 questions" in res.output and "qid <- key, count <- freq" in res.output
    assert "(counted by entity / by surface phrase / external):" in res.output
    rows, _ = load_counts(tmp_path / "c")
    assert [(r.count, r.status) for r in rows] == [(5, OK), (0, UNLINKED), (0, OK)]
    res = r.invoke(main, ["counts", "show", str(tmp_path / "c")])
    assert res.exit_code == 0 and "external" in res.output
    res = r.invoke(main, ["counts", "import", str(table), "--qa", str(qa_file), "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "no qid column" in res.output
    res = r.invoke(main, ["counts", "import", str(table), "--qa", str(qa_file), "--out", str(tmp_path / "c"),
                          "--qid-column", "key", "--count-column", "freq"])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = r.invoke(main, ["counts", "import", "--help"])
    assert res.exit_code == 0 and "--qid-column" in res.output


def test_hand_made_folder_is_refused_then_imported(qa_file, tmp_path):
    """A table with a manifest (what the evaluator used to read as is) must go through the import step."""
    old = tmp_path / "old"
    old.mkdir()
    pq.write_table(pa.table({"qid": ["tiny-0", "tiny-1", "tiny-2"], "count": [4, None, 1]}), old / "counts.parquet")
    (old / "manifest.json").write_text(json.dumps({"kind": "counts", "format": 1}), encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"hand-made table counts.parquet.*rag counts import .*old.counts.parquet --qa QA_FILE"):
        CountsTable.open(old)
    rows, manifest = import_table(old, qa_file, tmp_path / "new")
    assert manifest["source"]["path"] == str(old / "counts.parquet") and manifest["source"]["fingerprint"]
    assert [r.count for r in rows] == [4, 0, 1] and CountsTable.open(tmp_path / "new").counts["tiny-1"] is None
    with pytest.raises(ArtifactError, match="rag counts import TABLE --qa QA_FILE"):
        CountsTable.open(tmp_path / "missing")


def test_records_and_write_counts(tmp_path):
    rows = from_records([{"qid": 1, "count": "7"}, {"qid": "b", "count": 2, "status": "linked", "method": "surface"}])
    assert [(r.qid, r.count, r.status, r.method) for r in rows] == [("1", 7, OK, EXTERNAL), ("b", 2, OK, "surface")]
    with pytest.raises(BadInputError, match="unknown field"):
        from_records([{"qid": "a", "count": 1, "cnt": 2}])
    with pytest.raises(BadInputError, match="no question id"):
        from_records([{"count": 1}])
    folder = write_counts(tmp_path / "c", [{"qid": "a", "count": 1, "question": "q"}, {"qid": "b", "count": None}])
    view = CountsTable.open(folder)
    assert view.counts == {"a": 1, "b": None} and view.questions == {"a": "q"} and view.manifest["qa"] is None
