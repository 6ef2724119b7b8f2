"""QA loaders on hand-made files in every supported format, and the downloader's --from / mocked HTTP paths."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from rag import qa
from rag.errors import BadInputError
from rag.qa import download, load_questions


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_nq_open_jsonl_ids_and_answers(tmp_path):
    p = write(tmp_path / "nq-open.test.jsonl", '{"question": "who?", "answer": ["A", "B"]}\n\n{"question": "when?", "answer": ["1999"]}\n')
    qs = load_questions(p)
    assert [q.qid for q in qs] == ["nq-open.test-0", "nq-open.test-1"]  # blank lines are not records
    assert qs[0].answers == ("A", "B") and qs[1].question == "when?"
    assert qs[1].meta == {"dataset": "nq-open.test", "index": 1}
    assert load_questions(p) == qs  # stable across runs
    assert [q.qid for q in load_questions(p, limit=1)] == ["nq-open.test-0"]


def test_dpr_tsv_python_lists_and_csv_quoting(tmp_path):
    rows = [
        "who got the first nobel prize in physics\t['Wilhelm Conrad Röntgen']",
        # TriviaQA style: the answer list wrapped in CSV quotes with doubled ""
        'Who played him?\t"[""Peter O\'Toole"", \'Peter O Toole\']"',
        '"""Who sang """"Achy Breaky Heart""""?"""\t[\'Billy Ray Cyrus\']',
        "when is it\t['May 18 , 2018', \"Destiny 's Child\"]",
    ]
    p = write(tmp_path / "trivia.tsv", "\n".join(rows) + "\n")
    qs = load_questions(p)
    assert len(qs) == 4
    assert qs[0].answers == ("Wilhelm Conrad Röntgen",)
    assert qs[1].answers == ("Peter O'Toole", "Peter O Toole")
    assert qs[2].answers == ("Billy Ray Cyrus",) and "Achy Breaky Heart" in qs[2].question
    assert qs[3].answers == ("May 18 , 2018", "Destiny 's Child")
    assert qs[3].qid == "trivia-3"


def test_entityquestions_file_and_folder_keep_relation(tmp_path):
    d = tmp_path / "eq"
    d.mkdir()
    write(d / "P17.test.json", json.dumps([{"question": "Which country is X located in?", "answers": ["Iran"]}]))
    write(d / "P106.test.json", json.dumps([{"question": "What kind of work does Y do?", "answers": ["actor", "singer"]}] * 2))
    write(d / "relation_query_templates.json", json.dumps({"P17": "Which country is [X] located in?"}))
    qs = load_questions(d)
    assert [q.meta["relation"] for q in qs] == ["P17", "P106", "P106"]  # numeric relation order; templates skipped
    assert [q.qid for q in qs] == ["entityquestions-P17-0", "entityquestions-P106-0", "entityquestions-P106-1"]
    one = load_questions(d / "P106.test.json")
    assert one == qs[1:]  # same ids whether loaded from the file or the folder
    assert one[0].answers == ("actor", "singer")


def test_generic_jsonl_configurable_fields(tmp_path):
    p = write(tmp_path / "mine.jsonl", '{"id": "q7", "q": "what?", "golds": "one"}\n')
    qs = load_questions(p, format="jsonl", question_field="q", answers_field="golds", id_field="id")
    assert qs[0].qid == "q7" and qs[0].answers == ("one",)
    p2 = write(tmp_path / "plain.jsonl", '{"question": "what?", "answers": ["x"]}\n')
    assert load_questions(p2)[0].qid == "plain-0"  # guessed as generic: it has "answers"


