"""Regex golds scored as DPR and DrQA score them, checked against a few-line copy of each reference.

References (both `import regex as re`, flags IGNORECASE + UNICODE + MULTILINE, any compile error -> no match):
    DPR   dpr/data/qa_validation.py: has_answer(match_type="regex") NFD-normalizes the text and every pattern,
          then regex_match(text, pattern) = pattern.search(text) is not None
    DrQA  drqa/reader/utils.py regex_match_score(prediction, pattern) = compiled.match(prediction) is not None,
          called by scripts/pipeline/eval.py on the NFD-normalized prediction and golds
"""
from __future__ import annotations

import logging
import re
import unicodedata
import warnings

import pytest
import regex

from rag.metrics import (
    AnswerScores,
    has_answer,
    has_answer_batch,
    regex_contains,
    regex_exact_match,
    score_answer,
)


def nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


def _compile_ref(pattern: str):
    try:
        return regex.compile(pattern, flags=regex.IGNORECASE + regex.UNICODE + regex.MULTILINE)
    except Exception:  # the references catch BaseException
        return None


def dpr_regex_match(text: str, pattern: str) -> bool:
    compiled = _compile_ref(pattern)
    return compiled is not None and compiled.search(text) is not None


def dpr_has_answer_regex(answers: list[str], text: str) -> bool:
    text = nfd(text)
    return any(dpr_regex_match(text, nfd(a)) for a in answers)


def drqa_regex_match_score(prediction: str, pattern: str) -> bool:
    compiled = _compile_ref(pattern)
    return compiled is not None and compiled.match(prediction) is not None


def drqa_regex_em(prediction: str, golds: list[str]) -> float:
    p = nfd(prediction)
    return float(max(drqa_regex_match_score(p, nfd(g)) for g in golds))


