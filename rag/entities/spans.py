"""Proper-name spans: the stretches of text that name one thing, found the same way in passages and questions.

The linker drops a capitalized mention that is a strict part of a longer proper-name span ("Robert" in
"Robert A. Miller", "Harbour" in "Crow Harbour, New Brunswick") or that cuts across a span's boundary ("The
Divine" of "The Divine Comedy"), and the surface fallback of counting takes
a question's unlinked span as its subject phrase. Both use `name_spans` below, so a question and a passage
that share a name split it identically.

Words are maximal runs of letters and digits (the folding of rag.entities.fold); the gap between two words
is the text between them. A word is

    name word   its first or second character is upper case ("Paris", "eHow"), and it is not a
                sentence-initial function word ("Which", "In", "The" at the start of a sentence; sentence
                start = the first word of a line or text, or a word after ".", "!", "?", ":" that does not
                follow an initial), and not a leading article (see below)
    connector   one of CONNECTORS (lower case): name particles (de, von, van, der, del, della, di, du, da,
                la, le, bin, ibn, al, el, y, i, ua, mac, ...), "of", "the"

Consecutive words belong to one span when

    1. both are name words and the gap is one space, a hyphen ("Watson-Wentworth"), an apostrophe
       ("O'Brien", "d'Auvergne"), or " & " ("Marks & Spencer");
    2. the first is an initial (one upper-case letter) and the gap is ". " ("Robert A. Miller", "J. R. R.
       Tolkien");
    3. up to two connectors stand between two name words, every gap one space ("Charles de Freycinet",
       "Theo van Gogh", "Battle of the Bulge"). "and" is not a connector: coordinated names are two names
       ("Mozart and Beethoven", "France and the United States"; joining "X and the Y" cost ~1% of all corpus
       mentions, nearly all coordinations). Template questions such as "Who founded Natalie Stovall and the
       Drive?" get their whole subject from question frames instead (rag.entities.frames);
    4. "Place, Region": two name spans joined by ", " ("Crow Harbour, New Brunswick") are one name, unless it
       looks like a list (the left span follows ", " + a name word, or the right span is followed by ", " /
       " and " / ", and " / " or " + a name word) or the left span is a single sentence-initial word ("However, John").
       The Region only qualifies the Place: a mention that is exactly the Place still links (it names the
       place: "Stagira" in "Stagira, Chalcidice"); a mention inside the Region does not;
    5. after an apostrophe, a lower-case word other than a possessive "s" continues the name ("Don't Take It
       Away", "Shin'ichi"); so does a hyphenated syllable of at most 4 letters after a multi-word name ("Kim
       Jong-pil"; "Paris-based" stays apart); a possessive "'s" ends the span ("Cedric Wyatt's child");
    6. "Name, Nth Title": an ordinal after ", " continues a name ("John Thynne, 4th Marquess of Bath").

An article ("The", "A", "An") never starts a span: "The Golden Gate" is the span "Golden Gate" (the
lexicon drops a form "the X" when "X" is a form too), so "The Hague" still links through "Hague".
Quoted titles: text between matching double quotes (" " or \u201c \u201d) that starts with a name word is one
span when it holds at most QUOTED_WORDS words and no line break ("Time to Come", "Don't Take It Away").
Digits are not name words (years and numbers run into names in prose: "5 May 1990").

Everything is vectorized over the words of a batch (about 0.17 s per 10,000 passages here), reading only the
characters at word boundaries and in gaps.
"""
from __future__ import annotations

import functools

import numpy as np

from rag.entities.fold import SEP, SPACE, codepoints, fold_codepoints, tables
from rag.entities.hashmatch import words_of

VERSION = 2  # recorded in the linker identity: postings linked under other span rules are refused
CONNECTORS = frozenset(
    "of the de del della der des di da du dos das do van von den ter ten la le bin ibn ben al el y i e zu zur af "
    "ua mac ap".split()
)
ARTICLES = frozenset({"the", "a", "an"})
QUOTED_WORDS = 12  # longest quoted title taken as one span
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


_BRK, _END, _QUOTE = 1, 2, 4  # character classes (_char_class bits)


