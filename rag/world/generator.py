"""A seeded fictional world whose relevant-document counts are known exactly.

Entities (syllable-built names, unique words, optionally checked against a list of real names):
    person   birthplace -> city, employer -> organization
    org      headquarters -> city, founder -> person, founded -> year
    city     country -> country
Every fact (subject, relation, object) gets a mention count from a truncated Zipf law (P(c) ~ c^-zipf on
1..max_count, a share `zero_fraction` of facts never mentioned), so counts span 0 to ~10^3. Each mention is a
statement of the fact through one of the relation's training templates (paraphrase mode: a random template
per mention; duplicate mode: the fact's one template every time). Statements are packed 1..facts_per_doc to
a document such that two entities co-occur in a document only if a fact linking them is stated there: then
the Kandpal et al. count |docs(subject) ∩ docs(object)| equals the number of documents stating the fact.

Besides fact documents the corpus holds distractor documents (entities mentioned without any fact) and
reading documents (Passage/Q/A exercises about throwaway names that never reach the lexicon, so a model can
learn to copy an answer from a passage). Demonstration entities (their questions in demos.jsonl, never
evaluated) supply few-shot examples.

World folder (format 1), written atomically:
    corpus.jsonl     wikiextractor-style {"id", "url", "title", "text"} per document
    qa.jsonl         evaluated questions, nq-open format {"question", "answer": [aliases]}; qids "qa-<n>"
    demos.jsonl      demonstration questions, same format
    truth.jsonl      per evaluated question: qid, relation, subject, object, count, template counts
    entities.jsonl   {"name", "type", "aliases", "attributes"} per entity (demonstration ones too)
    probes.jsonl     cloze probes (memorization / semantic / composition): qid, kind, prefix, target, count
    manifest.json    kind "world", parameters, counts summary, fingerprints
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Collection, Iterable

import numpy as np

from rag.artifacts import atomic_dir, file_sha256, file_sizes, read_manifest, check_manifest_files, write_manifest
from rag.compressed import open_text
from rag.errors import BadInputError

FORMAT = 1
KIND = "world"
CORPUS, QA, DEMOS, TRUTH, ENTITIES, PROBES = "corpus.jsonl", "qa.jsonl", "demos.jsonl", "truth.jsonl", "entities.jsonl", "probes.jsonl"
FILES = (CORPUS, QA, DEMOS, TRUTH, ENTITIES, PROBES)
MENTION_MODES = ("paraphrase", "duplicate")


@dataclass(frozen=True)
class WorldParams:
    seed: int = 0
    n_people: int = 120
    n_orgs: int = 40
    n_cities: int = 36
    n_countries: int = 10
    n_demo_people: int = 8  # demonstration entities (plus half as many organizations): few-shot examples only
    max_count: int = 1000  # largest number of documents stating one fact
    zipf: float = 1.4  # exponent of the count distribution P(c) ~ c^-zipf on 1..max_count
    zero_fraction: float = 0.08  # facts that no document states
    mentions: str = "paraphrase"  # "paraphrase": a random template per mention; "duplicate": one per fact
    facts_per_doc: int = 4  # at most this many fact statements per document
    n_distractor_docs: int = 300
    n_reading_docs: int = 800
    n_nonce: int = 2000  # throwaway words for reading-exercise names: many, so each is rare like a long-tail name
    # share of reading exercises whose last question is answered by an entity of the world (the rest of the
    # exercise stays throwaway names): copying a familiar name from the passage, against the model's prior
    reading_known_answers: float = 0.0

    def __post_init__(self):
        check_params(self)


def check_params(p: WorldParams) -> None:
    def bad(msg: str):
        raise BadInputError(f"world parameters: {msg}")

    for f in fields(p):
        v = getattr(p, f.name)
        if f.type in ("int", int) and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)):
            bad(f"{f.name} must be an integer, got {v!r}")
    for name in ("n_people", "n_orgs", "n_cities", "n_countries"):
        if getattr(p, name) < 1:
            bad(f"{name} must be at least 1 (every relation needs subjects and objects), got {getattr(p, name)}")
    for name in ("n_demo_people", "n_distractor_docs", "n_reading_docs", "n_nonce", "seed"):
        if getattr(p, name) < 0:
            bad(f"{name} must be >= 0, got {getattr(p, name)}")
    if p.max_count < 1:
        bad(f"max_count must be at least 1, got {p.max_count}")
    if p.facts_per_doc < 1:
        bad(f"facts_per_doc must be at least 1, got {p.facts_per_doc}")
    if not (isinstance(p.zipf, (int, float)) and p.zipf > 0):
        bad(f"zipf must be a positive number, got {p.zipf!r}")
    if not (isinstance(p.zero_fraction, (int, float)) and 0 <= p.zero_fraction < 1):
        bad(f"zero_fraction must be in [0, 1), got {p.zero_fraction!r}")
    if not (isinstance(p.reading_known_answers, (int, float)) and 0 <= p.reading_known_answers <= 1):
        bad(f"reading_known_answers must be in [0, 1], got {p.reading_known_answers!r}")
    if p.mentions not in MENTION_MODES:
        bad(f"mentions must be one of {', '.join(MENTION_MODES)}, got {p.mentions!r}")
    if p.n_reading_docs and p.n_nonce < 2:
        bad(f"n_nonce must be at least 2 when there are reading exercises, got {p.n_nonce}")
    if p.n_orgs < 2 and p.n_people > 0:
        bad("n_orgs must be at least 2 (a founder may not be employed by the organization they founded)")


# --- relations and templates ---------------------------------------------------------------------------
# Training templates put the object last so every statement doubles as a cloze (prefix -> object).
# "faq" is the question itself with its answer on the next line, ended by a period like every other statement
# (passages are whitespace-normalized, so an unended answer would run into the next sentence); `probe` is never
# used in documents.


@dataclass(frozen=True)
class Relation:
    name: str
    subject: str
    object: str
    question: str
    templates: tuple[str, ...]
    probe: str  # held-out paraphrase (semantic probe)


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation("birthplace", "person", "city", "Where was {s} born?",
                 ("{s} was born in {o}.", "The birthplace of {s} is {o}.", "{s} is a native of {o}.", "faq"),
                 "{s} came into the world in {o}."),
        Relation("employer", "person", "org", "Which organization did {s} work for?",
                 ("{s} worked for {o}.", "{s} was employed by {o}.", "The employer of {s} was {o}.", "faq"),
                 "{s} earned a living at {o}."),
        Relation("headquarters", "org", "city", "Where is {s} headquartered?",
                 ("{s} is headquartered in {o}.", "The headquarters of {s} are in {o}.", "{s} has its main office in {o}.", "faq"),
                 "{s} is run from offices in {o}."),
        Relation("founder", "org", "person", "Who founded {s}?",
                 ("{s} was founded by {o}.", "The founder of {s} was {o}.", "{s} was established by {o}.", "faq"),
                 "{s} owes its existence to {o}."),
        Relation("country", "city", "country", "In which country is {s}?",
                 ("{s} is a city in {o}.", "{s} lies in {o}.", "The city of {s} belongs to {o}.", "faq"),
                 "{s} is found within the borders of {o}."),
        Relation("founded", "org", "year", "In which year was {s} founded?",
                 ("{s} was founded in {o}.", "{s} dates from the year {o}.", "The founding year of {s} is {o}.", "faq"),
                 "{s} first opened its doors in {o}."),
    )
}
# two-hop cloze probes: (first relation, second relation) -> template over subject and the final object
COMPOSITIONS = {
    ("birthplace", "country"): "{s} was born in a city of {o}.",
    ("headquarters", "country"): "{s} is headquartered in a city of {o}.",
}
DISTRACTORS = (
    "{e} was mentioned in an old travel guide.",
    "Little else is recorded about {e}.",
    "Many stories are told about {e}.",
    "A painting of {e} hangs in a quiet museum.",
    "Scholars still argue about {e}.",
    "Visitors rarely write about {e}.",
)
ORG_KINDS = ("Institute", "Company", "Guild", "Foundry", "Society", "Trading House")
YEAR_RANGE = (1600, 2000)  # founding years are drawn from [start, end)

_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "z",
           "th", "sh", "zh", "q", "y", "x")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
# a name word has MIN_NAME+ letters and one of these clusters, rare in real names: then chance collisions
# with real entities are rare too (worlds of seeds 0-5 have none among the 1.8M DBpedia surface forms, against
# 17 collisions without these two rules); --avoid-names rules out the names of any given list
_UNREAL = re.compile(r"zh|x|q|yy|ae")
MIN_NAME = 7
_CODAS = ("", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk", "q")


def render_fact(template: str, relation: Relation, s: str, o: str) -> str:
    if template == "faq":
        return f"Q: {relation.question.format(s=s)}\nA: {o}."
    return template.format(s=s, o=o)


def cloze(template: str, s: str, o: str) -> tuple[str, str]:
    """(prefix, target) of an object-final template: prefix ends before the object, target has no period."""
    text = template.format(s=s, o="\x00")
    prefix = text.split("\x00")[0].rstrip()
    return prefix, o


# --- records -------------------------------------------------------------------------------------------


@dataclass
class Entity:
    name: str
    type: str
    aliases: tuple[str, ...]
    demo: bool = False
    attributes: dict = field(default_factory=dict)  # relation -> object name


@dataclass(frozen=True)
class Fact:
    fid: int
    relation: str
    subject: int  # entity index
    object: int
    count: int  # documents that state it
    demo: bool
    template: int = -1  # duplicate mode: the one template index


class NameMaker:
    """Unique capitalized syllable words; none of them in `avoid` (lower-cased) or among template words."""

    def __init__(self, rng: np.random.Generator, avoid: Collection[str] = ()):
        self.rng = rng
        self.used: set[str] = set(avoid)
        for r in RELATIONS.values():
            for t in (*r.templates, r.probe, r.question):
                self.used.update(w.strip(".?,{}").lower() for w in t.split())
        self.used.update(k.lower() for k in ORG_KINDS)
        self.rejected = 0

    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        for _ in range(10_000):
            n = int(self.rng.integers(min_syl, max_syl + 1))
            parts = []
            for _ in range(n):
                parts.append(_ONSETS[self.rng.integers(len(_ONSETS))] + _VOWELS[self.rng.integers(len(_VOWELS))])
            parts.append(_CODAS[self.rng.integers(len(_CODAS))])
            w = "".join(parts)
            if len(w) < MIN_NAME or w in self.used or not _UNREAL.search(w):
                self.rejected += 1
                continue
            self.used.add(w)
            return w.capitalize()
        raise BadInputError("ran out of unique names; use fewer entities")  # pragma: no cover


def make_entities(p: WorldParams, rng: np.random.Generator, avoid: Collection[str] = ()) -> tuple[list[Entity], NameMaker]:
    names = NameMaker(rng, avoid)
    ents: list[Entity] = []
    n_demo_orgs = (p.n_demo_people + 1) // 2
    for i in range(p.n_countries):
        n = names.word()
        ents.append(Entity(n, "country", (n, f"Republic of {n}")))
    # founding years: as many distinct years as organizations, shared among them as cities are
    for y in sorted(rng.choice(np.arange(YEAR_RANGE[0], YEAR_RANGE[1]), size=min(p.n_orgs, YEAR_RANGE[1] - YEAR_RANGE[0]), replace=False).tolist()):
        ents.append(Entity(str(y), "year", (str(y),)))
    for i in range(p.n_cities):
        n = names.word()
        ents.append(Entity(n, "city", (n, f"{n} City")))
    for i in range(p.n_orgs + n_demo_orgs):
        root = names.word()
        full = f"{root} {ORG_KINDS[rng.integers(len(ORG_KINDS))]}"
        ents.append(Entity(full, "org", (full, root), demo=i >= p.n_orgs))
    for i in range(p.n_people + p.n_demo_people):
        given, sur = names.word(), names.word()
        full = f"{given} {sur}"
        ents.append(Entity(full, "person", (full, sur), demo=i >= p.n_people))
    return ents, names


def _draw_counts(p: WorldParams, rng: np.random.Generator, n: int) -> np.ndarray:
    c = np.arange(1, p.max_count + 1, dtype=np.float64)
    prob = c ** -float(p.zipf)
    counts = rng.choice(np.arange(1, p.max_count + 1), size=n, p=prob / prob.sum())
    counts[rng.random(n) < p.zero_fraction] = 0
    return counts.astype(np.int64)


def make_facts(p: WorldParams, ents: list[Entity], rng: np.random.Generator) -> list[Fact]:
    by_type: dict[str, list[int]] = {}
    for i, e in enumerate(ents):
        by_type.setdefault(e.type, []).append(i)
    founders: dict[int, int] = {}
    raw: list[tuple[str, int, int]] = []
    for o in by_type["org"]:
        pool = [i for i in by_type["person"] if ents[i].demo == ents[o].demo]
        fresh = [i for i in pool if i not in founders.values()]  # so nobody founds every organization they could work for
        founders[o] = int(rng.choice(fresh or pool))
    for s in by_type["city"]:
        raw.append(("country", s, int(rng.choice(by_type["country"]))))
    for s in by_type["org"]:
        raw.append(("headquarters", s, int(rng.choice(by_type["city"]))))
        raw.append(("founder", s, founders[s]))
        raw.append(("founded", s, int(rng.choice(by_type["year"]))))
    for s in by_type["person"]:
        raw.append(("birthplace", s, int(rng.choice(by_type["city"]))))
        # never the organization this person founded: (person, org) must name one fact only
        orgs = [o for o in by_type["org"] if founders[o] != s and ents[o].demo == ents[s].demo]
        raw.append(("employer", s, int(rng.choice(orgs))))
    counts = _draw_counts(p, rng, len(raw))
    facts = []
    for fid, ((rel, s, o), c) in enumerate(zip(raw, counts)):
        demo = ents[s].demo
        if demo:  # demonstrations must be findable and known: a moderate, non-zero count
            c = int(rng.integers(20, 60))
        t = int(rng.integers(len(RELATIONS[rel].templates)))
        facts.append(Fact(fid, rel, s, o, int(c), demo, t))
        ents[s].attributes[rel] = ents[o].name
    return facts


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


class _Doc:
    __slots__ = ("lines", "ents", "facts", "title")

    def __init__(self):
        self.lines: list[str] = []
        self.ents: set[int] = set()
        self.facts: set[int] = set()
        self.title: int | None = None


def _fits(doc: _Doc, new: Iterable[int], fid: int | None, pair_fact: dict) -> bool:
    """Adding these entities (and fact fid) keeps every co-occurring fact pair stated in the document."""
    if fid is not None and fid in doc.facts:
        return False
    new = [e for e in new if e not in doc.ents]
    stated = doc.facts if fid is None else doc.facts | {fid}
    allents = list(doc.ents) + new
    for n in new:
        for e in allents:
            if e != n:
                f = pair_fact.get(_pair(n, e))
                if f is not None and f not in stated:
                    return False
    return True


def _pack(items: list[tuple[int | None, tuple[int, ...], str]], size_of, pair_fact: dict) -> list[_Doc]:
    """items (fact id or None, entities, text) in order -> documents of size_of() items, constraint-checked."""
    from collections import deque

    queue = deque(items)
    docs: list[_Doc] = []
    while queue:
        doc, target, misses = _Doc(), size_of(), 0
        while queue and len(doc.lines) < target and misses < len(queue):
            fid, ents, text = queue.popleft()
            if _fits(doc, ents, fid, pair_fact):
                doc.lines.append(text)
                doc.ents.update(ents)
                if fid is not None:
                    doc.facts.add(fid)
                if doc.title is None:
                    doc.title = ents[0]
                misses = 0
            else:
                queue.append((fid, ents, text))
                misses += 1
        docs.append(doc)
    return docs


def _reading_doc(rng: np.random.Generator, pool: list[str], n_blocks: int, facts_per_doc: int,
                 known: dict[str, list[str]] | None = None, p_known: float = 0.0,
                 world_years: frozenset[str] = frozenset()) -> str:
    """Passage/Q/A exercises laid out like retrieval-augmented prompts: blocks of passages (each shaped like a
    world document: 1..facts_per_doc statements) and a question about one statement, its answer after "A:".
    Half of the other statements are near misses (the same relation of another subject, or the question's
    subject in another relation), as in retrieved passages. Names are throwaway words (never entities of the
    world), drawn afresh each time, so only copying from the right statement answers them.

    With probability p_known the last block's answer is instead an entity of the world (`known`: object type
    -> names): the model must copy a name it has a prior about. It is then the document's only world entity
    (no year of the world elsewhere in it), so relevant-document counts stay exact."""
    use_known = bool(known) and p_known > 0 and rng.random() < p_known  # no draw when off: same worlds as before

    def word() -> str:
        return pool[rng.integers(len(pool))]

    def name(kind: str) -> str:
        if kind == "person":
            return f"{word()} {word()}"
        if kind == "org":
            return f"{word()} {ORG_KINDS[rng.integers(len(ORG_KINDS))]}"
        if kind == "year":
            year = str(int(rng.integers(*YEAR_RANGE)))
            while use_known and year in world_years:
                year = str(int(rng.integers(*YEAR_RANGE)))
            return year
        return word()

    rels = list(RELATIONS.values())

    def statement(rel: Relation, s: str, o: str) -> str:
        return render_fact(rel.templates[rng.integers(len(rel.templates))], rel, s, o)

    def unrelated(rel: Relation) -> str:
        return statement(rel, name(rel.subject), name(rel.object))

    def near_miss(rel: Relation, s: str) -> str:
        """A statement that retrieval puts beside the gold one: the same relation of another subject, or the
        question's subject in another relation (as subject or object)."""
        kind = rel.subject
        other = [(r, "s") for r in rels if r.subject == kind and r is not rel] + [(r, "o") for r in rels if r.object == kind]
        if rng.random() < 0.5 or not other:
            return unrelated(rel)
        r, role = other[rng.integers(len(other))]
        return statement(r, s, name(r.object)) if role == "s" else statement(r, name(r.subject), s)

    blocks = []
    for b in range(n_blocks):
        n_pass = 1 if b < n_blocks - 1 else int(rng.integers(1, 4))
        rel = rels[rng.integers(len(rels))]
        s, o = name(rel.subject), name(rel.object)
        if use_known and b == n_blocks - 1 and known.get(rel.object):
            o = known[rel.object][rng.integers(len(known[rel.object]))]
        gold_pass = int(rng.integers(n_pass))
        passages = []
        for j in range(n_pass):
            n_st = int(rng.integers(1, facts_per_doc + 1))
            lines = []
            for _ in range(n_st):
                lines.append(near_miss(rel, s) if rng.random() < 0.5 else unrelated(rels[rng.integers(len(rels))]))
            if j == gold_pass:
                lines.insert(int(rng.integers(n_st + 1)), statement(rel, s, o))
            title = s if j == gold_pass or rng.random() < 0.5 else name(rel.subject)
            passages.append(f"Passage: {title}: " + " ".join(" ".join(lines).split()))
        blocks.append("\n".join(passages) + "\n" + f"Q: {rel.question.format(s=s)}\nA: {o}")
    return "\n\n".join(blocks)


