"""Hand-made cases for the answer metrics (SQuAD v1.1 rules) and DPR-style has_answer."""
from __future__ import annotations

import pytest

from rag.metrics import (
    AnswerScores,
    contains_answer,
    dpr_tokens,
    exact_match,
    has_answer,
    has_answer_batch,
    normalize_answer,
    regex_contains,
    regex_exact_match,
    score_answer,
    token_f1,
)


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The Beatles", "beatles"),
        ("  a   man, an apple & the END.  ", "man apple end"),
        ("theatre", "theatre"),  # articles only as whole words
        ("Anne", "anne"),
        ("U.S.A.", "usa"),
        ("1,000,000", "1000000"),
        ("3.14", "314"),
        ("Wilhelm Conrad Röntgen", "wilhelm conrad röntgen"),  # unicode letters kept, lower-cased
        ("“quoted” — dash", "“quoted” — dash"),  # only ASCII punctuation is removed, as in the official script
        ("", ""),
        ("   ", ""),
        ("the", ""),
    ],
)
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_match_best_over_aliases():
    assert exact_match("the Eiffel Tower", ["Eiffel Tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower", "tour eiffel"]) == 0.0
    assert exact_match("December 1972", ["14 December 1972 UTC", "December 1972"]) == 1.0
    assert exact_match("Röntgen", "röntgen") == 1.0
    assert exact_match("Rontgen", "Röntgen") == 0.0  # no accent folding
    assert exact_match("1972", ["1,972"]) == 1.0  # commas are punctuation
    assert exact_match("", [""]) == 1.0
    assert exact_match("", ["x"]) == 0.0
    assert exact_match("x", []) == 0.0


def test_token_f1():
    assert token_f1("Eiffel", ["Eiffel Tower"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("the big red dog", ["red dog", "cat"]) == pytest.approx(0.8)  # "big red dog" vs "red dog"
    assert token_f1("14 December 1972", ["December 1972", "14 December 1972 UTC"]) == pytest.approx(max(2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * 0.75 / 1.75))
    assert token_f1("a a b", ["a b b"]) == pytest.approx(2 / 3)  # articles removed: "b" vs "b b"
    assert token_f1("one two two", ["two two three"]) == pytest.approx(2 / 3)  # multiset overlap
    assert token_f1("", ["x"]) == 0.0
    assert token_f1("", [""]) == 0.0  # the official script scores no overlap as 0
    assert token_f1("x", []) == 0.0


def test_contains_answer_on_token_boundaries():
    assert contains_answer("It was in December 1972, I think", ["December 1972"]) == 1.0
    assert contains_answer("someone", ["one"]) == 0.0
    assert contains_answer("one season", ["one"]) == 1.0
    assert contains_answer("the answer is Paris.", ["paris"]) == 1.0
    assert contains_answer("Paris", [""]) == 0.0  # empty gold never matches
    assert contains_answer("", ["Paris"]) == 0.0
    assert contains_answer("Zürich", ["zürich"]) == 1.0


def test_regex_golds_curatedtrec_style():
    pats = [r"(?:Abraham\s+)?Lincoln", r"1[89]\d\d"]
    assert regex_exact_match(" abraham lincoln ", pats) == 1.0
    assert regex_exact_match("Lincoln was president", pats) == 1.0  # DrQA: a match at the start counts
    assert regex_exact_match("President Lincoln", pats) == 0.0
    assert regex_contains("President Lincoln", pats) == 1.0
    assert regex_exact_match("1865", pats) == 1.0 and regex_exact_match("2065", pats) == 0.0
    assert score_answer("lincoln", pats, regex=True) == AnswerScores(em=1.0, f1=1.0, contains=1.0)
    assert regex_exact_match("x", ["(unclosed"]) == 0.0  # an invalid pattern matches nothing (tests/unit/test_regex_answers.py)


def test_score_answer_record():
    s = score_answer("The Eiffel Tower in Paris", ["Eiffel Tower"])
    assert s.em == 0.0 and s.contains == 1.0 and 0 < s.f1 < 1


def test_dpr_tokens_match_simple_tokenizer():
    assert dpr_tokens("May 18, 2018") == ["may", "18", ",", "2018"]
    assert dpr_tokens("Destiny's Child") == ["destiny", "'", "s", "child"]
    # NFD splits accents into combining marks that stay inside the word, as in DPR
    assert dpr_tokens("Röntgen") == ["ro\u0308ntgen"]


def test_has_answer_token_sequences():
    text = "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901."
    assert has_answer(["Wilhelm Conrad Röntgen"], text)
    assert has_answer(["röntgen"], text)  # uncased
    assert has_answer(["RÖNTGEN"], unicodedata_nfc(text))
    assert not has_answer(["Rontgen"], text)
    assert not has_answer(["190"], text)  # whole tokens only
    assert has_answer(["1901"], text)
    assert has_answer(["May 18 , 2018"], "released on May 18, 2018 in the US")  # DPR-tokenized answers match raw text
    assert not has_answer(["18 May"], "released on May 18, 2018")
    assert not has_answer(["", "   "], text)  # empty answers never match
    assert not has_answer([], text)


def unicodedata_nfc(s):
    import unicodedata

    return unicodedata.normalize("NFC", s)


def test_has_answer_batch_and_regex_mode():
    texts = ["Abraham Lincoln was born in 1809.", "Nothing here.", "LINCOLN memorial"]
    assert has_answer_batch(["Lincoln"], texts) == [True, False, True]
    assert has_answer_batch([r"Linc[o0]ln\s+memorial"], texts, regex=True) == [False, False, True]
    assert has_answer_batch(["x"], []) == []