@functools.lru_cache(maxsize=1)
def _char_class() -> np.ndarray:
    """(0x110000,) uint8: bit _BRK for text separators and line breaks, _END for . ! ? :, _QUOTE for quote marks."""
    t = np.zeros(0x110000, np.uint8)
    t[[SEP, 10]] |= _BRK
    t[list(_SENTENCE_END)] |= _END
    t[[34, 0x201C, 0x201D]] |= _QUOTE
    return t


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set, by binary search (np.isin sorts the values first)."""
    r = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[r] == values


def word_code(w: str) -> int:
    """A word of at most 8 ASCII characters as one integer (8 bits a character); 0 for any other word."""
    if len(w) > 8 or not w.isascii():
        return 0
    return sum(ord(c) << (8 * k) for k, c in enumerate(w))


def _word_codes(folded: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """word_code of the given words (folded code points, at most 8 long), vectorized; uint64."""
    code = np.zeros(len(start), np.uint64)
    ok = np.ones(len(start), bool)
    for k in range(int(length.max(initial=0))):
        j = np.flatnonzero(length > k)
        c = folded[start[j] + k]
        ok[j[c > 127]] = False
        code[j] |= c.astype(np.uint64) << np.uint64(8 * k)
    code[~ok] = 0
    return code


class Spans:
    """Name spans of a batch of folded code points: per word, its span id (-1: not in a span)."""

    __slots__ = ("word_start", "word_end", "span", "span_first", "span_last", "region")

    def __init__(self, word_start, word_end, span, span_first, span_last, region=None):
        self.word_start, self.word_end = word_start, word_end  # (n_words,) code-point offsets, end exclusive
        self.span = span  # (n_words,) span id or -1
        self.span_first, self.span_last = span_first, span_last  # (n_spans,) first / last word of each span
        # (k,) sorted ids of spans that are the Region of a "Place, Region" pair (span id - 1 is the Place)
        self.region = np.zeros(0, np.int64) if region is None else np.asarray(region, np.int64)

    def char_spans(self) -> list[tuple[int, int]]:
        """(start, end) code-point offsets of every span, a "Place, Region" pair as one."""
        a = self.word_start[self.span_first]
        b = self.word_end[self.span_last]
        keep = np.ones(len(a), bool)
        keep[self.region] = False
        b = b.copy()
        b[self.region - 1] = b[self.region]
        return list(zip(a[keep].tolist(), b[keep].tolist()))

    def strict_part(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """For matches [start, end) on word boundaries: does each cut a longer name? True when the match starts
        inside a span after its first word, or ends inside a span before its last word (a strict part of one
        span, or a match across a name's boundary: "The Divine" of "The Divine Comedy", "Bertrand born" of
        "Jean-Michel Bertrand born"), or lies in the Region of a "Place, Region" pair. A match that is exactly
        a span, or exactly the Place, is not."""
        if not len(start) or not len(self.span_first):
            return np.zeros(len(start), bool)
        last = len(self.word_start) - 1
        ws = np.minimum(np.searchsorted(self.word_start, start), last)
        we = np.minimum(np.searchsorted(self.word_end, end), last)
        s1, s2 = self.span[ws], self.span[we]
        part = (s1 >= 0) & (self.span_first[np.maximum(s1, 0)] < ws)
        part |= (s2 >= 0) & (self.span_last[np.maximum(s2, 0)] > we)
        if len(self.region):
            part |= (s1 >= 0) & (s1 == s2) & np.isin(s1, self.region)
        return part


def _ordinals(folded: np.ndarray, ws: np.ndarray, we: np.ndarray, digit: np.ndarray) -> np.ndarray:
    """Words such as "2nd", "4th", "21st": 1-4 ASCII digits, then st / nd / rd / th."""
    wlen = we - ws
    ok = digit & (wlen >= 3) & (wlen <= 6)
    j = np.flatnonzero(ok)
    a, b = folded[we[j] - 2], folded[we[j] - 1]
    good = ((a == 115) & (b == 116)) | ((a == 110) & (b == 100)) | ((a == 114) & (b == 100)) | ((a == 116) & (b == 104))
    for k in range(4):
        inside = wlen[j] - 2 > k
        c = folded[np.minimum(ws[j] + k, len(folded) - 1)]
        good &= ~inside | ((c >= 48) & (c <= 57))
    ok[j] = good
    return ok


def name_spans(cps: np.ndarray, folded: np.ndarray | None = None, words: tuple[np.ndarray, np.ndarray] | None = None) -> Spans:
    """Proper-name spans (module docstring) of code points `cps`; texts are separated by SEP or line breaks.
    `words`: (start, end) of the words of `folded`, when the caller has them already."""
    if folded is None:
        folded = fold_codepoints(cps)
    if words is not None:
        ws, we = words
    elif len(folded) and folded[0] > SPACE:  # words_of needs a leading separator
        ws, we = words_of(np.concatenate([[False], folded > SPACE]))
        ws, we = ws - 1, we - 1
    else:
        ws, we = words_of(folded > SPACE)
    n = len(ws)
    e = np.zeros(0, np.int64)
    if n == 0:
        return Spans(ws, we, np.zeros(0, np.int64), e, e)
    conn_codes, stop_codes, art_codes = _codes()
    is_up = tables()[2]
    wlen = we - ws
    up0 = is_up[cps[ws]]
    cap = up0 | ((wlen > 1) & is_up[cps[np.minimum(ws + 1, len(cps) - 1)]])  # "Paris", "eHow", "iPod"
    first = folded[ws]
    digit = (first >= 48) & (first <= 57)
    lower = ~cap & ~digit
    # word codes only where they can matter: short lower-case words one or two words after a capitalized word
    # (connectors, "and", "or", a possessive "s") and short capitalized words (articles); sentence-initial
    # words are coded below for the stopword test
    short_lower = lower & (wlen <= 5)
    near = np.zeros(n, bool)
    near[1:] = cap[:-1]
    near[2:] |= cap[:-2] & short_lower[1:-1]
    js = np.flatnonzero((short_lower & near) | (up0 & (wlen <= 3)))
    code = np.zeros(n, np.uint64)
    code[js] = _word_codes(folded, ws[js], wlen[js])
    connector = np.zeros(n, bool)
    connector[js] = _member(code[js], conn_codes)
    connector &= ~cap
    article = np.zeros(n, bool)
    article[js] = _member(code[js], art_codes)
    single_up = up0 & (wlen == 1)

    # gap after word i: cps[we[i] : ws[i + 1]]
    gs, ge = we[:-1], ws[1:]
    glen = ge - gs
    last = len(cps) - 1
    c0, c1, c2 = cps[np.minimum(gs, last)], cps[np.minimum(gs + 1, last)], cps[np.minimum(gs + 2, last)]
    gap = np.full(n - 1, G_OTHER, np.int8)
    gap[(glen == 1) & (c0 == SPACE)] = G_SPACE
    one = glen == 1
    gap[one & ((c0 == 45) | (c0 == 0x2010) | (c0 == 0x2011))] = G_JOIN  # hyphens
    gap[one & ((c0 == 39) | (c0 == 0x2019))] = G_APOS  # ' and its typographic form
    gap[(glen == 3) & (c0 == SPACE) & (c1 == 38) & (c2 == SPACE)] = G_JOIN  # " & "
    gap[(glen == 2) & (c0 == 44) & (c1 == SPACE)] = G_COMMA
    gap[(glen == 2) & (c0 == 46) & (c1 == SPACE)] = G_PERIOD

    # sentence start: first word of a line/text, or after a gap holding . ! ? : (not after an initial)
    initial = np.zeros(n, bool)
    initial[0] = True
    # quote marks and breaks: in the gaps, and in the text before the first word and after the last one
    cls = _char_class()
    lead, trail = np.arange(ws[0]), np.arange(we[-1], len(cps))
    quotes = [lead[(cls[cps[lead]] & _QUOTE) > 0]]
    breaks = [lead[(cls[cps[lead]] & _BRK) > 0]]
    if n > 1:
        odd, kinds, q_gap, b_gap = _gap_classes(cps, gs, glen, c0)
        quotes.append(q_gap)
        breaks.append(b_gap)
        after_initial = (gap[odd] == G_PERIOD) & single_up[odd]
        initial[odd + 1] = ((kinds & _BRK) > 0) | (((kinds & _END) > 0) & ~after_initial)
    quotes.append(trail[(cls[cps[trail]] & _QUOTE) > 0])
    breaks.append(trail[(cls[cps[trail]] & _BRK) > 0])
    quotes, breaks = np.concatenate(quotes), np.concatenate(breaks)
    ji = np.flatnonzero(initial & cap & (wlen <= 8))
    long_ = ji[wlen[ji] > 3]
    code[long_] = _word_codes(folded, ws[long_], wlen[long_])
    stop_initial = np.zeros(n, bool)
    stop_initial[ji] = _member(code[ji], stop_codes)
    name = cap & ~stop_initial

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
        # rule 3: connectors
        if n > 2:
            one = carry[:-2] & connector[1:-1] & name[2:] & sp[:-1] & sp[1:]
            link[:-1] |= one
            link[1:] |= one
            # "Name, 2nd Title": an ordinal after ", " continues a name ("John Thynne, 4th Marquess of Bath")
            ordn = carry[:-2] & (gap[:-1] == G_COMMA) & _ordinals(folded, ws, we, digit)[1:-1] & sp[1:] & name[2:]
            link[:-1] |= ordn
            link[1:] |= ordn
        if n > 3:
            two = carry[:-3] & connector[1:-2] & connector[2:-1] & name[3:] & sp[:-2] & sp[1:-1] & sp[2:]
            link[:-2] |= two
            link[1:-1] |= two
            link[2:] |= two
    in_span = name.copy()
    if n > 1:
        in_span[1:] |= link
        in_span[:-1] |= link
    # a span never starts with an article ("The Golden Gate" -> "Golden Gate"); "A." is an initial, not an article
    lead = in_span & article & up0
    if n > 1:
        lead[1:] &= ~link
        lead[:-1] &= ~((gap == G_PERIOD) & single_up[:-1])
        link &= ~lead[:-1]
    in_span &= ~lead
    _quoted(cps, quotes, breaks, ws, we, cap, in_span, link)
    span_start = in_span.copy()
    span_start[1:] &= ~link
    sid = np.cumsum(span_start) - 1
    span = np.where(in_span, sid, -1).astype(np.int64)
    firsts = np.flatnonzero(span_start)
    lasts = np.flatnonzero(in_span & ~np.append(link, False))
    region = _place_region(n, gap, name, code, initial, in_span, link, sid, firsts, lasts) if n > 1 else np.zeros(0, np.int64)
    return Spans(ws, we, span, firsts, lasts, region)


def _gap_classes(cps, gs, glen, c0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the gaps that are not a single plain character: (gap index, OR of their characters' classes), and
    the sorted positions of the quote marks and of the breaks in gaps. Reads only gap characters."""
    cls = _char_class()
    odd = np.flatnonzero((glen > 1) | (cls[c0] > 0))
    kinds = np.zeros(len(odd), np.uint8)
    pos_parts, cls_parts = [], []
    s_, l_ = gs[odd], glen[odd]
    for k in range(4):
        j = np.flatnonzero(l_ > k)
        c = cls[cps[s_[j] + k]]
        kinds[j] |= c
        pos_parts.append(s_[j] + k)
        cls_parts.append(c)
    j = np.flatnonzero(l_ > 4)  # the rest of the longer gaps, all at once
    if len(j):
        rest = l_[j] - 4
        offs = np.zeros(len(j), np.int64)
        np.cumsum(rest[:-1], out=offs[1:])
        pos = np.repeat(s_[j] + 4 - offs, rest) + np.arange(int(rest.sum()))
        c = cls[cps[pos]]
        kinds[j] |= np.bitwise_or.reduceat(c, offs)
        pos_parts.append(pos)
        cls_parts.append(c)
    pos, c = np.concatenate(pos_parts).astype(np.int64), np.concatenate(cls_parts)
    return odd, kinds, np.sort(pos[(c & _QUOTE) > 0]), np.sort(pos[(c & _BRK) > 0])


