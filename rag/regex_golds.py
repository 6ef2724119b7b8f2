"""Regex gold answers (CuratedTREC) on the entity-linking side: which literal strings a pattern stands for.

Scoring a regex gold needs no strings (rag.metrics matches the pattern itself). Relevant-document counts
do: the answer side is entity-linked, and "Paris|Lyon" or "(?:Dr\\.? )?Smith" is not text to link. So a
pattern gives linkable aliases only when it is a plain alternation of literals:
    split on every unescaped "|" (a "|" inside a group or class never gets here: groups are rejected),
    drop \\b and a leading "^" / trailing "$" (anchors, no characters), read "\\." and any other escaped
    punctuation ("\\-", "\\'", "\\&") as that character; any other metacharacter (. * + ? { } [ ] ( ) or
    an escaped letter or digit such as \\s, \\d, \\w) means the pattern is not literal and gives nothing.
    r"\\bParis\\b|Lyon" -> ("Paris", "Lyon");  r"St\\. Louis" -> ("St. Louis",);  r"Nash(ville)?" -> ()
A question whose patterns give no alias at all cannot have its answer linked: counting labels it
answer-unlinked (reason NOT_LITERAL) instead of linking the pattern text.

Questions loaded as regex golds (rag.qa: the curatedtrec format, a file named *curatedtrec*, or
match_type="regex") carry meta["match_type"] = "regex" and meta["answer_aliases"] (literal_answers of
their golds); `linking_answers(q)` is what linking and lexicon aliases should read instead of q.answers.
"""
from __future__ import annotations

from typing import Sequence

from rag.types import Question

REGEX = "regex"
NOT_LITERAL = "answer-regex-not-literal"  # why a regex-gold question has no answer to link

_META = set(".^$*+?{}[]()|\\")


def _alternatives(pattern: str) -> list[list[str]] | None:
    """The pattern's tokens (one character, or an escape "\\x"), split on unescaped "|"; None: a dangling "\\"."""
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                return None
            parts[-1].append(pattern[i : i + 2])
            i += 2
            continue
        if c == "|":
            parts.append([])
        else:
            parts[-1].append(c)
        i += 1
    return parts


def _literal(tokens: list[str]) -> str | None:
    """The string one alternative matches, or None when it is not a literal."""
    if tokens and tokens[0] == "^":
        tokens = tokens[1:]
    if tokens and tokens[-1] == "$":
        tokens = tokens[:-1]
    out = []
    for t in tokens:
        if t == "\\b":
            continue
        if len(t) == 2:  # an escape
            if t[1].isalnum() or t[1] == "_":
                return None  # \s, \d, \w, \1, \p ...: a class or a reference, not a character
            out.append(t[1])
        elif t in _META:
            return None
        else:
            out.append(t)
    return " ".join("".join(out).split())


def literal_aliases(pattern: str) -> tuple[str, ...]:
    """The literal strings a plain alternation of literals matches (distinct, in order); () for any other pattern."""
    alts = _alternatives(pattern)
    if alts is None:
        return ()
    lits = [_literal(a) for a in alts]
    if any(x is None for x in lits):
        return ()
    return tuple(dict.fromkeys(x for x in lits if x))


def literal_answers(patterns: Sequence[str]) -> tuple[str, ...]:
    """literal_aliases of every gold pattern, together (distinct, in order); non-literal patterns add nothing."""
    return tuple(dict.fromkeys(a for p in patterns for a in literal_aliases(p)))


def is_regex(q: Question) -> bool:
    """Are this question's golds regular expressions (loaded with match_type "regex")?"""
    return q.meta.get("match_type") == REGEX


def linking_answers(q: Question) -> tuple[str, ...]:
    """The answer strings to entity-link: the golds, or for regex golds their literal aliases (maybe none)."""
    if not is_regex(q):
        return tuple(q.answers)
    aliases = q.meta.get("answer_aliases")
    return tuple(aliases) if aliases is not None else literal_answers(q.answers)
