"""Proper-name spans: the stretches of text that name one thing, found the same way in passages and questions.

The linker drops a capitalized mention that is a strict part of a longer proper-name span ("Robert" in
"Robert A. Miller", "Harbour" in "Crow Harbour, New Brunswick"), and the surface fallback of counting takes
a question's unlinked span as its subject phrase. Both use `name_spans` below, so a question and a passage
that share a name split it identically.

Words are maximal runs of letters and digits (the folding of rag.entities.fold); the gap between two words
is the text between them. A word is

    name word   its first character is upper case, and it is not a sentence-initial function word ("Which",
                "In", "The" at the start of a sentence; sentence start = the first word of a line or text,
                or a word after ".", "!", "?", ":" that does not follow an initial), and not a leading
                article (see below)
    connector   one of CONNECTORS (lower case): name particles (de, von, van, der, del, della, di, du, da,
                la, le, bin, ibn, al, el, y, ...), "of", "the", and "and" only as "and the"

Consecutive words belong to one span when

    1. both are name words and the gap is one space, a hyphen ("Watson-Wentworth"), an apostrophe
       ("O'Brien", "d'Auvergne"), or " & " ("Marks & Spencer");
    2. the first is an initial (one upper-case letter) and the gap is ". " ("Robert A. Miller", "J. R. R.
       Tolkien");
    3. up to two connectors stand between two name words, every gap one space ("Charles de Freycinet",
       "Theo van Gogh", "Battle of the Bulge", "Natalie Stovall and the Drive"); a lone "and" does not join,
       because coordinated names are two names ("Mozart and Beethoven", "France and Germany");
    4. "Place, Region": two name spans joined by ", " ("Crow Harbour, New Brunswick"), unless it looks like a
       list (the left span follows ", " + a name word, or the right span is followed by ", " / " and " /
       " or " + a name word) or the left span is a single sentence-initial word ("However, John");
    5. a contraction continues a name word ("Don't Take It Away": an apostrophe then "t", "ll", "re", "ve",
       "d" or "m"); a possessive "'s" ends the span ("Cedric Wyatt's child" -> "Cedric Wyatt").

An article ("The", "A", "An") never starts a span: "The Golden Gate" is the span "Golden Gate" (the
lexicon drops a form "the X" when "X" is a form too), so "The Hague" still links through "Hague".
Quoted titles: text between matching double quotes (" " or \u201c \u201d) that starts with a name word is one
span when it holds at most QUOTED_WORDS words and no line break ("Time to Come", "Don't Take It Away").
Digits are not name words (years and numbers run into names in prose: "5 May 1990").
"""
from __future__ import annotations

import functools

import numpy as np

from rag.entities.fold import SEP, SPACE, codepoints, fold_codepoints, tables
from rag.entities.hashmatch import words_of

VERSION = 1  # recorded in the linker identity: postings linked under other span rules are refused
CONNECTORS = frozenset(
    "of the and de del della der des di da du dos das do van von den ter ten la le bin ibn ben al el y i e zu zur af "
    "ua mac ap".split()
)
ARTICLES = frozenset({"the", "a", "an"})
QUOTED_WORDS = 12  # longest quoted title taken as one span
_APOS = (39, 0x2019)  # ' and its typographic form
_HYPHENS = (45, 0x2010, 0x2011)
_QUOTES_OPEN = (34, 0x201C)
_QUOTES_CLOSE = (34, 0x201D)
_SENTENCE_END = (46, 33, 63, 58)  # . ! ? :

# gap kinds between consecutive words
G_OTHER, G_SPACE, G_JOIN, G_COMMA, G_PERIOD, G_APOS = 0, 1, 2, 3, 4, 5


@functools.lru_cache(maxsize=1)
def _codes():
    from rag.entities.lexicon import STOPWORDS

    return (np.array(sorted(word_code(w) for w in CONNECTORS), np.uint64),
            np.array(sorted(word_code(w) for w in STOPWORDS if len(w) <= 8), np.uint64),
            np.array(sorted(word_code(w) for w in ARTICLES), np.uint64))


