"""Character folding shared by lexicon forms and linked text, done in numpy over code points.

Both sides go through the same map, so a form matches text exactly when their folded strings match:
    fold(s)   lower-case every character whose lower case is one character (length is kept, so
              offsets into the folded text are offsets into the original), and turn every character
              that is not a letter or digit into a space; "\\x00" is kept (it separates texts in a batch).
    "Dante's Inferno" -> "dante s inferno",  "AT&T" -> "at t",  "R-27" -> "r 27"
"""
from __future__ import annotations

import functools

import numpy as np

SEP = 0  # code point that separates texts in a batch; never inside a form
SPACE = 32
N_CODEPOINTS = 0x110000


@functools.lru_cache(maxsize=1)
def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower uint32, alnum bool, is_upper bool, is_lower bool), each indexed by code point.

    Built once per process (~0.5 s); worker processes forked after the first call share it.
    """
    lower = np.arange(N_CODEPOINTS, dtype=np.uint32)
    alnum = np.zeros(N_CODEPOINTS, dtype=bool)
    is_upper = np.zeros(N_CODEPOINTS, dtype=bool)
    is_lower = np.zeros(N_CODEPOINTS, dtype=bool)
    for cp in range(N_CODEPOINTS):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot appear in a decoded str
            continue
        c = chr(cp)
        if c.isalnum():
            alnum[cp] = True
            if c.isupper() or c.istitle():
                is_upper[cp] = True
                lo = c.lower()
                if len(lo) == 1:
                    lower[cp] = ord(lo)
            elif c.islower():
                is_lower[cp] = True
    return lower, alnum, is_upper, is_lower


def codepoints(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


@functools.lru_cache(maxsize=1)
def fold_table() -> np.ndarray:
    """Folded code point of every code point (uint32): its lower case if a letter or digit, SEP kept, else SPACE.

    Letters and digits fold above SPACE, so `folded > SPACE` marks word characters."""
    lower, alnum, _, _ = tables()
    t = np.where(alnum, lower, np.uint32(SPACE)).astype(np.uint32)
    t[SEP] = SEP
    assert (t[alnum] > SPACE).all()
    return t


def fold_codepoints(cps: np.ndarray) -> np.ndarray:
    return fold_table()[cps]


def to_str(cps: np.ndarray) -> str:
    return cps.astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def fold(s: str) -> str:
    """The folded form of one string (same length as `s`)."""
    return to_str(fold_codepoints(codepoints(s)))


def fold_many(strings: list[str]) -> list[str]:
    """fold() of many strings in one numpy pass."""
    if not strings:
        return []
    joined = "\x00".join(s.replace("\x00", " ") for s in strings)
    return to_str(fold_codepoints(codepoints(joined))).split("\x00")


def form_key(s: str) -> str:
    """Canonical lexicon form: folded, stripped, runs of spaces collapsed ("Dr. Who" -> "dr who")."""
    return " ".join(fold(s).split())
