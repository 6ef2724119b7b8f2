"""The entity lexicon: surface forms -> candidate entities with a prior, as a versioned artifact folder.

Sources (a bitmask per (form, entity) pair):
    TITLE       a corpus article's title names its article ("Dante Alighieri")
    TITLE_BASE  the title without its "(qualifier)" ("Georgia (country)" -> "Georgia")
    REDIRECT    redirects of a MediaWiki dump (redirects.tsv in the passages folder, alias -> target)
    RESOURCE    a DBpedia resource's own name ("dante_alighieri")
    DBPEDIA     a DBpedia surface form or redirect ("dante" -> dante_alighieri); disambiguation pages skipped
    ALIAS       an answer alias of the QA set being counted; an alias no other source knows becomes an
                entity of its own (labelled with the alias), so answers such as "December 1972" link too
                (except lists of known forms: "Larry Page and Sergey Brin")
A form "the X" is dropped when "X" is a form too, so "The Amazon" cannot shadow "Amazon River" under
leftmost-longest matching ("The Who" stays: "who" alone is a stopword).

Entities are identified by a label: the corpus title when the entity has an article in the corpus,
otherwise the DBpedia resource with spaces (first letter upper-cased, Wikipedia's convention) or the alias.
Two labels are the same entity when their `form_key`s are equal ("dante_alighieri" == "Dante Alighieri").

Prior: score(form, e) = (sum of the weights of the sources naming e by form) * popularity(e), where
popularity(e) = 1 + the number of distinct forms naming e (a redirect in-degree, the usual proxy for
prominence when no anchor-text counts exist); P(e | form) = score / sum of the form's scores. The linker
links a form to its best entity only when P >= threshold and the best is strictly ahead of the runner-up.

Case statistics (n_lower, n_upper per form) come from a sample of the corpus: how often the form is written
in lower case versus capitalized away from a sentence start, counted by the linker itself when the whole
lexicon is built (rag.entities.lexicon_build). The linker's case rules use them (rag.entities.linkers).

Folder layout (format 1):
    entities.parquet    label string, in_corpus bool                   (row = entity id)
    forms.parquet       form string (form_key), cased string (a known spelling or ""), n_lower, n_upper int32
    candidates.parquet  form int32, entity int32, sources int16, score float32   (sorted by form)
    manifest.json       kind "lexicon", format, fingerprint, sources, weights, counts
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rag.artifacts import atomic_dir, check_manifest_files, file_sha256, file_sizes, quick_fingerprint, read_manifest, write_manifest
from rag.compressed import open_text
from rag.entities.fold import fold_many, form_key
from rag.errors import ArtifactError, BadInputError
from rag.types import Question

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "lexicon"
FILES = ("entities.parquet", "forms.parquet", "candidates.parquet")

TITLE, TITLE_BASE, REDIRECT, RESOURCE, DBPEDIA, ALIAS = 1, 2, 4, 8, 16, 32
SOURCE_NAMES = {TITLE: "title", TITLE_BASE: "title_base", REDIRECT: "redirect", RESOURCE: "resource", DBPEDIA: "dbpedia", ALIAS: "alias"}
WEIGHTS = {TITLE: 4.0, RESOURCE: 4.0, REDIRECT: 2.0, DBPEDIA: 2.0, TITLE_BASE: 1.0, ALIAS: 1.0}

# Function words and question words: never linked on their own (a form made only of them is "common").
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each either else ever few for from further had
    has have having he her here hers herself him himself his how however i if in into is it its itself just
    least less let like many may me might more most much must my myself neither no nor not now of off on once
    one only or other ought our ours ourselves out over own per rather same several shall she should since so
    some such than that the their theirs them themselves then there these they this those though through thus
    to too under until up upon us very was we were what whatever when whence where whereas whether which while
    who whoever whom whose why will with within without would yet you your yours yourself yourselves""".split()
)

# stopwords that are also frequent all-caps abbreviations (United States)
KEPT_STOPWORDS = frozenset({"us"})

