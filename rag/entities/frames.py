"""Question frames induced from the QA set itself: where a template-generated question's subject starts and ends.

Sets such as EntityQuestions, PopQA or LAMA fill a handful of templates ("Where is [X] located?") with
subjects that are often long-tail titles with lower-case words, digits or brackets ("Lalian railway station",
"1988 Toronto International Film Festival", "Pound (town), Wisconsin"), which no proper-name rule delimits.
The templates themselves are visible in the questions: the frame words around the subject are shared by
hundreds of questions, the subject by one or a few. So, over all questions being counted (whitespace tokens,
a final "?" split off):

    prefix frame  the longest run of leading tokens (at least 2) shared by at least F questions, all lower
                  case after the first ("Where is", "What kind of work does"; not "Where is Battle of")
    suffix frame  the longest run of trailing tokens shared by at least F questions, all lower case, or just
                  the final "?" ("located in ?", "born ?", "'s child ?")
    subject       what lies between (at least one token); a question with no suffix frame (not even its final
                  "?") has none: where its subject ends is unknown ("which article mentions [X] and says [Y]")

with F = max(min_count, min_share * number of questions); a suffix frame is only taken if every shorter suffix
of it is also a frame. Frames apply to a QA set only when it looks template-generated: at least MIN_FRAMED of
its questions get a subject that starts with an upper-case letter, a digit, a quote or a bracket
(EntityQuestions: 99%; TriviaQA 7% and NQ-open 1%, where they are off), because
in natural questions the words between two frequent frames are not a subject ("What was [Eddie Murphy's
first movie]?").
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from rag.entities.fold import form_key

_TOKEN = re.compile(r"\S+")
MAX_FRAME = 8  # tokens
MIN_FRAMED = 0.5


def _tokens(question: str) -> list[tuple[str, int, int]]:
    """(token, start, end) over whitespace tokens; a final "?" and a possessive "'s" are tokens of their own
    (so "Who is [X]'s child?" has the frame "'s child ?" and "Barnardo's" keeps its "'s")."""
    q = question.rstrip()
    toks = []
    for m in _TOKEN.finditer(q):
        t, a, b = m.group(), m.start(), m.end()
        tail = []
        if m.end() == len(q) and t.endswith("?") and len(t) > 1:
            t, b, tail = t[:-1], b - 1, [("?", b - 1, b)]
        if len(t) > 2 and t[-2:] in ("'s", "\u2019s"):
            toks += [(t[:-2], a, b - 2), (t[-2:], b - 2, b)]
        else:
            toks.append((t, a, b))
        toks += tail
    return toks


def subject_key(s: str | None) -> str:
    """How subjects are compared: form_key with a leading "the" dropped (the lexicon treats "The X" as "X")."""
    k = form_key(s or "")
    return k[4:] if k.startswith("the ") else k


def _lower(tok: str) -> bool:
    c = next((ch for ch in tok if ch.isalpha()), "")
    return bool(c) and c.islower() or not c and not any(ch.isdigit() for ch in tok)


@dataclass
class Frames:
    prefixes: Counter  # tuple of tokens -> questions starting with them
    suffixes: Counter
    min_freq: int
    share_framed: float = 0.0  # questions of the set that fit a frame
    applies: bool = False  # the set looks template-generated: at least MIN_FRAMED of it fits a frame

    @classmethod
    def induce(cls, questions: Sequence[str], min_count: int = 20, min_share: float = 0.005) -> "Frames":
        pre, suf = Counter(), Counter()
        for q in questions:
            toks = [t for t, _, _ in _tokens(q)]
            for k in range(1, min(MAX_FRAME, len(toks)) + 1):
                pre[tuple(toks[:k])] += 1
                suf[tuple(toks[-k:])] += 1
        f = max(int(min_count), int(min_share * len(questions)))
        fr = cls(Counter({k: v for k, v in pre.items() if v >= f}), Counter({k: v for k, v in suf.items() if v >= f}), f)
        n = sum(fr._subject(q, strict=True) is not None for q in questions)
        fr.share_framed = round(n / len(questions), 4) if questions else 0.0
        fr.applies = fr.share_framed >= MIN_FRAMED
        return fr

    def describe(self, top: int = 20) -> dict:
        """The most frequent frames, for manifests and reports."""
        return {"min_frequency": self.min_freq, "share_framed": self.share_framed, "applies": self.applies,
                "prefixes": [[" ".join(k), v] for k, v in self.prefixes.most_common(top) if len(k) >= 2],
                "suffixes": [[" ".join(k), v] for k, v in self.suffixes.most_common(top)]}

    def subject(self, question: str) -> tuple[int, int] | None:
        """(start, end) of the framed subject in `question`; None when there is none or frames do not apply."""
        return self._subject(question) if self.applies else None

    def _subject(self, question: str, strict: bool = False) -> tuple[int, int] | None:
        toks = _tokens(question)
        words = [t for t, _, _ in toks]
        n = len(words)
        p = 0
        for k in range(2, min(MAX_FRAME, n - 1) + 1):
            if not _lower(words[k - 1]):  # frame words after the question word are lower case
                break
            if tuple(words[:k]) in self.prefixes:
                p = k
        if not p:
            return None
        s = 0
        for k in range(1, min(MAX_FRAME, n - p - 1) + 1):
            tail = tuple(words[-k:])
            if tail not in self.suffixes or not _lower(words[-k]):  # "?" counts as lower case
                break
            s = k
        if s == 0 or p + s >= n:  # no closing frame (not even the final "?"): where the subject ends is unknown
            return None
        a, b = toks[p][1], toks[n - s - 1][2]
        first = question[a:b][:1]
        if strict and not (first.isupper() or first.isdigit() or first in "\"'\u201c("):
            return None
        return a, b
