"""Leftmost-longest whole-word matching of many forms by hashing word n-grams, in numpy.

The same output as an Aho-Corasick automaton (ahocorasick-rs, MatchKind.LeftmostLongest) over the
word-boundary keys of rag.entities.linkers, found word by word instead of character by character:

    text   folded code points; a word is a maximal run of non-separator characters, a line is a run of
           words between breaks (line breaks and text boundaries)
    forms  words split at single spaces; a form whose words cannot all be text words (an empty word, a
           separator inside one) simply never hashes to a text n-gram, exactly as its key never matched

Every word gets a 64-bit hash (polynomial over code points via prefix sums mod 2**64, then mixed); every
n-gram of words a hash built the same way from word hashes. A table (open addressing, linear probing, in
numpy arrays) maps the hash of every word-prefix of every form to the form id, or -1 when the prefix is
not itself a form. Matching grows n-grams from every word start while they are still form prefixes
(one vectorized lookup per length), keeps the longest form per start, then picks the leftmost-longest
non-overlapping ones (greedy chains, vectorized per overlap group).

A false match needs a 64-bit collision between a text n-gram and a form prefix (odds ~1e-12 per lookup);
tests compare this engine with ahocorasick-rs on real passages.
"""
from __future__ import annotations

import numpy as np

from rag.entities.fold import SPACE, codepoints

_B = 0x100000001B3  # odd multipliers: invertible mod 2**64
_C = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_EMPTY = np.uint64(0)  # hashes are odd (| 1), so 0 marks an empty slot


