"""Answer metrics: SQuAD v1.1 exact match / token F1, contains-answer, regex golds, DPR-style has_answer.

Predictions are compared with every gold answer and the best score is kept. Two normalizations:
    normalize_answer   the official SQuAD v1.1 script: lower-case, drop ASCII punctuation, drop the articles
                       a/an/the, collapse whitespace. No accent folding ("Röntgen" != "Rontgen").
    DPR tokens         for has_answer (retrieval top-k accuracy): NFD unicode, DPR's SimpleTokenizer
                       (runs of letters/digits/marks, or single other non-space characters), lower-cased;
                       a passage has the answer when the answer's token sequence occurs in its tokens.
Regex golds (CuratedTREC): each gold is a case-insensitive regular expression; exact match means the
pattern matches the whole stripped prediction, contains means it matches anywhere.
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from rag.errors import BadInputError

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalization (same steps, same order as the official evaluation script)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(golds: Sequence[str] | str) -> Sequence[str]:
    if isinstance(golds, str):
        return (golds,)
    return golds


def exact_match(prediction: str, golds: Sequence[str] | str) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in _golds(golds)))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    # the official script: 0 unless some token overlaps (so two empty answers also score 0 here;
    # exact match still counts them equal)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str] | str) -> float:
    p = normalize_answer(prediction).split()
    return max((_f1(p, normalize_answer(g).split()) for g in _golds(golds)), default=0.0)


def contains_answer(prediction: str, golds: Sequence[str] | str) -> float:
    """1.0 when some normalized gold occurs in the normalized prediction on token boundaries.

    Token boundaries keep "one" from matching inside "someone"; an empty gold never matches.
    """
    p = f" {normalize_answer(prediction)} "
    return float(any((g := normalize_answer(gold)) and f" {g} " in p for gold in _golds(golds)))


@lru_cache(maxsize=4096)
def _compile(pattern: str):
    try:
        return re.compile(pattern, flags=re.IGNORECASE | re.UNICODE | re.MULTILINE)
    except re.error as e:
        raise BadInputError(f"gold answer {pattern!r} is not a valid regular expression ({e})") from None


def regex_exact_match(prediction: str, patterns: Sequence[str] | str) -> float:
    p = prediction.strip()
    return float(any(_compile(pat).fullmatch(p) for pat in _golds(patterns)))


def regex_contains(prediction: str, patterns: Sequence[str] | str) -> float:
    return float(any(_compile(pat).search(prediction) for pat in _golds(patterns)))


@dataclass(frozen=True)
class AnswerScores:
    """One prediction scored against all its gold answers (each the best over the golds)."""

    em: float
    f1: float
    contains: float


def score_answer(prediction: str, golds: Sequence[str] | str, regex: bool = False) -> AnswerScores:
    if regex:
        em = regex_exact_match(prediction, golds)
        return AnswerScores(em=em, f1=em, contains=regex_contains(prediction, golds))
    return AnswerScores(
        em=exact_match(prediction, golds), f1=token_f1(prediction, golds), contains=contains_answer(prediction, golds)
    )


# --- DPR has_answer -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dpr_token_pattern():
    # DPR's SimpleTokenizer: ALPHA_NUM = [\p{L}\p{N}\p{M}]+, NON_WS = [^\p{Z}\p{C}]; needs `regex` for \p{..}
    import regex

    return regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


def dpr_tokens(text: str) -> list[str]:
    """Lower-cased DPR SimpleTokenizer tokens of the NFD-normalized text."""
    return [m.group().lower() for m in _dpr_token_pattern().finditer(unicodedata.normalize("NFD", text))]


def _contains_seq(tokens: list[str], seq: list[str]) -> bool:
    n = len(seq)
    if n == 0:
        return False
    first = seq[0]
    for i in range(len(tokens) - n + 1):
        if tokens[i] == first and tokens[i : i + n] == seq:
            return True
    return False


def has_answer_batch(answers: Sequence[str], texts: Iterable[str], regex: bool = False) -> list[bool]:
    """For each text (e.g. the top-k passages of one question): does it contain any of `answers`?

    String mode tokenizes the answers once; a text matches when some answer's token sequence occurs in
    the text's tokens. Regex mode searches the NFD-normalized text with each (NFD-normalized) pattern.
    An empty answer (no tokens) never matches.
    """
    if regex:
        patterns = [_compile(unicodedata.normalize("NFD", a)) for a in answers]
        out = []
        for t in texts:
            t = unicodedata.normalize("NFD", t)
            out.append(any(p.search(t) for p in patterns))
        return out
    seqs = [s for s in (dpr_tokens(a) for a in answers) if s]
    return [any(_contains_seq(toks, s) for s in seqs) for toks in map(dpr_tokens, texts)]


def has_answer(answers: Sequence[str] | str, text: str, regex: bool = False) -> bool:
    return has_answer_batch(_golds(answers), [text], regex=regex)[0]