@dataclass
class World:
    params: WorldParams
    entities: list[Entity]
    facts: list[Fact]
    docs: list[dict]  # corpus records
    questions: list[dict]  # evaluated: {"question", "answer"}
    demos: list[dict]
    truth: list[dict]
    probes: list[dict]
    names_rejected: int = 0


def generate(params: WorldParams | None = None, avoid: Collection[str] = ()) -> World:
    """Build the world in memory (deterministic for params.seed and avoid)."""
    p = params or WorldParams()
    check_params(p)
    rng = np.random.default_rng(p.seed)
    ents, names = make_entities(p, rng, {a.lower() for a in avoid})
    facts = make_facts(p, ents, rng)
    pair_fact = {_pair(f.subject, f.object): f.fid for f in facts}

    items: list[tuple[int | None, tuple[int, ...], str]] = []
    template_use: dict[int, Counter] = {f.fid: Counter() for f in facts}
    for f in facts:
        rel = RELATIONS[f.relation]
        s, o = ents[f.subject].name, ents[f.object].name
        for _ in range(f.count):
            t = f.template if p.mentions == "duplicate" else int(rng.integers(len(rel.templates)))
            template_use[f.fid][rel.templates[t]] += 1
            items.append((f.fid, (f.subject, f.object), render_fact(rel.templates[t], rel, s, o)))
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    docs = _pack(items, lambda: int(rng.integers(1, p.facts_per_doc + 1)), pair_fact)
    # distractors: 1..3 entity mentions without facts, under the same co-occurrence rule
    d_items = []
    named = [i for i, e in enumerate(ents) if e.type != "year"]  # "Scholars still argue about 1843" is no distractor
    for _ in range(p.n_distractor_docs * 2):
        e = named[int(rng.integers(len(named)))]
        d_items.append((None, (e,), DISTRACTORS[rng.integers(len(DISTRACTORS))].format(e=ents[e].name)))
    docs += _pack(d_items, lambda: int(rng.integers(1, 4)), pair_fact)[: p.n_distractor_docs]

    records = []
    for d in docs:
        records.append({"title": ents[d.title].name, "text": "\n".join(d.lines), "facts": sorted(d.facts)})
    pool = [names.word() for _ in range(p.n_nonce)] if p.n_reading_docs else []
    known: dict[str, list[str]] = {}
    for e in ents:
        if not e.demo:
            known.setdefault(e.type, []).append(e.name)
    world_years = frozenset(e.name for e in ents if e.type == "year")
    for _ in range(p.n_reading_docs):
        text = _reading_doc(rng, pool, int(rng.integers(2, 4)), p.facts_per_doc, known, p.reading_known_answers, world_years)
        records.append({"title": "Reading exercise", "text": text, "facts": []})
    perm = rng.permutation(len(records))
    records = [records[i] for i in perm]
    corpus = []
    fact_docs: dict[int, list[str]] = {f.fid: [] for f in facts}
    for n, r in enumerate(records):
        doc_id = f"w{n:06d}"
        corpus.append({"id": doc_id, "url": f"world://{doc_id}", "title": r["title"], "text": r["text"]})
        for fid in r["facts"]:
            fact_docs[fid].append(doc_id)

    questions, demos, truth, probes = [], [], [], []
    by_name = {e.name: i for i, e in enumerate(ents)}
    for f in facts:
        rel = RELATIONS[f.relation]
        s, o = ents[f.subject], ents[f.object]
        assert len(fact_docs[f.fid]) == f.count  # one statement of a fact per document at most
        q = {"question": rel.question.format(s=s.name), "answer": list(o.aliases)}
        if f.demo:
            demos.append(q)
            continue
        qid = f"qa-{len(questions)}"
        questions.append(q)
        truth.append({"qid": qid, "question": q["question"], "relation": f.relation, "subject": s.name, "object": o.name,
                      "count": f.count, "fact": f.fid, "templates": dict(template_use[f.fid]), "docs": fact_docs[f.fid]})
        # memorization: a statement seen in training (the most used prose template; the first one when unseen)
        seen = [t for t in rel.templates if t != "faq" and template_use[f.fid][t]]
        mem_t = max(seen, key=lambda t: template_use[f.fid][t]) if seen else rel.templates[0]
        for kind, tpl, target_ent, c in (("memorization", mem_t, o, f.count), ("semantic", rel.probe, o, f.count)):
            prefix, target = cloze(tpl, s.name, target_ent.name)
            probes.append({"qid": qid, "kind": kind, "prefix": prefix, "target": target, "count": c,
                           "seen": kind == "memorization" and bool(seen)})
        for (r1, r2), tpl in COMPOSITIONS.items():
            if r1 == f.relation:
                mid = ents[by_name[o.name]]
                final = mid.attributes.get(r2)
                hop2 = next(g for g in facts if g.relation == r2 and g.subject == by_name[o.name])
                prefix, target = cloze(tpl, s.name, final)
                probes.append({"qid": qid, "kind": "composition", "prefix": prefix, "target": target,
                               "count": min(f.count, hop2.count), "seen": False})
    return World(p, ents, facts, corpus, questions, demos, truth, probes, names.rejected)