_PAREN = re.compile(r"^(.*\S)\s+\([^()]*\)$")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_YEAR = re.compile(r"[0-9]{3,4}")


def _label_from_resource(resource: str) -> str:
    label = resource.replace("_", " ").strip()
    return label[:1].upper() + label[1:]


def linkable(form: str, years: bool = False) -> bool:
    """Forms the linker may match at all: 2+ characters, a letter, and not a lone stopword (except the
    abbreviations in KEPT_STOPWORDS, e.g. "US"; the case rules keep "us" out). With `years`, also 3-4 digit
    numbers: off for real corpora, where a bare number is rarely a year entity; on where years are entities
    by construction (the generated world)."""
    if years and _YEAR.fullmatch(form):
        return True
    return len(form) >= 2 and _HAS_LETTER.search(form) is not None and (form not in STOPWORDS or form in KEPT_STOPWORDS)


@dataclass
class Lexicon:
    """In-memory lexicon; see the module docstring for the meaning of each array."""

    labels: list[str]  # entity id -> label
    in_corpus: np.ndarray  # (n_entities,) bool
    forms: list[str]  # form id -> form_key
    cased: list[str]  # form id -> a known original spelling, "" when unknown
    n_lower: np.ndarray  # (n_forms,) int32
    n_upper: np.ndarray  # (n_forms,) int32
    cand_form: np.ndarray  # (n_candidates,) int32, sorted
    cand_entity: np.ndarray  # (n_candidates,) int32
    cand_sources: np.ndarray  # (n_candidates,) int16 bitmask
    cand_score: np.ndarray  # (n_candidates,) float32
    fingerprint: str = ""
    manifest: dict = field(default_factory=dict)
    _entity_by_key: dict | None = field(default=None, repr=False)
    _form_by_key: dict | None = field(default=None, repr=False)

    @property
    def n_entities(self) -> int:
        return len(self.labels)

    @property
    def n_forms(self) -> int:
        return len(self.forms)

    def entity_id(self, label: str) -> int | None:
        """Entity id of a label (or of any spelling with the same form_key); None if unknown."""
        if self._entity_by_key is None:
            keys = fold_many(self.labels)
            self._entity_by_key = {}
            for i, k in enumerate(keys):
                self._entity_by_key.setdefault(" ".join(k.split()), i)
        return self._entity_by_key.get(form_key(label))

    def entity_ids(self, labels: Sequence[str]) -> np.ndarray:
        """entity_id of many labels at once (-1 where unknown)."""
        self.entity_id("")  # builds the key index
        keys = fold_many(list(labels))
        return np.fromiter((self._entity_by_key.get(" ".join(k.split()), -1) for k in keys), np.int64, len(keys))

    def resolve(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(entity per form, P(entity | form)) for the best candidate; entity -1 when below threshold or tied."""
        if not 0.0 < threshold <= 1.0:
            raise BadInputError(f"prior threshold must be in (0, 1], got {threshold}")
        n = self.n_forms
        total = np.bincount(self.cand_form, weights=self.cand_score, minlength=n)
        # best and runner-up score per form: sort candidates by (form, -score)
        order = np.lexsort((-self.cand_score, self.cand_form))
        f, s, e = self.cand_form[order], self.cand_score[order], self.cand_entity[order]
        first = np.ones(len(f), dtype=bool)
        first[1:] = f[1:] != f[:-1]
        second = np.zeros(len(f), dtype=bool)
        second[1:] = first[:-1] & ~first[1:]
        best_entity = np.full(n, -1, dtype=np.int32)
        best_score = np.zeros(n, dtype=np.float64)
        runner_up = np.zeros(n, dtype=np.float64)
        best_entity[f[first]] = e[first]
        best_score[f[first]] = s[first]
        runner_up[f[second]] = s[second]
        prior = np.divide(best_score, total, out=np.zeros(n), where=total > 0)
        ok = (prior >= threshold - 1e-9) & (best_score > runner_up)
        return np.where(ok, best_entity, -1).astype(np.int32), prior.astype(np.float32)

    def candidates(self, form: str) -> list[tuple[str, float, list[str]]]:
        """[(label, P(label | form), [source names])] for one surface form, best first (for inspection)."""
        fid = self._form_index().get(form_key(form))
        if fid is None:
            return []
        lo, hi = np.searchsorted(self.cand_form, [fid, fid + 1])
        total = float(self.cand_score[lo:hi].sum()) or 1.0
        rows = sorted(range(lo, hi), key=lambda r: -self.cand_score[r])
        return [
            (self.labels[self.cand_entity[r]], float(self.cand_score[r]) / total, [n for b, n in SOURCE_NAMES.items() if self.cand_sources[r] & b])
            for r in rows
        ]

    def _form_index(self) -> dict[str, int]:
        if self._form_by_key is None:
            self._form_by_key = {f: i for i, f in enumerate(self.forms)}
        return self._form_by_key

    # --- artifact --------------------------------------------------------------------------------------

    def save(self, out: str | os.PathLike, overwrite: bool = False, **manifest_fields) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_dir(out, overwrite=overwrite, kind=KIND) as tmp:
            pq.write_table(pa.table({"label": pa.array(self.labels, pa.string()), "in_corpus": pa.array(self.in_corpus, pa.bool_())}), tmp / FILES[0])
            pq.write_table(
                pa.table(
                    {
                        "form": pa.array(self.forms, pa.string()),
                        "cased": pa.array(self.cased, pa.string()),
                        "n_lower": pa.array(self.n_lower.astype(np.int32)),
                        "n_upper": pa.array(self.n_upper.astype(np.int32)),
                    }
                ),
                tmp / FILES[1],
            )
            pq.write_table(
                pa.table(
                    {
                        "form": pa.array(self.cand_form.astype(np.int32)),
                        "entity": pa.array(self.cand_entity.astype(np.int32)),
                        "sources": pa.array(self.cand_sources.astype(np.int16)),
                        "score": pa.array(self.cand_score.astype(np.float32)),
                    }
                ),
                tmp / FILES[2],
            )
            h = hashlib.sha256()
            for name in FILES:
                h.update(file_sha256(tmp / name).encode())
            self.fingerprint = h.hexdigest()[:32]
            self.manifest = write_manifest(
                tmp,
                kind=KIND,
                format=FORMAT,
                libraries=("pyarrow",),
                fingerprint=self.fingerprint,
                n_entities=self.n_entities,
                n_forms=self.n_forms,
                n_candidates=int(len(self.cand_form)),
                n_ambiguous_forms=int(np.count_nonzero(np.bincount(self.cand_form, minlength=self.n_forms) > 1)),
                weights={SOURCE_NAMES[b]: w for b, w in WEIGHTS.items()},
                files=file_sizes(tmp, FILES),
                **manifest_fields,
            )
        return self.manifest

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Lexicon":
        """Open a lexicon folder; refuses a missing, unfinished or truncated one."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        if not folder.exists():
            raise ArtifactError(f"lexicon {folder} does not exist; build one with `rag counts lexicon` (or let `rag counts build` make it)")
        manifest = read_manifest(folder, kind=KIND, format=FORMAT)
        check_manifest_files(folder, manifest)
        ent = pq.read_table(folder / FILES[0])
        forms = pq.read_table(folder / FILES[1])
        cand = pq.read_table(folder / FILES[2])
        return cls(
            labels=ent.column("label").to_pylist(),
            in_corpus=ent.column("in_corpus").to_numpy(zero_copy_only=False).astype(bool),
            forms=forms.column("form").to_pylist(),
            cased=forms.column("cased").to_pylist(),
            n_lower=forms.column("n_lower").to_numpy().astype(np.int32),
            n_upper=forms.column("n_upper").to_numpy().astype(np.int32),
            cand_form=cand.column("form").to_numpy().astype(np.int32),
            cand_entity=cand.column("entity").to_numpy().astype(np.int32),
            cand_sources=cand.column("sources").to_numpy().astype(np.int16),
            cand_score=cand.column("score").to_numpy().astype(np.float32),
            fingerprint=manifest["fingerprint"],
            manifest=manifest,
        )


class LexiconBuilder:
    """Collects (surface form, entity, source) triples from the sources, then `build()`s a Lexicon."""

    def __init__(self, years: bool = False):
        self.years = years  # also link 3-4 digit numbers (see linkable)
        self.labels: list[str] = []
        self.in_corpus: list[bool] = []
        self._by_key: dict[str, int] = {}  # form_key(label) -> entity id
        self._pairs: dict[tuple[str, int], int] = {}  # (form, entity) -> sources bitmask
        self._cased: dict[str, str] = {}
        self._spellings: dict[int, Counter] = {}  # entity -> answer spellings that differ from its label only in case
        self.sources: list[dict] = []

    def entity(self, label: str, key: str | None = None, in_corpus: bool = False) -> int:
        key = form_key(label) if key is None else key
        eid = self._by_key.get(key)
        if eid is None:
            eid = self._by_key[key] = len(self.labels)
            self.labels.append(label)
            self.in_corpus.append(in_corpus)
        elif in_corpus and not self.in_corpus[eid]:
            self.labels[eid] = label  # a corpus title is the better label
            self.in_corpus[eid] = True
        return eid

    def _add(self, form: str, eid: int, source: int, spelling: str | None = None) -> None:
        if not form:
            return
        k = (form, eid)
        self._pairs[k] = self._pairs.get(k, 0) | source
        if spelling and form not in self._cased:
            self._cased[form] = spelling

    def add_titles(self, titles: Iterable[str]) -> int:
        """Corpus article titles (each names its own article)."""
        titles = [t for t in dict.fromkeys(titles) if t and t.strip() and not t.endswith("(disambiguation)")]
        keys = [" ".join(k.split()) for k in fold_many(titles)]
        for title, key in zip(titles, keys):
            eid = self.entity(title, key, in_corpus=True)
            self._add(key, eid, TITLE, title)
            m = _PAREN.match(title)
            if m:
                self._add(form_key(m.group(1)), eid, TITLE_BASE, m.group(1))
        self.sources.append({"kind": "titles", "n": len(titles)})
        return len(titles)

    def add_redirects(self, pairs: Iterable[tuple[str, str]], name: str = "redirects") -> int:
        """(alias, target title) pairs, e.g. from the redirects.tsv of a passage store built from XML dumps."""
        n = 0
        for alias, target in pairs:
            if not alias.strip() or not target.strip():
                continue
            eid = self.entity(target)
            self._add(form_key(alias), eid, REDIRECT, alias)
            n += 1
        self.sources.append({"kind": "redirects", "name": name, "n": n})
        return n

    def add_surface_forms(self, path: str | os.PathLike) -> int:
        """A DBpedia lexicon TSV (optionally .xz/.bz2/.gz): `surface \\t resource` per line, `_` for spaces."""
        path = Path(path)
        if not path.exists():
            raise BadInputError(f"surface-form file {path} does not exist")
        surfaces: list[str] = []
        resources: list[str] = []
        for surface, resource in _tsv_pairs(path, "surface<TAB>resource", strict=True):
            if resource.endswith("_(disambiguation)"):
                continue  # a list of entities, not one
            surfaces.append(surface.replace("_", " "))
            resources.append(resource)
        uniq = list(dict.fromkeys(resources))
        res_keys = [" ".join(k.split()) for k in fold_many([r.replace("_", " ") for r in uniq])]
        res_id = {}
        for r, key in zip(uniq, res_keys):
            eid = self.entity(_label_from_resource(r), key)
            res_id[r] = eid
            self._add(key, eid, RESOURCE)
        for s, key, r in zip(surfaces, fold_many(surfaces), resources):
            self._add(" ".join(key.split()), res_id[r], DBPEDIA)
        self.sources.append({"kind": "dbpedia", "path": str(path.resolve()), "fingerprint": quick_fingerprint(path), "n": len(surfaces), "n_resources": len(uniq)})
        return len(surfaces)

    def add_aliases(self, questions: Sequence[Question], name: str = "qa") -> int:
        """Answer aliases: known forms keep their entities; unknown ones become entities of their own."""
        known = {f for f, _ in self._pairs}
        n = 0
        from rag.regex_golds import linking_answers

        for q in questions:
            for a in linking_answers(q):
                key = form_key(a)
                if not linkable(key, self.years):
                    continue
                n += 1
                if key in known:
                    self._cased.setdefault(key, a)
                    eid = self._by_key.get(key)
                    spelling = a.strip()
                    if eid is not None and spelling != spelling.lower() and spelling.lower() == self.labels[eid].lower():
                        self._spellings.setdefault(eid, Counter())[spelling] += 1
                    continue
                if _is_list(key, known):
                    continue
                eid = self.entity(a.strip(), key)
                self._add(key, eid, ALIAS, a.strip())
                known.add(key)
        self.sources.append({"kind": "answer_aliases", "name": name, "n": n})
        return n

    def build(self) -> Lexicon:
        known = {f for f, _ in self._pairs if linkable(f, self.years)}
        # "the amazon" would win leftmost-longest over "Amazon River" in "The Amazon River": a form
        # "the X" is dropped when "X" is itself a form ("The Who" stays: "who" is a stopword)
        pairs = [(f, e, s) for (f, e), s in self._pairs.items() if f in known and not (f.startswith("the ") and f[4:] in known)]
        if not pairs:
            raise BadInputError("the lexicon is empty: give corpus titles, surface forms, redirects or answer aliases")
        forms = sorted({f for f, _, _ in pairs})
        fid = {f: i for i, f in enumerate(forms)}
        cf = np.fromiter((fid[f] for f, _, _ in pairs), np.int32, len(pairs))
        ce = np.fromiter((e for _, e, _ in pairs), np.int32, len(pairs))
        cs = np.fromiter((s for _, _, s in pairs), np.int16, len(pairs))
        popularity = 1.0 + np.bincount(ce, minlength=len(self.labels))
        weight = np.zeros(64, dtype=np.float64)
        for mask in range(64):
            weight[mask] = sum(w for b, w in WEIGHTS.items() if mask & b)
        score = (weight[cs] * popularity[ce]).astype(np.float32)
        order = np.lexsort((ce, cf))
        labels = list(self.labels)
        for eid, spellings in self._spellings.items():
            if not self.in_corpus[eid]:  # a real spelling beats a lower-cased resource name
                labels[eid] = spellings.most_common(1)[0][0]
        return Lexicon(
            labels=labels,
            in_corpus=np.asarray(self.in_corpus, dtype=bool),
            forms=forms,
            cased=[self._cased.get(f, "") for f in forms],
            n_lower=np.zeros(len(forms), np.int32),
            n_upper=np.zeros(len(forms), np.int32),
            cand_form=cf[order],
            cand_entity=ce[order],
            cand_sources=cs[order],
            cand_score=score[order],
        )


def _is_list(key: str, known: set[str]) -> bool:
    """An unknown answer such as "larry page and sergey brin" that joins known forms is a list, not a name."""
    if " and " not in key and " or " not in key:
        return False
    parts = [p for p in re.split(r" (?:and|or) ", key) if p]
    return len(parts) > 1 and any(p in known for p in parts)


def _tsv_pairs(path: Path, shape: str, strict: bool = False) -> Iterator[tuple[str, str]]:
    """(left, right) per non-blank `left<TAB>right` line; strict: the right field is non-empty and tab-free."""
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line:
                continue
            left, tab, right = line.partition("\t")
            if not tab or (strict and (not right or "\t" in right)):
                raise BadInputError(f"{path}:{line_no}: expected `{shape}`, got {line[:80]!r}")
            yield left, right


def read_redirects(path: Path) -> Iterable[tuple[str, str]]:
    if not path.exists():
        raise BadInputError(f"redirects file {path} does not exist")
    yield from _tsv_pairs(path, "alias<TAB>target")