def stdlib_search(text: str, pattern: str) -> bool:
    """What the stdlib `re` (this module's engine before) says, on the same NFD strings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # re warns "possible nested set" at [[:alpha:]]
        return re.compile(nfd(pattern), flags=re.IGNORECASE | re.UNICODE | re.MULTILINE).search(nfd(text)) is not None


# (text, pattern); none starts or ends with whitespace, so our stripped prediction is DrQA's
CASES = [
    ("René Descartes", r"\bRené\b"),
    ("René Descartes", r"Ren\w+ Descartes"),
    ("René Descartes", r"\bDescartes\b"),
    ("José Martí", r"\bJos\w+\b"),
    ("naïve art", r"na\w+ve"),
    ("ZÜRICH", "zürich"),
    ("Zürich", r"z\wrich"),
    ("abc", "[[:alpha:]]+"),
    ("123", "^[[:alpha:]]+$"),
    ("Paris, France", "paris"),
    ("France: Paris", "paris"),
    ("Abraham Lincoln", r"(?:Abraham\s+)?Lincoln"),
    ("Lincoln was president", r"(?:Abraham\s+)?Lincoln"),
    ("it was 1865", r"1[89]\d\d"),
    ("first line\nParis", "^paris$"),
    ("Paris", "(unclosed"),
    ("Paris", "a{5,2}"),
    ("Paris", ""),
    ("Straße", "strasse"),
    ("Dr. Smith", r"(?:Dr\.? )?Smith"),
    ("St. Louis", r"St\. Louis|Saint Louis"),
]


@pytest.mark.parametrize("text, pattern", CASES)
def test_has_answer_and_contains_are_dpr_regex_match(text, pattern):
    want = dpr_has_answer_regex([pattern], text)
    assert has_answer([pattern], text, regex=True) is want
    assert has_answer([pattern], nfd(text), regex=True) is want  # NFD text in, same answer
    assert regex_contains(text, [pattern]) == float(want)


@pytest.mark.parametrize("text, pattern", CASES)
def test_exact_match_is_drqa_regex_match_score(text, pattern):
    assert regex_exact_match(text, [pattern]) == drqa_regex_em(text, [pattern])
    assert score_answer(text, [pattern], regex=True).em == drqa_regex_em(text, [pattern])


def test_stdlib_re_would_get_these_wrong():
    # NFD puts a combining mark after the base letter; for `re` a mark is not a word character, for `regex` it is
    wrong = [
        ("René Descartes", r"\bRené\b"),  # re: no \b between the mark and the space -> not found
        ("René Descartes", r"Ren\w+ Descartes"),  # re: \w+ stops before the mark -> not found
        ("naïve art", r"na\w+ve"),
        ("abc", "[[:alpha:]]+"),  # re reads a set of ":[alph" followed by "]+"
    ]
    for text, pattern in wrong:
        assert dpr_has_answer_regex([pattern], text)
        assert not stdlib_search(text, pattern), (text, pattern)
        assert has_answer([pattern], text, regex=True), (text, pattern)
    # and a prefix match that `re` gets wrong the same way
    assert regex_exact_match("René Descartes", r"Ren\w+ Descartes") == 1.0


def test_posix_class():
    assert regex_exact_match("Lincoln", "[[:alpha:]]+") == 1.0
    assert regex_exact_match("1865", "[[:alpha:]]+") == 0.0
    assert regex_exact_match("1865", "[[:digit:]]{4}") == 1.0


def test_invalid_pattern_next_to_a_valid_one(caplog):
    golds = ["(unclosed Paris", "paris"]
    with caplog.at_level(logging.WARNING, logger="rag.metrics"):
        assert regex_exact_match("Paris", golds) == 1.0
        assert regex_contains("in Paris", golds) == 1.0
        assert has_answer(golds, "She lives in Paris.", regex=True)
        assert has_answer_batch(golds, ["Paris", "Lyon"], regex=True) == [True, False]
        assert score_answer("Lyon", golds, regex=True) == AnswerScores(em=0.0, f1=0.0, contains=0.0)
        assert regex_exact_match("Paris", ["[z-a] another bad one"]) == 0.0
    bad = [r for r in caplog.records if "not a valid regular expression" in r.getMessage()]
    # one warning per distinct bad pattern, however often it is used
    assert len(bad) == 2
    assert "(unclosed Paris" in bad[0].getMessage() and "[z-a] another bad one" in bad[1].getMessage()


def test_exact_match_is_a_prefix_match():
    assert score_answer("Paris, France", ["paris"], regex=True) == AnswerScores(em=1.0, f1=1.0, contains=1.0)
    assert score_answer("France: Paris", ["paris"], regex=True) == AnswerScores(em=0.0, f1=0.0, contains=1.0)
    assert regex_exact_match("Paris, France", ["paris$"]) == 0.0  # a whole-answer pattern says so itself
    # where we differ from DrQA: surrounding whitespace of a generated answer is stripped first
    assert regex_exact_match(" Paris", ["paris"]) == 1.0 and drqa_regex_em(" Paris", ["paris"]) == 0.0


def test_has_answer_regex_on_nfd_text():
    text_nfd = nfd("Wilhelm Conrad Röntgen won the first Nobel Prize in Physics.")
    assert text_nfd != unicodedata.normalize("NFC", text_nfd)
    assert has_answer([r"\bRöntgen\b"], text_nfd, regex=True)  # NFC pattern, NFD text
    # a class with an accented letter turns into a class of letters and marks under NFD, in DPR too:
    # [öo] is [o, U+0308] and matches one code point of the two that "ö" became
    assert not has_answer([r"r[öo]ntgen"], text_nfd, regex=True) and not dpr_has_answer_regex([r"r[öo]ntgen"], text_nfd)
    assert has_answer([r"r[öo]+ntgen"], text_nfd, regex=True)
    assert has_answer([r"R\w+ntgen"], text_nfd, regex=True)
    assert not has_answer([r"\bRntgen\b"], text_nfd, regex=True)
    assert has_answer_batch([r"nobel\s+prize"], [text_nfd, "no prize"], regex=True) == [True, False]