def _jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_world(world: World, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write the world folder atomically; returns its manifest."""
    with atomic_dir(out, overwrite=overwrite, kind=KIND) as tmp:
        _jsonl(tmp / CORPUS, world.docs)
        _jsonl(tmp / QA, world.questions)
        _jsonl(tmp / DEMOS, world.demos)
        _jsonl(tmp / TRUTH, world.truth)
        _jsonl(tmp / ENTITIES, ({**asdict(e), "aliases": list(e.aliases)} for e in world.entities))
        _jsonl(tmp / PROBES, world.probes)
        counts = np.array([t["count"] for t in world.truth], dtype=np.int64)
        return write_manifest(
            tmp, kind=KIND, format=FORMAT, libraries=("numpy",),
            params=asdict(world.params),
            n_entities=len(world.entities), n_facts=len(world.facts), n_docs=len(world.docs),
            n_questions=len(world.questions), n_demos=len(world.demos), n_probes=len(world.probes),
            counts={"max": int(counts.max(initial=0)), "zero": int((counts == 0).sum()),
                    "total_statements": int(sum(f.count for f in world.facts)),
                    "per_log10_bucket": _log_buckets(counts)},
            names_rejected=world.names_rejected,
            fingerprint=file_sha256(tmp / CORPUS)[:32],
            files=file_sizes(tmp, FILES),
        )


def _log_buckets(counts: np.ndarray) -> dict[str, int]:
    edges = [0, 1, 10, 100, 1000]
    out = {}
    for lo, hi in zip(edges, [*edges[1:], None]):
        sel = (counts >= lo) & (counts < hi) if hi is not None else counts >= lo
        out[f"{lo}-{hi - 1}" if hi is not None and hi > lo + 1 else (str(lo) if hi is not None else f">={lo}")] = int(sel.sum())
    return out


def open_world(folder: str | os.PathLike) -> dict:
    """Check a world folder (manifest and file sizes) and return its manifest."""
    m = read_manifest(folder, kind=KIND, format=FORMAT)
    check_manifest_files(folder, m)
    return m


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_avoid_list(path: str | os.PathLike) -> set[str]:
    """Lower-cased words and names to avoid: a plain list (one per line) or a DBpedia `surface \\t resource`
    TSV (optionally .xz/.bz2/.gz); `_` counts as a space. Every word of a multi-word form is avoided too."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"name list {path} does not exist")
    out: set[str] = set()
    with open_text(path) as f:
        for line in f:
            surface = line.split("\t", 1)[0].strip().lower().replace("_", " ")
            if surface:
                out.add(surface)
                out.update(surface.split())
    return out
