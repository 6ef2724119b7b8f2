"""The gold-subject linking benchmark: template matching, classification, the table, and `rag counts evaluate`."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rag.counts import QuestionCount, save_counts
from rag.entities.templates import classify_answer, classify_question, evaluate_counts, load_templates, match, to_markdown
from rag.errors import BadInputError


@pytest.fixture()
def templates(tmp_path):
    p = tmp_path / "templates.json"
    p.write_text(json.dumps({"P19": "Where was [X] born?", "P131": "Where is [X] located?", "P276": "Where is [X] located?",
                             "P40": "Who is [X]'s child?"}))
    return load_templates(p)


def test_match_recovers_subject_and_relation(templates):
    assert match("Where was Robert Crannell Minor born?", "eq-P19-3", templates) == ("P19", "Robert Crannell Minor")
    assert match("Who is Cedric Wyatt's child?", "x", templates) == ("P40", "Cedric Wyatt")
    # two relations share a template: the qid decides, else the first in file order
    assert match("Where is Darreh Sib located?", "entityquestions-P276-7", templates) == ("P276", "Darreh Sib")
    assert match("Where is Darreh Sib located?", "q7", templates) == ("P131", "Darreh Sib")
    assert match("Who wrote Hamlet?", "q", templates) is None


def test_bad_template_files(tmp_path):
    for body in ("[1, 2]", '{"P1": "no placeholder"}', '{"P1": "[X] and [X]"}', "not json"):
        p = tmp_path / "t.json"
        p.write_text(body)
        with pytest.raises(BadInputError, match="t.json"):
            load_templates(p)


def test_classification():
    s = "Robert Crannell Minor"
    assert classify_question("entity", "Robert Crannell Minor", "Robert Crannell Minor", s) == "exact_entity"
    assert classify_question("surface", "Robert Crannell Minor", "Robert Crannell Minor", s) == "exact_surface"
    assert classify_question("entity", "Robert", "Robert", s) == "sub_span"
    assert classify_question("entity", "Minor", "Minor (music)", s) == "sub_span"
    assert classify_question("entity", "Born", "Born", s) == "other"
    assert classify_question("", None, None, s) == "unlinked"
    # the entity's label may carry the subject when the mention is an alias; a leading "The" is not a difference
    assert classify_question("entity", "USA", "United States", "United States") == "exact_entity"
    assert classify_question("entity", "Golden Gate", "Golden Gate", "The Golden Gate") == "exact_entity"
    assert classify_answer("entity", "Ben Wyatt", "Ben Wyatt", ["Ben Wyatt"]) == "exact"
    assert classify_answer("entity", "Wyatt", "Wyatt", ["Ben Wyatt"]) == "sub_span"
    assert classify_answer("surface", "blacksmith", "blacksmith", ["blacksmith", "smith"]) == "exact"
    assert classify_answer("", None, None, ["x"]) == "unlinked"


def _row(qid, question, answers, q_source, q_mention, a_source="entity", a_mention=None, count=0):
    return QuestionCount(qid=qid, question=question, answers=tuple(answers), q_entity=q_mention, a_entity=a_mention or answers[0],
                         count=count, q_entity_docs=0, a_entity_docs=0, status="ok" if q_source else "question-unlinked",
                         q_source=q_source, a_source=a_source, q_mention=q_mention, a_mention=a_mention or answers[0],
                         method="entity" if q_source == a_source == "entity" else "surface" if q_source else "none")


ROWS = [
    _row("eq-P19-0", "Where was Robert Crannell Minor born?", ["Paris"], "entity", "Robert", count=524),
    _row("eq-P19-1", "Where was Luke Prokopec born?", ["Blackwood"], "surface", "Luke Prokopec"),
    _row("eq-P19-2", "Where was Leora Dana born?", ["New York"], "entity", "Dana born"),
    _row("eq-P19-3", "Where was Jon Smith born?", ["Leeds"], "", None, a_source="entity"),
    _row("eq-P40-0", "Who is Cedric Wyatt's child?", ["Ben Wyatt"], "entity", "Cedric Wyatt"),
    _row("other-0", "Who wrote Hamlet?", ["Shakespeare"], "entity", "Hamlet"),
]


def test_evaluate_counts_table(templates):
    res = evaluate_counts(ROWS, templates)
    assert res["n_questions"] == 5 and res["n_unmatched"] == 1
    p19 = res["relations"]["P19"]["question"]
    assert {k: v["n"] for k, v in p19.items()} == {"exact_entity": 0, "exact_surface": 1, "sub_span": 1, "other": 1, "unlinked": 1}
    assert res["overall"]["question_exact"] == pytest.approx(2 / 5) and res["overall"]["question_wrong"] == pytest.approx(2 / 5)
    assert res["examples"]["sub_span"][0]["subject"] == "Robert Crannell Minor"
    md = to_markdown(res)
    assert "| P19 | 4 | 0.0 | 25.0 | 25.0 | 25.0 | 25.0 | 50.0 |" in md and "| **all** | 5 |" in md


def test_cli_counts_evaluate(tmp_path, templates):
    from rag.cli import main

    save_counts(ROWS, tmp_path / "counts")
    tpl = tmp_path / "templates.json"
    r = CliRunner().invoke(main, ["counts", "evaluate", str(tmp_path / "counts"), "--templates", str(tpl),
                                  "--out", str(tmp_path / "bench")])
    assert r.exit_code == 0, r.output
    assert "| **all** | 5 |" in r.output
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["overall"]["n"] == 5 and (tmp_path / "bench.md").read_text().startswith("5 questions")