def word_code(w: str) -> int:
    """A word of at most 8 ASCII characters as one integer (8 bits a character); 0 for any other word."""
    if len(w) > 8 or not w.isascii():
        return 0
    return sum(ord(c) << (8 * k) for k, c in enumerate(w))


def _word_codes(folded: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """word_code of every word (folded code points), vectorized; (n_words,) uint64."""
    n = len(start)
    length = end - start
    code = np.zeros(n, np.uint64)
    ok = (length <= 8)
    for k in range(8):
        j = np.flatnonzero(ok & (length > k))
        if not len(j):
            break
        c = folded[start[j] + k]
        bad = c > 127
        ok[j[bad]] = False
        code[j] |= c.astype(np.uint64) << np.uint64(8 * k)
    code[~ok] = 0
    return code


class Spans:
    """Name spans of a batch of folded code points: per word, its span id (-1: not in a span)."""

    __slots__ = ("word_start", "word_end", "span", "span_first", "span_last")

    def __init__(self, word_start, word_end, span, span_first, span_last):
        self.word_start, self.word_end = word_start, word_end  # (n_words,) code-point offsets, end exclusive
        self.span = span  # (n_words,) span id or -1
        self.span_first, self.span_last = span_first, span_last  # (n_spans,) first / last word of each span

    def char_spans(self) -> list[tuple[int, int]]:
        """(start, end) code-point offsets of every span."""
        return list(zip(self.word_start[self.span_first].tolist(), self.word_end[self.span_last].tolist()))

    def strict_part(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """For matches [start, end) on word boundaries: is each a strict part of one longer span?"""
        if not len(start) or not len(self.span_first):
            return np.zeros(len(start), bool)
        ws = np.searchsorted(self.word_start, start)
        we = np.searchsorted(self.word_end, end)
        ws = np.minimum(ws, len(self.word_start) - 1)
        we = np.minimum(we, len(self.word_end) - 1)
        s = self.span[ws]
        same = (s >= 0) & (s == self.span[we])
        ss = np.maximum(s, 0)
        return same & ((self.span_first[ss] < ws) | (self.span_last[ss] > we))


def _ordinals(folded: np.ndarray, ws: np.ndarray, we: np.ndarray) -> np.ndarray:
    """Words such as "2nd", "4th", "21st" (ASCII digits, then st / nd / rd / th)."""
    wlen = we - ws
    ok = wlen >= 3
    j = np.flatnonzero(ok)
    a, b = folded[we[j] - 2], folded[we[j] - 1]
    suffix = ((a == 115) & (b == 116)) | ((a == 110) & (b == 100)) | ((a == 114) & (b == 100)) | ((a == 116) & (b == 104))
    digits = np.ones(len(j), bool)
    for k in range(int(wlen.max(initial=0)) - 2):
        inside = wlen[j] - 2 > k
        c = folded[np.minimum(ws[j] + k, len(folded) - 1)]
        digits &= ~inside | ((c >= 48) & (c <= 57))
    ok[j] = suffix & digits
    return ok


def name_spans(cps: np.ndarray, folded: np.ndarray | None = None) -> Spans:
    """Proper-name spans (module docstring) of code points `cps`; texts are separated by SEP or line breaks."""
    if folded is None:
        folded = fold_codepoints(cps)
    is_word = folded > SPACE
    if len(is_word) and is_word[0]:  # words_of needs a leading separator
        ws, we = words_of(np.concatenate([[False], is_word]))
        ws, we = ws - 1, we - 1
    else:
        ws, we = words_of(is_word)
    n = len(ws)
    e = np.zeros(0, np.int64)
    if n == 0:
        return Spans(ws, we, np.zeros(0, np.int64), e, e)
    conn_codes, stop_codes, art_codes = _codes()
    code = _word_codes(folded, ws, we)
    up = tables()[2][cps]
    n_up = np.zeros(len(cps) + 1, np.int32)
    np.cumsum(up, out=n_up[1:])
    cap = up[ws] | (n_up[we] > n_up[ws])  # an upper-case letter anywhere: "Paris", "eHow", "iStockphoto"
    first = folded[ws]
    lower = ~cap & ~((first >= 48) & (first <= 57))
    connector = np.isin(code, conn_codes) & ~cap
    article = np.isin(code, art_codes)
    single_up = up[ws] & (we - ws == 1)
    wlen = we - ws

    # gap after word i: cps[we[i] : ws[i + 1]]
    gs, ge = we[:-1], ws[1:]
    glen = ge - gs
    last = len(cps) - 1
    c0, c1, c2 = cps[np.minimum(gs, last)], cps[np.minimum(gs + 1, last)], cps[np.minimum(gs + 2, last)]
    gap = np.full(n - 1, G_OTHER, np.int8)
    gap[(glen == 1) & (c0 == SPACE)] = G_SPACE
    gap[(glen == 1) & np.isin(c0, _HYPHENS)] = G_JOIN
    gap[(glen == 1) & np.isin(c0, _APOS)] = G_APOS
    gap[(glen == 3) & (c0 == SPACE) & (c1 == 38) & (c2 == SPACE)] = G_JOIN  # " & "
    gap[(glen == 2) & (c0 == 44) & (c1 == SPACE)] = G_COMMA
    gap[(glen == 2) & (c0 == 46) & (c1 == SPACE)] = G_PERIOD

    # sentence start: first word of a line/text, or after a gap holding . ! ? : (not after an initial)
    initial = np.zeros(n, bool)
    initial[0] = True
    if n > 1:
        brk = np.zeros(len(cps) + 1, np.int32)
        np.cumsum(np.isin(cps, (SEP, 10)), out=brk[1:])
        ends = np.zeros(len(cps) + 1, np.int32)
        np.cumsum(np.isin(cps, _SENTENCE_END), out=ends[1:])
        initial[1:] = (brk[ge] > brk[gs]) | ((ends[ge] > ends[gs]) & ~((gap == G_PERIOD) & single_up[:-1]))
    name = cap & ~(initial & np.isin(code, stop_codes))

    link = np.zeros(n - 1, bool)  # link[i]: words i and i + 1 are in one span
    if n > 1:
        nm_l, nm_r = name[:-1], name[1:]
        sp = gap == G_SPACE
        link |= nm_l & nm_r & np.isin(gap, (G_SPACE, G_JOIN, G_APOS))  # rule 1
        link |= single_up[:-1] & nm_r & (gap == G_PERIOD)  # rule 2: initials
        # rule 5: after an apostrophe a lower-case word other than a possessive "s" continues the name ("Don't",
        # "Shin'ichi"), and so does a hyphenated syllable of at most 4 letters after a multi-word name ("Kim
        # Jong-pil"; "Paris-based" stays apart); such a word passes the name on to its right neighbour
        inner = np.zeros(n - 1, bool)
        inner[1:] = link[:-1]  # word i is already joined to word i - 1
        cont = np.zeros(n, bool)
        cont[1:] = lower[1:] & nm_l & (((gap == G_APOS) & (code[1:] != word_code("s")))
                                       | ((gap == G_JOIN) & (wlen[1:] <= 4) & inner))
        link |= cont[1:]
        link |= cont[:-1] & nm_r & sp
        carry = name | cont
        # rule 3: connectors; "and" joins only as "and the" ("Florence and the Machine"): "Mozart and Beethoven"
        and_w, the_w = code == word_code("and"), code == word_code("the")
        if n > 2:
            one = carry[:-2] & connector[1:-1] & ~and_w[1:-1] & name[2:] & sp[:-1] & sp[1:]
            link[:-1] |= one
            link[1:] |= one
            # "Name, 2nd Title": an ordinal after ", " continues a name ("John Thynne, 4th Marquess of Bath")
            ordn = carry[:-2] & (gap[:-1] == G_COMMA) & _ordinals(folded, ws, we)[1:-1] & sp[1:] & name[2:]
            link[:-1] |= ordn
            link[1:] |= ordn
        if n > 3:
            two = (carry[:-3] & connector[1:-2] & connector[2:-1] & (~and_w[1:-2] | the_w[2:-1]) & ~and_w[2:-1]
                   & name[3:] & sp[:-2] & sp[1:-1] & sp[2:])
            link[:-2] |= two
            link[1:-1] |= two
            link[2:] |= two
    in_span = name.copy()
    if n > 1:
        in_span[1:] |= link
        in_span[:-1] |= link
    # a span never starts with an article ("The Golden Gate" -> "Golden Gate"); "A." is an initial, not an article
    lead = in_span & article & up[ws]
    if n > 1:
        lead[1:] &= ~link
        lead[:-1] &= ~((gap == G_PERIOD) & single_up[:-1])
        link &= ~lead[:-1]
    in_span &= ~lead
    _quoted(cps, ws, we, cap, in_span, link)
    if n > 1:
        _place_region(n, gap, name, code, initial, in_span, link)
    span_start = in_span.copy()
    span_start[1:] &= ~link
    sid = np.cumsum(span_start) - 1
    span = np.where(in_span, sid, -1).astype(np.int64)
    firsts = np.flatnonzero(span_start)
    lasts = np.flatnonzero(in_span & ~np.append(link, False))
    return Spans(ws, we, span, firsts, lasts)


def _quoted(cps, ws, we, cap, in_span, link) -> None:
    """Make each quoted title one span, in place (pairs of quote marks on one line)."""
    q = np.flatnonzero(np.isin(cps, (34, 0x201C, 0x201D)))
    if len(q) < 2:
        return
    brk = np.cumsum(np.isin(cps, (SEP, 10)))
    line = brk[q]
    first = np.ones(len(q), bool)
    first[1:] = line[1:] != line[:-1]
    rank = np.arange(len(q)) - np.maximum.accumulate(np.where(first, np.arange(len(q)), 0))
    o = np.flatnonzero((rank % 2 == 0)[:-1] & (line[1:] == line[:-1]))
    o = o[np.isin(cps[q[o]], _QUOTES_OPEN) & np.isin(cps[q[o + 1]], _QUOTES_CLOSE)]
    if not len(o):
        return
    wa = np.searchsorted(ws, q[o] + 1)
    wb = np.searchsorted(we, q[o + 1], side="right")
    n = len(ws)
    ok = (wb > wa) & (wb - wa <= QUOTED_WORDS) & (wa < n)
    ok[ok] &= cap[wa[ok]]
    for a, b in zip(wa[ok].tolist(), wb[ok].tolist()):
        in_span[a:b] = True
        link[a : b - 1] = True
        if a > 0:
            link[a - 1] = False
        if b - 1 < n - 1:
            link[b - 1] = False


def _place_region(n, gap, name, code, initial, in_span, link) -> None:
    """Join "Place, Region" spans across ", ", in place, unless it looks like a list (module docstring)."""
    cand = np.flatnonzero((gap == G_COMMA) & in_span[:-1] & in_span[1:] & ~link)
    if not len(cand):
        return
    span_start = in_span.copy()
    span_start[1:] &= ~link
    sid = np.cumsum(span_start) - 1
    first_of = np.flatnonzero(span_start)
    last_of = np.flatnonzero(in_span & ~np.append(link, False))
    left, right = sid[cand], sid[cand + 1]
    lf, ll, rl = first_of[left], last_of[left], last_of[right]
    p = np.maximum(lf - 1, 0)
    listy = (lf > 0) & (gap[p] == G_COMMA) & name[p]
    q = np.minimum(rl, n - 2)
    nq = np.minimum(rl + 1, n - 1)
    nn = np.minimum(rl + 2, n - 1)
    and_or = np.isin(code[nq], np.array([word_code("and"), word_code("or")], np.uint64))
    more = rl < n - 1
    listy |= more & (gap[q] == G_COMMA) & name[nq]
    listy |= more & (gap[q] == G_SPACE) & and_or & (rl + 2 < n) & (gap[np.minimum(rl + 1, n - 2)] == G_SPACE) & name[nn]
    listy |= (lf == ll) & initial[lf]
    link[cand[~listy]] = True


def text_spans(text: str) -> list[tuple[int, int]]:
    """All name spans of one text, as (start, end) character offsets sorted by start."""
    cps = codepoints(text)
    return name_spans(cps).char_spans() if len(cps) else []
