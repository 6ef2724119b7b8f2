"""A coarse answer type per question, for QA sets without relations (NQ-open, TriviaQA): what kind of answer a
model could guess from surface cues alone.

    country      some gold answer is one of Kandpal et al.'s countries (rag.entities.countries.is_country)
    number       the first gold is a number or date: it has a digit (or a number word) and no other words than
                 month names, number words and date words ("1994", "May 18, 2018", "3.5 million", "1990s", "12 BC")
    person-like  the first gold is 2 to 4 capitalised words, with name particles allowed inside ("Ludwig van
                 Beethoven"); mostly people, but some places and works are caught too ("New Zealand Herald")
    other        everything else (single names, common nouns, titles, phrases)

Checked in that order: a country is a country even when it is two capitalised words. Deliberately simple and
transparent; it is a stratifier for the controls, not a named-entity tagger.
"""
from __future__ import annotations

import re
from typing import Sequence

COUNTRY, NUMBER, PERSON, OTHER = "country", "number", "person-like", "other"
TYPES = (COUNTRY, NUMBER, PERSON, OTHER)

_MONTHS = ("january february march april may june july august september october november december "
           "jan feb mar apr jun jul aug sep sept oct nov dec")
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
                 "thousand million billion trillion dozen")
_DATE_WORDS = "bc ad bce ce st nd rd th s am pm century centuries year years percent and"
_NUMERIC = frozenset(_MONTHS.split()) | frozenset(_NUMBER_WORDS.split()) | frozenset(_DATE_WORDS.split())
_NUMBER_ONLY = frozenset(_NUMBER_WORDS.split())
_PARTICLES = frozenset("de da di du del della der den van von la le bin ibn al el y".split())
_WORD = re.compile(r"[^\W\d_]+")


def is_number(answer: str) -> bool:
    words = [w.lower() for w in _WORD.findall(answer)]
    if any(w not in _NUMERIC for w in words):
        return False
    return any(ch.isdigit() for ch in answer) or any(w in _NUMBER_ONLY for w in words)


def is_person_like(answer: str) -> bool:
    toks = answer.split()
    if not 2 <= len(toks) <= 4 or any(ch.isdigit() for ch in answer):
        return False

    def cap(t: str) -> bool:
        t = t.strip(".,'\"()")
        return bool(t) and t[0].isupper() and any(ch.isalpha() for ch in t)

    return cap(toks[0]) and cap(toks[-1]) and all(cap(t) or t.lower() in _PARTICLES for t in toks[1:-1])


def answer_type(answers: Sequence[str]) -> str:
    """The type of a question's gold answers (module docstring); no answers: other."""
    from rag.entities.countries import is_country

    golds = [a for a in answers if a and a.strip()]
    if not golds:
        return OTHER
    if any(is_country(a) for a in golds):
        return COUNTRY
    first = golds[0].strip()
    if is_number(first):
        return NUMBER
    if is_person_like(first):
        return PERSON
    return OTHER
