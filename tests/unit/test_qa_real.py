"""The loaders on the real shared QA files: counts, ids, and the awkward TriviaQA rows."""
from __future__ import annotations

import pytest

from rag.qa import SOURCES, load_questions

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "name, n, first_answer",
    [
        ("nq-open.test.jsonl", 3610, ("14 December 1972 UTC", "December 1972")),
        ("nq-open.efficientqa-dev.jsonl", 1800, ("1988",)),
        ("nq.test.dpr-topics.tsv", 3610, ("Wilhelm Conrad Röntgen",)),
        ("triviaqa.test.dpr-topics.tsv", 11313, ("David Seville",)),
    ],
)
def test_real_files(shared_data, name, n, first_answer):
    qs = load_questions(shared_data / "qa" / name)
    assert len(qs) == n and qs[0].answers == first_answer
    assert len({q.qid for q in qs}) == n


def test_triviaqa_csv_quoted_rows(shared_data):
    qs = load_questions(shared_data / "qa" / "triviaqa.test.dpr-topics.tsv")
    q = qs[581]  # line 582 wraps its answer list in CSV quotes with doubled ""
    assert q.question.startswith('Which 2004 "puppet" movie')
    assert "I'm So Ronery" in q.answers and "Team America: World Police" in q.answers


def test_entityquestions_folder(shared_data):
    qs = load_questions(shared_data / "qa" / "entityquestions")
    relations = {q.meta["relation"] for q in qs}
    assert len(relations) == 18 and "P17" in relations
    assert len(qs) > 16_000 and len({q.qid for q in qs}) == len(qs)


def test_recorded_hashes_match_shared_files(shared_data):
    from rag.artifacts import file_sha256

    for name in ("nq-open", "nq-dpr", "triviaqa-dpr"):
        (fname, digest), = SOURCES[name].files.items()
        assert file_sha256(shared_data / "qa" / fname) == digest
    fname, digest = next(iter(SOURCES["entityquestions"].files.items()))
    assert file_sha256(shared_data / "qa" / "entityquestions" / fname) == digest