@pytest.mark.parametrize(
    "name, text, fmt, needle",
    [
        ("a.jsonl", '{"question": "q", "answer": ["a"]}\n{"question": "q2", "answer": ["a"\n', None, "a.jsonl:2"),
        ("b.jsonl", '{"question": "", "answer": ["a"]}\n', None, "b.jsonl:1: missing or empty question"),
        ("c.jsonl", '{"question": "q", "answer": [1]}\n', None, "c.jsonl:1: answers must be a list of strings"),
        ("d.jsonl", '{"question": "q"}\n', "nq-open", "d.jsonl:1: no 'answer' field"),
        ("e.tsv", "q1\t['a']\nq2\tnot a list\n", None, "e.tsv:2: the answers field is not a Python list literal"),
        ("f.tsv", "q1\t['a']\textra\n", None, "f.tsv:1: expected 2 tab-separated fields"),
        ("g.jsonl", "[1, 2]\n", "jsonl", "g.jsonl:1: expected a JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, name, text, fmt, needle):
    p = write(tmp_path / name, text)
    with pytest.raises(BadInputError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        load_questions(p, format=fmt)


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_questions(tmp_path / "missing.jsonl")
    with pytest.raises(BadInputError, match="cannot tell the QA format"):
        load_questions(write(tmp_path / "x.parquet", "x"))
    with pytest.raises(BadInputError, match="unknown QA format 'nope'; choose one of: curatedtrec, dpr-tsv, entityquestions"):
        load_questions(write(tmp_path / "x.jsonl", '{"question": "q", "answers": ["a"]}\n'), format="nope")
    with pytest.raises(BadInputError, match="no EntityQuestions relation files"):
        load_questions(_empty_dir(tmp_path))
    with pytest.raises(BadInputError, match="no questions"):
        load_questions(write(tmp_path / "empty.tsv", "\n\n"))


def _empty_dir(tmp_path):
    d = tmp_path / "empty_dir"
    d.mkdir()
    return d


# --- downloads ------------------------------------------------------------------------------------------

NQ_LINE = b'{"question": "who?", "answer": ["A"]}\n'


@pytest.fixture
def fake_source(monkeypatch):
    import hashlib

    digest = hashlib.sha256(NQ_LINE).hexdigest()
    src = qa.Source("https://example.invalid/NQ-open.dev.jsonl", {"nq-open.test.jsonl": digest}, "nq-open")
    monkeypatch.setitem(qa.SOURCES, "nq-open", src)
    return src


def test_download_from_local_file_checks_hash(tmp_path, fake_source):
    local = tmp_path / "NQ-open.dev.jsonl"
    local.write_bytes(NQ_LINE)
    got = download("nq-open", tmp_path / "out", src=local)
    assert got == tmp_path / "out" / "nq-open.test.jsonl"
    assert load_questions(got)[0].answers == ("A",)
    local.write_bytes(NQ_LINE + NQ_LINE)
    with pytest.raises(BadInputError, match="does not match the expected"):
        download("nq-open", tmp_path / "out2", src=local)
    assert not (tmp_path / "out2" / "nq-open.test.jsonl").exists()  # nothing half-written
    assert download("nq-open", tmp_path / "out3", src=local, verify=False).exists()


def test_download_over_mocked_http(tmp_path, fake_source, monkeypatch):
    import urllib.request

    seen = []

    def fake_urlopen(url, timeout=None):
        seen.append(url)
        return io.BytesIO(NQ_LINE)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    got = download("nq-open", tmp_path)
    assert seen == [fake_source.url] and got.read_bytes() == NQ_LINE


def test_download_http_failure_suggests_from(tmp_path, fake_source, monkeypatch):
    import urllib.error
    import urllib.request

    def fail(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    with pytest.raises(BadInputError, match="pass --from PATH"):
        download("nq-open", tmp_path)


def test_download_zip_archive_multi_file(tmp_path, monkeypatch):
    import hashlib

    files = {"P17.test.json": b'[{"question": "q?", "answers": ["a"]}]', "P19.test.json": b'[{"question": "r?", "answers": ["b"]}]'}
    src = qa.Source("https://example.invalid/dataset.zip", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
                    "entityquestions", archive_member_dir="dataset/test")
    monkeypatch.setitem(qa.SOURCES, "entityquestions", src)
    z = tmp_path / "dataset.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for k, v in files.items():
            zf.writestr(f"dataset/test/{k}", v)
            zf.writestr(f"dataset/train/{k}", b"[]")  # same names in another split must not be taken
    got = download("entityquestions", tmp_path / "out", src=z)
    assert got == tmp_path / "out" / "entityquestions"
    assert [q.meta["relation"] for q in load_questions(got)] == ["P17", "P19"]


def test_download_unknown_name(tmp_path):
    with pytest.raises(BadInputError, match="unknown QA dataset 'squad'; choose one of: entityquestions"):
        download("squad", tmp_path)
