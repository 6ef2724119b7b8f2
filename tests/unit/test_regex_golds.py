"""Regex golds (CuratedTREC) end to end: literal aliases for linking, the QA loader, and `rag eval run` scoring them.

The run uses the fake reader (it answers the title of the top passage, or a known closed-book answer) over
real BM25 on a few passages, with hand-written counts, as tests/unit/test_eval_run.py does.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.artifacts import atomic_dir
from rag.corpus.store import PassageStore, PassageWriter
from rag.errors import BadInputError
from rag.evaluation.config import load_config
from rag.counts import write_counts
from rag.evaluation.records import RecordStore
from rag.evaluation.runner import run_eval
from rag.qa import default_match_type, guess_format, load_questions
from rag.readers.fake import FakeReader
from rag.regex_golds import NOT_LITERAL, is_regex, linking_answers, literal_aliases, literal_answers
from rag.types import Passage, Question


@pytest.mark.parametrize(
    "pattern, aliases",
    [
        ("Paris", ("Paris",)),
        ("Paris|Lyon", ("Paris", "Lyon")),
        (r"\bParis\b|\bLyon\b", ("Paris", "Lyon")),
        (r"St\. Louis|Saint Louis", ("St. Louis", "Saint Louis")),
        (r"AT\&T|A\.T\. \& T\.", ("AT&T", "A.T. & T.")),
        ("^Oslo$", ("Oslo",)),
        ("Paris|paris|Paris", ("Paris", "paris")),
        ("  Big   Ben ", ("Big Ben",)),
        ("Paris|", ("Paris",)),
        (r"(?:Dr\.? )?Smith", ()),
        ("Nash(ville)?", ()),
        (r"Abraham\s+Lincoln", ()),
        (r"1[89]\d\d", ()),
        ("U.S.", ()),  # an unescaped "." is any character
        ("Lincoln|Abe.*", ()),  # one non-literal alternative spoils the pattern
        ("colou?r", ()),
        ("", ()),
        ("trailing\\", ()),
    ],
)
def test_literal_aliases(pattern, aliases):
    assert literal_aliases(pattern) == aliases


def test_literal_answers_and_linking_answers():
    assert literal_answers([r"Paris|Lyon", r"(?:City of )?Paris", "Lyon|Marseille"]) == ("Paris", "Lyon", "Marseille")
    plain = Question("q", "where?", ("Paris|Lyon",), {})
    assert not is_regex(plain) and linking_answers(plain) == ("Paris|Lyon",)  # string golds are linked as they are
    rx = Question("q", "where?", ("Paris|Lyon", r"\d+"), {"match_type": "regex"})
    assert is_regex(rx) and linking_answers(rx) == ("Paris", "Lyon")
    none = Question("q", "where?", (r"\d+",), {"match_type": "regex", "answer_aliases": ()})
    assert linking_answers(none) == () and NOT_LITERAL == "answer-regex-not-literal"


# --- the QA loader ----------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_curatedtrec_jsonl_is_read_as_regex_golds(tmp_path):
    p = write_jsonl(tmp_path / "CuratedTrec-test.txt", [
        {"question": "What city is the capital of Norway?", "answer": ["Oslo|Christiania"]},
        {"question": "Who wrote Hamlet?", "answer": [r"(?:William )?Shakespeare", "Shakespeare"]},
    ])
    assert guess_format(p) == "curatedtrec" and default_match_type(p) == "regex"
    qs = load_questions(p)
    assert [q.qid for q in qs] == ["CuratedTrec-test-0", "CuratedTrec-test-1"]
    assert qs[0].answers == ("Oslo|Christiania",)  # the patterns themselves are the golds
    assert qs[0].meta == {"dataset": "CuratedTrec-test", "index": 0, "match_type": "regex",
                          "answer_aliases": ("Oslo", "Christiania")}
    assert qs[1].meta["answer_aliases"] == ("Shakespeare",)
    # told otherwise, the same file is string golds
    assert all(not is_regex(q) for q in load_questions(p, match_type="string"))
    with pytest.raises(BadInputError, match="match_type must be one of"):
        load_questions(p, match_type="regexp")


def test_regex_golds_in_other_files(tmp_path):
    # DPR's curatedtrec-test.csv: TSV rows of pattern lists
    tsv = tmp_path / "curatedtrec-test.csv"
    tsv.write_text("who wrote hamlet\t['Shakespeare|Marlowe']\n", encoding="utf-8")
    assert guess_format(tsv) == "dpr-tsv"
    (q,) = load_questions(tsv)
    assert is_regex(q) and q.meta["answer_aliases"] == ("Shakespeare", "Marlowe")
    # an NQ-open-shaped file under another name: string golds unless told
    other = write_jsonl(tmp_path / "trec.jsonl", [{"question": "who wrote hamlet", "answer": ["Shakespeare|Marlowe"]}])
    assert guess_format(other) == "nq-open" and not is_regex(load_questions(other)[0])
    assert is_regex(load_questions(other, match_type="regex")[0])
    assert is_regex(load_questions(other, format="curatedtrec")[0])


# --- rag eval run -----------------------------------------------------------------------------------------

# (passage title, passage text, question, gold patterns, count); the fake reader answers the top title
WORLD = [
    ("Oslo, Norway", "Oslo is the capital and most populous city of Norway.", "what is the capital of norway",
     ["oslo"], 2500),
    ("Canberra", "Canberra is the capital city of Australia.", "what is the capital city of australia",
     [r"Canb[e]rra|\bCBR\b"], 1200),
    ("René Descartes", "René Descartes wrote the Meditations on First Philosophy.", "who wrote the meditations",
     ["(unclosed", r"\bRené\b"], 40),
    ("Mars", "Mars is the fourth planet from the Sun.", "which planet is the fourth from the sun", ["^mars$"], None),
]
KNOWN = {"what is the capital of norway": "Oslo", "who wrote the meditations": "Descartes"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from rag.retrievers.bm25 import BM25Retriever

    root = tmp_path_factory.mktemp("trecworld")
    with atomic_dir(root / "passages") as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(f"p{i}", t, t, x) for i, (t, x, *_) in enumerate(WORLD))
        w.close()
    BM25Retriever.build(PassageStore(root / "passages"), root / "bm25", progress=False)
    for name in ("CuratedTrec-test.txt", "trec.jsonl"):  # one named as DrQA names it, one not
        qa = write_jsonl(root / name, [{"question": q, "answer": a} for _, _, q, a, _ in WORLD])
        stem = name.rsplit(".", 1)[0]
        write_counts(root / f"counts-{stem}", [{"qid": f"{stem}-{i}", "question": w[2], "count": w[4]}
                                               for i, w in enumerate(WORLD)], qa_path=qa)
    return root


def write_config(root: Path, out: Path, qa: str = "CuratedTrec-test.txt", **qa_extra) -> Path:
    import yaml

    stem = qa.rsplit(".", 1)[0]
    cfg = {
        "name": "trec",
        "qa": {"path": str(root / qa), **qa_extra},
        "counts": str(root / f"counts-{stem}"),
        "reader": {"model": "fake", "backend": "fake", "shots": 0, "options": {"known": KNOWN}},
        "retrievers": [{"name": "bm25", "index": str(root / "bm25")}],
        "k": 1,
        "recall_ks": [1, 2],
        "batch_size": 2,
        "n_boot": 100,
        "out": str(out),
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def scores(folder: Path, stem: str = "CuratedTrec-test") -> dict:
    recs = RecordStore(folder / "records.jsonl").load()
    return {(int(qid.rsplit("-", 1)[1]), mode): (r.prediction, r.em, r.f1, r.contains, r.first_hit)
            for (qid, mode), r in recs.items()}


def test_eval_run_scores_curatedtrec_golds_as_regexes(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run"))
    assert cfg.qa.match_type is None  # detected from the file
    run_eval(cfg, progress=False, reader=FakeReader(known=KNOWN))
    s = scores(tmp_path / "run")
    # "Oslo, Norway" vs r"oslo": DrQA's match at the start (string EM would say 0)
    assert s[(0, "rag:bm25")] == ("Oslo, Norway", 1.0, 1.0, 1.0, 1)
    assert s[(0, "closed")][:4] == ("Oslo", 1.0, 1.0, 1.0)
    assert s[(1, "rag:bm25")] == ("Canberra", 1.0, 1.0, 1.0, 1)
    # NFD + the regex module: \bRené\b matches (the stdlib re would not); the invalid gold beside it is ignored
    assert s[(2, "rag:bm25")] == ("René Descartes", 1.0, 1.0, 1.0, 1)
    assert s[(2, "closed")][:4] == ("Descartes", 0.0, 0.0, 0.0)
    assert s[(3, "rag:bm25")][:4] == ("Mars", 1.0, 1.0, 1.0)
    assert s[(1, "closed")][:4] == ("unknown", 0.0, 0.0, 0.0)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["identity"]["qa"]["match_type"] == "regex"
    assert "regex golds" in (tmp_path / "run" / "summary.md").read_text()


def test_match_type_setting(world, tmp_path):
    # a file the loader cannot tell: string golds by default, regex when the config says so
    plain = load_config(write_config(world, tmp_path / "plain", qa="trec.jsonl"))
    run_eval(plain, progress=False, reader=FakeReader(known=KNOWN), report=False)
    s = scores(tmp_path / "plain")
    assert s[(0, "rag:bm25")][1] == 0.0  # "oslo" as a string: "oslo norway" != "oslo"
    assert s[(1, "rag:bm25")][1] == 0.0 and s[(1, "rag:bm25")][4] is None  # no passage holds the text "Canb[e]rra|\bCBR\b"
    assert "match_type" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())["identity"]["qa"]

    rx = load_config(write_config(world, tmp_path / "rx", qa="trec.jsonl", match_type="regex"))
    run_eval(rx, progress=False, reader=FakeReader(known=KNOWN), report=False)
    s = scores(tmp_path / "rx")
    assert s[(0, "rag:bm25")] == ("Oslo, Norway", 1.0, 1.0, 1.0, 1) and s[(2, "rag:bm25")][1] == 1.0
    assert s[(1, "rag:bm25")] == ("Canberra", 1.0, 1.0, 1.0, 1)
    # resuming the string run as a regex run would mix scorings
    with pytest.raises(BadInputError, match=r"different settings \(qa.match_type\)"):
        run_eval(replace(rx, out=tmp_path / "plain"), progress=False, reader=FakeReader(known=KNOWN))
    with pytest.raises(BadInputError, match="qa.match_type must be"):
        load_config(write_config(world, tmp_path / "bad", match_type="regexp"))


def test_cli_eval_run_with_regex_golds(world, tmp_path):
    from rag.cli import main

    conf = write_config(world, tmp_path / "cli")
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(conf), "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "regex golds" in r.output
    assert scores(tmp_path / "cli")[(0, "rag:bm25")][1] == 1.0


def test_cli_qa_info_says_the_golds_are_regexes(world):
    from rag.cli import main

    r = CliRunner().invoke(main, ["qa", "info", str(world / "CuratedTrec-test.txt")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "answers are regular expressions; 3 of 4 questions have literal aliases to link" in r.output
