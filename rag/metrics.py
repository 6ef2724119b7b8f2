"""Answer metrics: SQuAD v1.1 exact match / token F1, contains-answer, regex golds, DPR-style has_answer.

Predictions are compared with every gold answer and the best score is kept. Two normalizations:
    normalize_answer   the official SQuAD v1.1 script: lower-case, drop ASCII punctuation, drop the articles
                       a/an/the, collapse whitespace. No accent folding ("Röntgen" != "Rontgen").
    DPR tokens         for has_answer (retrieval top-k accuracy): NFD unicode, DPR's SimpleTokenizer
                       (runs of letters/digits/marks, or single other non-space characters), lower-cased;
                       a passage has the answer when the answer's token sequence occurs in its tokens.

Regex golds (CuratedTREC), scored as DPR (dpr/data/qa_validation.py) and DrQA (drqa/reader/utils.py,
scripts/pipeline/eval.py) score them:
    engine      the third-party `regex` module (both references `import regex as re`), flags IGNORECASE +
                UNICODE + MULTILINE. It differs from the stdlib `re` on NFD text: its \\w and \\b count
                combining marks as word characters, so r"\\bRené\\b" finds "René" in NFD text where `re`
                finds nothing; and it knows POSIX classes ([[:alpha:]]), which `re` reads as a plain set.
    NFD         the text (prediction or passage) and the pattern are both NFD-normalized before matching:
                DPR's has_answer calls _normalize on both, DrQA's eval calls normalize on the prediction and
                on every gold. A pattern's literal accents thus become base letter + combining mark (a class
                [éè] becomes a class of e and two marks), exactly as in both references.
    has_answer  DPR's regex_match: pattern.search(text) on the passage text.
    exact match DrQA's regex_match_score: pattern.match(prediction), a match AT THE START of the prediction,
                not of all of it ("Paris, France" matches r"paris"); a pattern that must cover the whole
                answer says so itself with "$".
    contains    pattern.search(prediction) (our measure; the same search as has_answer).
    F1          a regex gold has no tokens to overlap: F1 is the exact-match score.
    bad pattern a gold that is not a valid expression matches nothing (the other golds of the question still
                count), as in both references; it is logged once per distinct pattern.
Where we differ: the prediction is stripped of surrounding whitespace before the prefix match (DrQA's
predictions are extracted spans, which never start with a space; a generated " Paris" would otherwise
miss r"paris"), and only `regex.error` is caught at compile time (the references catch BaseException;
a bad pattern raises nothing else).
"""
from __future__ import annotations

import logging
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import regex as regex_lib  # regex golds and DPR's tokenizer; `re` stays for the SQuAD script's article rule

log = logging.getLogger(__name__)

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


_REGEX_FLAGS = regex_lib.IGNORECASE | regex_lib.UNICODE | regex_lib.MULTILINE
_bad_patterns: set[str] = set()  # invalid gold patterns already logged


def _nfd(s: str) -> str:
    return unicodedata.normalize("NFD", s)


@lru_cache(maxsize=4096)
def compile_gold(pattern: str) -> "regex_lib.Pattern | None":
    """A gold pattern compiled as DPR and DrQA compile it, or None when it is not a valid expression."""
    try:
        return regex_lib.compile(pattern, flags=_REGEX_FLAGS)
    except regex_lib.error as e:
        if pattern not in _bad_patterns:
            _bad_patterns.add(pattern)
            log.warning("gold answer %r is not a valid regular expression (%s); it matches nothing", pattern, e)
        return None


def regex_match(text: str, pattern: str) -> bool:
    """DPR's regex_match: does the pattern occur anywhere in the text? (No normalization here.)"""
    compiled = compile_gold(pattern)
    return compiled is not None and compiled.search(text) is not None


def regex_match_score(prediction: str, pattern: str) -> bool:
    """DrQA's regex_match_score: does the pattern match at the start of the prediction? (No normalization here.)"""
    compiled = compile_gold(pattern)
    return compiled is not None and compiled.match(prediction) is not None


def regex_exact_match(prediction: str, patterns: Sequence[str] | str) -> float:
    """1.0 when some gold pattern matches at the start of the stripped, NFD-normalized prediction (DrQA)."""
    p = _nfd(prediction.strip())
    return float(any(regex_match_score(p, _nfd(pat)) for pat in _golds(patterns)))


def regex_contains(prediction: str, patterns: Sequence[str] | str) -> float:
    """1.0 when some gold pattern occurs anywhere in the NFD-normalized prediction."""
    p = _nfd(prediction)
    return float(any(regex_match(p, _nfd(pat)) for pat in _golds(patterns)))


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
    return regex_lib.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=_REGEX_FLAGS)


def dpr_tokens(text: str) -> list[str]:
    """Lower-cased DPR SimpleTokenizer tokens of the NFD-normalized text."""
    return [m.group().lower() for m in _dpr_token_pattern().finditer(_nfd(text))]


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
    the text's tokens; an empty answer (no tokens) never matches. Regex mode is DPR's: each NFD-normalized
    pattern searches the NFD-normalized text; an invalid pattern matches nothing, an empty one every text.
    """
    if regex:
        patterns = [p for p in (compile_gold(_nfd(a)) for a in answers) if p is not None]
        return [any(p.search(t) is not None for p in patterns) for t in map(_nfd, texts)]
    seqs = [s for s in (dpr_tokens(a) for a in answers) if s]
    return [any(_contains_seq(toks, s) for s in seqs) for toks in map(dpr_tokens, texts)]


def has_answer(answers: Sequence[str] | str, text: str, regex: bool = False) -> bool:
    return has_answer_batch(_golds(answers), [text], regex=regex)[0]
