"""Held-out knowledge about new entities of a world: what `rag world dynamics` injects into training batches and
`rag world inject` teaches by further training or supplies by retrieval.

A new entity is a person (birthplace, employer) or an organization (headquarters, founder, founding year) whose
facts point at entities of the world, so its composition probe ("... was born in a city of {country}") needs a
fact the model can only have from the world (city -> country). Names come from the world's name maker and are
never a word of the world's corpus nor of another new entity. Every item has a twin: another new name with the
same objects, never shown to the model, whose probes say what the model predicts after any name in the same
sentence (the paired control: the tiny model's log-probabilities of a city move by nats from one step to the next
for every subject alike).

Texts, one per paraphrase: the entity's statements, one per fact, joined by line breaks as the world's documents
are. Style "world": the world's own templates (the first paraphrase uses each relation's first prose template,
the others draw templates, FAQ form included, and the order of the statements). Style "archive": a register the
world never uses (its own templates, a header and a closing line), for injection by training: a new style whose
words a model can learn without learning the facts.

Probes are written as the world writes them (rag.world.generator): memorization = the first paraphrase's
statement as a cloze, semantic = the relation's held-out paraphrase, composition = the two-hop template.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.errors import BadInputError
from rag.world.generator import COMPOSITIONS, CORPUS, ENTITIES, ORG_KINDS, RELATIONS, NameMaker, cloze, read_jsonl, render_fact

STYLES = ("world", "archive")
KINDS = ("memorization", "semantic", "composition")
RELATIONS_OF = {"person": ("birthplace", "employer"), "org": ("headquarters", "founder", "founded")}
# object-final templates of the archive register (two per relation) and the lines around an entry
ARCHIVE: dict[str, tuple[str, ...]] = {
    "birthplace": ("Parish records give the birthplace of {s} as {o}.", "According to parish records, {s} was born at {o}."),
    "employer": ("Payroll ledgers list {s} as a clerk of {o}.", "According to payroll ledgers, {s} was on the staff of {o}."),
    "headquarters": ("Registry filings place the main office of {s} at {o}.", "According to registry filings, {s} kept its seat at {o}."),
    "founder": ("Charter papers record {s} as the creation of {o}.", "According to charter papers, {s} was set up by {o}."),
    "founded": ("Charter papers date the creation of {s} to {o}.", "According to charter papers, {s} was set up in the year {o}."),
}
ARCHIVE_HEAD, ARCHIVE_TAIL = "Archive entry.", "(end of entry)"
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class NewFact:
    relation: str
    object: str  # a world entity's name
    answers: tuple[str, ...]  # the object's aliases
    hop: str | None  # the composition target (the country of a city object); None: no composition probe


@dataclass(frozen=True)
class Item:
    """One new entity, its facts and its never-shown twin (same objects, another name)."""

    kid: str
    name: str
    type: str  # "person" | "org"
    facts: tuple[NewFact, ...]
    twin: str

    @classmethod
    def from_json(cls, d: dict) -> "Item":
        return cls(d["kid"], d["name"], d["type"], tuple(NewFact(f["relation"], f["object"], tuple(f["answers"]), f["hop"])
                                                         for f in d["facts"]), d["twin"])

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class WorldView:
    """What new knowledge needs of a world folder: its entities and every word of its corpus (names to avoid)."""

    entities: list[dict]
    words: set[str]

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "WorldView":
        folder = Path(folder)
        ents = read_jsonl(folder / ENTITIES)
        words: set[str] = set()
        with open(folder / CORPUS, encoding="utf-8") as f:
            for line in f:
                words.update(w.lower() for w in _WORD.findall(json.loads(line)["text"]))
        for e in ents:
            for a in e["aliases"]:
                words.update(w.lower() for w in a.split())
        return cls(ents, words)


def make_items(view: WorldView, n_people: int, n_orgs: int, rng: np.random.Generator, prefix: str = "k") -> list[Item]:
    """n_people persons then n_orgs organizations (each with a twin), their objects drawn from the world's
    non-demonstration entities; names avoid every word of the world."""
    if n_people < 0 or n_orgs < 0 or n_people + n_orgs < 1:
        raise BadInputError(f"new knowledge needs at least one entity, got {n_people} people and {n_orgs} organizations")
    ents = [e for e in view.entities if not e.get("demo")]
    by_type: dict[str, list[dict]] = {}
    for e in ents:
        by_type.setdefault(e["type"], []).append(e)
    for t in ("city", "org", "person", "year"):
        if not by_type.get(t):
            raise BadInputError(f"the world has no {t} entities to state new facts about")
    names = NameMaker(rng, view.words)

    def pick(kind: str) -> dict:
        pool = by_type[kind]
        return pool[int(rng.integers(len(pool)))]

    def fact(rel: str) -> NewFact:
        o = pick(RELATIONS[rel].object)
        hop = o["attributes"].get("country") if (rel, "country") in COMPOSITIONS else None
        return NewFact(rel, o["name"], tuple(o["aliases"]), hop)

    def name(kind: str) -> str:
        if kind == "person":
            return f"{names.word()} {names.word()}"
        return f"{names.word()} {ORG_KINDS[int(rng.integers(len(ORG_KINDS)))]}"

    items = []
    for i, kind in enumerate(["person"] * n_people + ["org"] * n_orgs):
        facts = tuple(fact(r) for r in RELATIONS_OF[kind])
        items.append(Item(f"{prefix}-{i}", name(kind), kind, facts, name(kind)))
    return items


def _templates(rel: str, style: str) -> tuple[str, ...]:
    return RELATIONS[rel].templates if style == "world" else ARCHIVE[rel]


def _text(item: Item, name: str, style: str, choice: Sequence[int], order: Sequence[int]) -> str:
    lines = [render_fact(_templates(item.facts[j].relation, style)[choice[j]], RELATIONS[item.facts[j].relation], name, item.facts[j].object)
             for j in order]
    if style == "archive":
        lines = [ARCHIVE_HEAD, *lines, ARCHIVE_TAIL]
    return "\n".join(lines)


def paraphrases(item: Item, n: int, style: str, rng: np.random.Generator) -> list[str]:
    """n distinct texts stating all of the item's facts: the first with each relation's first template in fact
    order (the text memorization probes quote), the others with drawn templates and statement orders."""
    if style not in STYLES:
        raise BadInputError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    k = len(item.facts)
    sizes = [len(_templates(f.relation, style)) for f in item.facts]
    combos = int(np.prod(sizes)) * int(np.prod(np.arange(1, k + 1)))
    if n > combos:
        raise BadInputError(f"{n} paraphrases asked of an entity with {k} facts, which has only {combos} in the {style} style")
    seen = {((0,) * k, tuple(range(k)))}
    out = [_text(item, item.name, style, [0] * k, range(k))]
    while len(out) < n:
        choice = tuple(int(rng.integers(s)) for s in sizes)
        order = tuple(int(x) for x in rng.permutation(k))
        if (choice, order) not in seen:
            seen.add((choice, order))
            out.append(_text(item, item.name, style, choice, order))
    return out


def probes(item: Item, style: str = "world") -> list[dict]:
    """The item's probes, then its twin's (the same prefixes with the twin's name, the same targets):
    {"kid", "twin", "kind", "relation", "prefix", "target"}."""
    rows = []
    for twin, name in ((False, item.name), (True, item.twin)):
        for f in item.facts:
            rel = RELATIONS[f.relation]
            for kind, tpl in (("memorization", _templates(f.relation, style)[0]), ("semantic", rel.probe)):
                prefix, target = cloze(tpl, name, f.object)
                rows.append({"kid": item.kid, "twin": twin, "kind": kind, "relation": f.relation, "prefix": prefix, "target": target})
            if f.hop is not None:
                prefix, target = cloze(COMPOSITIONS[(f.relation, "country")], name, f.hop)
                rows.append({"kid": item.kid, "twin": twin, "kind": "composition", "relation": f.relation, "prefix": prefix, "target": target})
    return rows


def questions(items: Sequence[Item], prefix: str = "new") -> list[dict]:
    """One nq-open question per fact, {"qid", "kid", "relation", "question", "answer": [aliases]}, in item order."""
    out = []
    for it in items:
        for f in it.facts:
            out.append({"qid": f"{prefix}-{len(out)}", "kid": it.kid, "relation": f.relation,
                        "question": RELATIONS[f.relation].question.format(s=it.name), "answer": list(f.answers)})
    return out


def vocabulary_texts(items: Sequence[Item]) -> list[str]:
    """Every word a model must have in its vocabulary to read and write these items in either style (names,
    twins, templates, probes, questions)."""
    out = [f"{ARCHIVE_HEAD} {ARCHIVE_TAIL}", *(t for ts in ARCHIVE.values() for t in ts)]
    for it in items:
        out += [it.name, it.twin]
        out += [p["prefix"] + " " + p["target"] for p in probes(it, "world") + probes(it, "archive")]
        out += [q["question"] + " " + " ".join(q["answer"]) for q in questions([it])]
    return out