def _powers_of(x: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.full(n, x, np.uint64)
    p[0] = 1
    pos = np.cumprod(p)
    q = np.full(n, pow(x, -1, 2**64), np.uint64)
    q[0] = 1
    return pos, np.cumprod(q)


class _PowerCache:
    def __init__(self, x: int):
        self.x, self.pos, self.neg = x, np.ones(0, np.uint64), np.ones(0, np.uint64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pos) < n:
            self.pos, self.neg = _powers_of(self.x, max(n, 2 * len(self.pos), 1024))
        return self.pos[:n], self.neg[:n]


_CHAR_POW = _PowerCache(_B)
_WORD_POW = _PowerCache(_C)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (uint64 -> uint64), so table slots can use the high bits."""
    x = x ^ (x >> np.uint64(30))
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def word_hashes(cps: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Hash of each word cps[start:end] (end exclusive, start >= 1, words non-empty); (n_words,) uint64."""
    pos, neg = _CHAR_POW.get(len(cps))
    q = np.cumsum(cps.astype(np.uint64) * neg)  # q[j] = sum_{k<=j} c_k x**-k
    # sum_{k in word} c_k x**(end-1-k) = x**(end-1) * (q[end-1] - q[start-1])
    with np.errstate(over="ignore"):
        h = pos[end - 1] * (q[end - 1] - q[start - 1])
    return _mix(h)


class NgramHasher:
    """Hashes of word n-grams [i, j] (inclusive) from word hashes, via prefix sums over words."""

    def __init__(self, words: np.ndarray):
        pos, neg = _WORD_POW.get(len(words) + 1)
        self.r = np.zeros(len(words) + 1, np.uint64)
        np.cumsum(words * neg[: len(words)], out=self.r[1:])  # r[t] = sum_{k<t} w_k y**-k
        self.pos = pos

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return _mix(self.pos[j] * (self.r[j + 1] - self.r[i])) | np.uint64(1)


class HashTable:
    """uint64 key -> int32 value, open addressing with linear probing (no wrap-around), numpy arrays."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        n = max(len(keys), 1)
        self.bits = int(np.ceil(np.log2(n * 1.6)))
        self.shift = np.uint64(64 - self.bits)
        home = (keys >> self.shift).astype(np.int64)
        order = np.lexsort((keys, home))
        keys, values, home = keys[order], values[order], home[order]
        k = np.arange(len(keys), dtype=np.int64)
        # slot of the k-th key in home order: max(home_k, slot_{k-1} + 1) = k + cummax(home - k)
        slot = k + np.maximum.accumulate(home - k) if len(keys) else k
        size = int(slot[-1]) + 2 if len(keys) else 2  # at least one empty slot after the last key
        size = max(size, (1 << self.bits) + 1)
        self.keys = np.zeros(size, np.uint64)
        self.values = np.full(size, -1, np.int32)
        self.keys[slot] = keys
        self.values[slot] = values
        self.n = len(keys)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def lookup(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found bool, value int32 where found) for each hash in h."""
        found = np.zeros(len(h), bool)
        value = np.full(len(h), -1, np.int32)
        idx = np.arange(len(h))
        slot = (h >> self.shift).astype(np.int64)
        hh = h
        while len(idx):
            k = self.keys[slot]
            hit = k == hh
            found[idx[hit]] = True
            value[idx[hit]] = self.values[slot[hit]]
            go = ~hit & (k != _EMPTY)
            idx, slot, hh = idx[go], slot[go] + 1, hh[go]
        return found, value


def words_of(is_word: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end exclusive) of each maximal run of is_word; is_word[0] must be False."""
    d = np.diff(is_word.view(np.int8))
    start = np.flatnonzero(d == 1) + 1
    end = np.flatnonzero(d == -1) + 1
    if len(end) < len(start):  # the last word runs to the end
        end = np.append(end, len(is_word))
    return start, end


class FormTable:
    """All word-prefixes of the given forms -> form id (or -1 for a prefix that is not a form)."""

    def __init__(self, forms: list[str], ids: np.ndarray):
        ids = np.asarray(ids, np.int64)
        # forms never hold "\n" after folding; one with it could never match a text word, so drop it
        ok = np.fromiter(("\n" not in f for f in forms), bool, len(forms))
        forms = [f for f, k in zip(forms, ok) if k]
        ids = ids[ok]
        cps = codepoints("\n" + "\n".join(forms) + "\n")
        delim = (cps == SPACE) | (cps == 10)
        # words are the pieces between delimiters (possibly empty: such a form can never match)
        dpos = np.flatnonzero(delim)
        start, end = dpos[:-1] + 1, dpos[1:]
        nl = cps[dpos] == 10
        form_of_word = np.cumsum(nl)[:-1] - 1  # dpos[k] opens word k; forms are opened by "\n"
        first = np.flatnonzero(nl[:-1])  # word index of each form's first word
        last = np.append(first[1:], len(start)) - 1
        empty = start == end
        bad_form = np.zeros(len(forms), bool)
        np.logical_or.at(bad_form, form_of_word[empty], True)
        # hash non-empty words; empty words get an arbitrary value (their forms are dropped below)
        safe_end = np.where(empty, start + 1, end)
        w = word_hashes(cps, start, safe_end)
        ng = NgramHasher(w)
        t = np.arange(len(start), dtype=np.int64)
        keep = ~bad_form[form_of_word]
        t = t[keep]
        h = ng(first[form_of_word[t]], t)
        is_last = np.zeros(len(start), bool)
        is_last[last] = True
        val = np.where(is_last[t], ids[form_of_word[t]], -1).astype(np.int64)
        # one entry per hash: a complete form wins over a mere prefix; two forms with one hash is a collision
        order = np.lexsort((-val, h))
        h, val = h[order], val[order]
        first_of = np.ones(len(h), bool)
        first_of[1:] = h[1:] != h[:-1]
        dup_forms = ~first_of & (val >= 0)
        if dup_forms.any():
            raise RuntimeError(f"{int(dup_forms.sum())} 64-bit hash collision(s) between lexicon forms; use an Aho-Corasick engine")
        self.table = HashTable(h[first_of], val[first_of].astype(np.int32))
        self.max_words = int((last - first + 1).max()) if len(first) else 0

    @property
    def nbytes(self) -> int:
        return self.table.nbytes

    def find(self, folded: np.ndarray, line_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leftmost-longest non-overlapping form matches in a batch: (start, end exclusive, form id) in
        code-point offsets of `folded`, sorted by start. folded: folded code points, words are its characters
        above SPACE (letters and digits); line_starts: sorted positions of the breaks, the first at 0."""
        start, end = words_of(folded > SPACE)
        line = np.searchsorted(line_starts, start)  # words i, j share a line when no break lies between
        n = len(start)
        best_len = np.zeros(n, np.int64)
        best_form = np.full(n, -1, np.int64)
        if n == 0:
            e = np.zeros(0, np.int64)
            return e, e, e
        ng = NgramHasher(word_hashes(folded, start, end))
        i = np.arange(n, dtype=np.int64)
        k = 1
        while len(i):
            j = i + (k - 1)
            inside = j < n
            i, j = i[inside], j[inside]
            same = line[j] == line[i]  # a match never crosses a line
            i, j = i[same], j[same]
            found, val = self.table.lookup(ng(i, j))
            i, val = i[found], val[found]
            f = val >= 0
            best_len[i[f]] = k
            best_form[i[f]] = val[f]
            k += 1
        cand = np.flatnonzero(best_len)
        cend = cand + best_len[cand]  # word index after the match
        # greedy leftmost-longest: a candidate no earlier candidate overlaps heads a group; within a group the
        # chosen ones are the chain head -> first candidate starting at or after its end -> ...
        prev_end = np.empty(len(cand), np.int64)
        if len(cand):
            prev_end[0] = -1
            np.maximum.accumulate(cend[:-1], out=prev_end[1:])
        sel = cand >= prev_end
        nxt = np.searchsorted(cand, cend)
        frontier = nxt[sel]
        while True:
            frontier = frontier[frontier < len(cand)]
            frontier = frontier[~sel[frontier]]
            if not len(frontier):
                break
            sel[frontier] = True
            frontier = nxt[frontier]
        c = cand[sel]
        return start[c], end[cend[sel] - 1], best_form[c]
