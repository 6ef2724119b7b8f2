"""Leftmost-longest whole-word matching of many forms by hashing word n-grams, in numpy.

The same output as an Aho-Corasick automaton (ahocorasick-rs, MatchKind.LeftmostLongest) over the
word-boundary keys of rag.entities.linkers, found word by word instead of character by character:

    text   folded code points; a word is a maximal run of non-separator characters, a line is a run of
           words between breaks (line breaks and text boundaries)
    forms  words split at single spaces; a form whose words cannot all be text words (an empty word, a
           separator inside one) simply never hashes to a text n-gram, exactly as its key never matched

Every word gets a 64-bit hash (polynomial over code points via prefix sums mod 2**64, then mixed); every
n-gram of words a hash built the same way from word hashes. A table (open addressing, linear probing, in
numpy arrays) maps the hash of every word-prefix of every form to (the form it completes, if any; whether
a longer form goes on from it). Matching grows n-grams from every word start while some form goes on (one
vectorized lookup per length), keeps the longest form per start, then picks the leftmost-longest
non-overlapping ones (greedy chains, vectorized per overlap group). Per batch this is a few random reads
per word instead of a few per character, which is why it beats the automaton over 2M forms.

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
    """Hash of each word cps[start:end] (end exclusive, start >= 1, words non-empty); (n_words,) uint64.

    """
    pos, neg = _CHAR_POW.get(len(cps))
    q = np.multiply(cps, neg, dtype=np.uint64)  # casts in chunks, no uint64 copy of cps
    np.cumsum(q, out=q)  # q[j] = sum_{k<=j} c_k x**-k
    # sum_{k in word} c_k x**(end-1-k) = x**(end-1) * (q[end-1] - q[start-1])
    last = end - 1
    h = pos[last] * (q[last] - q[start - 1])
    return _mix(h)


class NgramHasher:
    """Hashes of word n-grams [i, j] (inclusive) from word hashes, via prefix sums over words."""

    def __init__(self, words: np.ndarray):
        self.words = words
        pos, neg = _WORD_POW.get(len(words) + 1)
        self.r = np.zeros(len(words) + 1, np.uint64)
        np.cumsum(words * neg[: len(words)], out=self.r[1:])  # r[t] = sum_{k<t} w_k y**-k
        self.pos = pos

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        # word hashes are already mixed; a polynomial of them spreads into the high bits the table uses
        return (self.pos[j] * (self.r[j + 1] - self.r[i])) | np.uint64(1)

    def unigrams(self) -> np.ndarray:
        """__call__(i, i) for every word: y**i * (w_i y**-i) is w_i exactly."""
        return self.words | np.uint64(1)


class HashTable:
    """uint64 key (non-zero) -> int64 value (non-zero), open addressing with linear probing (no wrap-around).

    slots: (size, 2) uint64, (key, value) per slot; size ~1.6-3.2x the number of keys."""

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
        # slot s holds (key, value) side by side in one cache line: one random read per probe
        self.slots = np.zeros((size, 2), np.uint64)
        self.slots[slot, 0] = keys
        self.slots[slot, 1] = values.astype(np.int64).astype(np.uint64)
        self.n = len(keys)

    @property
    def nbytes(self) -> int:
        return self.slots.nbytes

    def lookup(self, h: np.ndarray) -> np.ndarray:
        """Value of each hash in h (int64), 0 where absent (stored values must be non-zero)."""
        kv = self.slots.take((h >> self.shift).astype(np.int64), axis=0)  # (m, 2): most keys sit in their home slot
        hit = kv[:, 0] == h
        value = np.where(hit, kv[:, 1].view(np.int64), 0)
        idx = np.flatnonzero(~hit & (kv[:, 0] != _EMPTY))  # collided: probe the next slots
        if len(idx):
            slot = (h[idx] >> self.shift).astype(np.int64) + 1
            hh = h[idx]
            while len(idx):
                kv = self.slots.take(slot, axis=0)
                hit = kv[:, 0] == hh
                value[idx[hit]] = kv[hit, 1].view(np.int64)
                go = ~hit & (kv[:, 0] != _EMPTY)
                idx, slot, hh = idx[go], slot[go] + 1, hh[go]
        return value


def words_of(is_word: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end exclusive) of each maximal run of is_word; is_word[0] must be False."""
    t = np.flatnonzero(np.diff(is_word.view(np.int8))) + 1  # alternate: start, end, start, ...
    if len(t) % 2:  # the last word runs to the end
        t = np.append(t, len(is_word))
    return t[0::2], t[1::2]


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
        cont = ~is_last[t]  # a proper prefix: some form goes on after this word
        # one entry per hash: the form it completes (if any), and whether any form goes on
        order = np.argsort(h, kind="stable")
        h, val, cont = h[order], val[order], cont[order]
        first_of = np.ones(len(h), bool)
        first_of[1:] = h[1:] != h[:-1]
        g = np.flatnonzero(first_of)
        n_forms = np.add.reduceat((val >= 0).astype(np.int64), g) if len(g) else np.zeros(0, np.int64)
        if (n_forms > 1).any():
            raise RuntimeError(f"{int((n_forms > 1).sum())} 64-bit hash collision(s) between lexicon forms; use an Aho-Corasick engine")
        form = np.maximum.reduceat(val, g) if len(g) else val
        more = np.logical_or.reduceat(cont, g) if len(g) else cont
        # value: (form id + 1) * 2 + goes-on bit
        self.table = HashTable(h[g], ((form + 1) * 2 + more).astype(np.int32))

    @property
    def nbytes(self) -> int:
        return self.table.nbytes

    def find(self, folded: np.ndarray, line_starts: np.ndarray, words: tuple[np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leftmost-longest non-overlapping form matches in a batch: (start, end exclusive, form id) in
        code-point offsets of `folded`, sorted by start. folded: folded code points, words are its characters
        above SPACE (letters and digits); line_starts: sorted positions of the breaks, the first at 0;
        words: words_of(folded > SPACE) when the caller has it."""
        start, end = words if words is not None else words_of(folded > SPACE)
        n = len(start)
        if n == 0:
            e = np.zeros(0, np.int64)
            return e, e, e
        # room[i]: words after word i on its line (a match never crosses a line)
        first_w = np.searchsorted(start, line_starts)  # first word after each break
        mark = np.zeros(n + 1, np.int32)
        mark[first_w] = 1
        line = np.cumsum(mark[:n]) - 1  # index into the line's first word, counting only marked words
        heads = np.append(np.flatnonzero(mark[:n]), n)
        room = heads[line + 1] - 1 - np.arange(n)
        best_len = np.zeros(n, np.int32)
        best_val = np.zeros(n, np.int64)
        ng = NgramHasher(word_hashes(folded, start, end))
        val = self.table.lookup(ng.unigrams())
        f = val >= 2
        best_len[f] = 1
        best_val[f] = val[f]
        i = np.flatnonzero((val & 1) == 1)  # only prefixes of longer forms grow
        k = 2
        while len(i):
            i = i[room[i] >= k - 1]
            val = self.table.lookup(ng(i, i + (k - 1)))
            f = val >= 2
            best_len[i[f]] = k
            best_val[i[f]] = val[f]
            i = i[(val & 1) == 1]
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
        return start[c], end[cend[sel] - 1], (best_val[c] >> 1) - 1