def _quoted(cps, q, breaks, ws, we, cap, in_span, link) -> None:
    """Make each quoted title one span, in place (pairs of quote marks on one line; q, breaks: sorted positions
    of the quote marks and of the line breaks / text separators)."""
    if len(q) < 2:
        return
    line = np.searchsorted(breaks, q)
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


def _place_region(n, gap, name, code, initial, in_span, link, sid, first_of, last_of) -> np.ndarray:
    """Span ids that are the Region of a "Place, Region" pair (module docstring, rule 4)."""
    cand = np.flatnonzero((gap == G_COMMA) & in_span[:-1] & in_span[1:] & ~link)
    if not len(cand):
        return np.zeros(0, np.int64)
    left, right = sid[cand], sid[cand + 1]
    lf, ll, rl = first_of[left], last_of[left], last_of[right]
    p = np.maximum(lf - 1, 0)
    listy = (lf > 0) & (gap[p] == G_COMMA) & name[p]
    q = np.minimum(rl, n - 2)
    nq = np.minimum(rl + 1, n - 1)
    nn = np.minimum(rl + 2, n - 1)
    and_or = (code[nq] == word_code("and")) | (code[nq] == word_code("or"))
    more = rl < n - 1
    listy |= more & (gap[q] == G_COMMA) & name[nq]
    # ... " and X" or ", and X" (an Oxford comma) after the right span: a list too
    listy |= more & np.isin(gap[q], (G_SPACE, G_COMMA)) & and_or & (rl + 2 < n) & (gap[np.minimum(rl + 1, n - 2)] == G_SPACE) & name[nn]
    listy |= (lf == ll) & initial[lf]
    return right[~listy]


def text_spans(text: str) -> list[tuple[int, int]]:
    """All name spans of one text, as (start, end) character offsets sorted by start."""
    cps = codepoints(text)
    return name_spans(cps).char_spans() if len(cps) else []
