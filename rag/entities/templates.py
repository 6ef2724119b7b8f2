"""Linking benchmark with gold subjects: template-generated questions know their subject exactly.

EntityQuestions (and PopQA-style sets) fill one template per relation with a subject: "Where was [X] born?"
+ "Luke Prokopec". Matching a question against its template recovers the subject string; the gold answers
are the object. Every counted question's chosen question entity is then classified against the subject,
and its answer entity against the answers:

    exact      the mention (or the entity's label) is the subject / a gold answer, compared by form_key
               with a leading "the" dropped (the lexicon treats "The X" and "X" alike)
               -- split into found by an entity link and found by the surface fallback
    sub-span   the mention is a strict contiguous part of it ("Robert" of "Robert Crannell Minor")
    other      some other entity or phrase ("New Brunswick" for "Crow Harbour, New Brunswick")
    unlinked   no question (answer) side at all

Template file: a JSON object {relation: template with one "[X]"}, the shape of EntityQuestions'
relation_query_templates.json. A question is assigned the relation named in its qid ("...-P17-...") when
that relation's template matches it, else the first matching template in file order; questions no template
matches are counted as unmatched and left out of the table.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.entities.frames import subject_key
from rag.errors import BadInputError

Q_CLASSES = ("exact_entity", "exact_surface", "sub_span", "other", "unlinked")
A_CLASSES = ("exact", "sub_span", "other", "unlinked")


@dataclass(frozen=True)
class Template:
    relation: str
    text: str
    pattern: re.Pattern


def load_templates(path: str | Path) -> list[Template]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: cannot read a JSON template file ({e})") from None
    if not isinstance(obj, dict) or not obj:
        raise BadInputError(f"{path}: expected a JSON object {{relation: template with [X]}}")
    out = []
    for rel, t in obj.items():
        if not isinstance(t, str) or t.count("[X]") != 1:
            raise BadInputError(f"{path}: template of {rel!r} must be a string with exactly one [X], got {t!r}")
        pre, post = t.split("[X]")
        out.append(Template(str(rel), t, re.compile("^" + re.escape(pre.strip()) + r"\s*(.+?)\s*" + re.escape(post.strip()) + "$")))
    return out


def match(question: str, qid: str, templates: Sequence[Template]) -> tuple[str, str] | None:
    """(relation, subject) of a question, or None when no template matches."""
    q = " ".join(question.split())
    hits = []
    for t in templates:
        m = t.pattern.match(q)
        if m:
            hits.append((t.relation, m.group(1)))
    if not hits:
        return None
    parts = set(qid.split("-"))
    return next((h for h in hits if h[0] in parts), hits[0])


_key = subject_key


def _part_of(part: str, whole: str) -> bool:
    return bool(part) and part != whole and f" {part} " in f" {whole} "


def classify_question(q_source: str, q_mention: str | None, q_entity: str | None, subject: str) -> str:
    if not q_source:
        return "unlinked"
    s, m, e = _key(subject), _key(q_mention or q_entity), _key(q_entity)
    if m == s or e == s:
        return "exact_surface" if q_source == "surface" else "exact_entity"
    return "sub_span" if _part_of(m, s) else "other"


def classify_answer(a_source: str, a_mention: str | None, a_entity: str | None, answers: Sequence[str]) -> str:
    if not a_source:
        return "unlinked"
    golds = {_key(a) for a in answers}
    m, e = _key(a_mention or a_entity), _key(a_entity)
    if m in golds or e in golds:
        return "exact"
    return "sub_span" if any(_part_of(m, g) for g in golds) else "other"


def _shares(c: Counter, classes: Sequence[str], n: int) -> dict:
    return {k: {"n": c.get(k, 0), "share": round(c.get(k, 0) / n, 4) if n else 0.0} for k in classes}


def evaluate_counts(rows: Sequence, templates: Sequence[Template], examples: int = 5) -> dict:
    """Per relation and overall: question-entity and answer-entity classes (module docstring), with examples
    of the wrong ones. `rows`: QuestionCount rows (rag.counts)."""
    per_q: dict[str, Counter] = {}
    per_a: dict[str, Counter] = {}
    wrong: dict[str, list] = {}
    unmatched = 0
    for r in rows:
        m = match(r.question, r.qid, templates)
        if m is None:
            unmatched += 1
            continue
        rel, subject = m
        qc = classify_question(r.q_source, r.q_mention, r.q_entity, subject)
        ac = classify_answer(r.a_source, r.a_mention, r.a_entity, r.answers)
        per_q.setdefault(rel, Counter())[qc] += 1
        per_a.setdefault(rel, Counter())[ac] += 1
        if qc in ("sub_span", "other") and len(wrong.setdefault(qc, [])) < examples * 4:
            wrong[qc].append({"question": r.question, "subject": subject, "mention": r.q_mention, "entity": r.q_entity, "count": r.count})
    order = [t.relation for t in templates if t.relation in per_q]
    total_q = sum(per_q.values(), Counter())
    total_a = sum(per_a.values(), Counter())
    n = sum(total_q.values())

    def block(cq: Counter, ca: Counter) -> dict:
        k = sum(cq.values())
        exact = cq.get("exact_entity", 0) + cq.get("exact_surface", 0)
        return {
            "n": k,
            "question": _shares(cq, Q_CLASSES, k),
            "answer": _shares(ca, A_CLASSES, k),
            "question_exact": round(exact / k, 4) if k else 0.0,
            "question_wrong": round((cq.get("sub_span", 0) + cq.get("other", 0)) / k, 4) if k else 0.0,
        }

    return {
        "n_questions": n,
        "n_unmatched": unmatched,
        "overall": block(total_q, total_a),
        "relations": {rel: block(per_q[rel], per_a[rel]) for rel in order},
        "examples": {k: v[:examples] for k, v in wrong.items()},
    }


def to_markdown(result: dict, title: str = "") -> str:
    pct = lambda b, side, k: f"{100 * b[side][k]['share']:.1f}"  # noqa: E731
    lines = [f"## {title}" if title else "", ""] if title else []
    lines += [
        f"{result['n_questions']:,} questions matched a template ({result['n_unmatched']:,} did not).",
        "",
        "Question entity against the gold subject (% of questions); answer entity against the gold answers.",
        "",
        "| relation | n | exact (entity) | exact (surface) | sub-span | other | unlinked | wrong | answer exact | answer sub-span | answer other | answer unlinked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rel, b in [*result["relations"].items(), ("**all**", result["overall"])]:
        lines.append(
            f"| {rel} | {b['n']:,} | " + " | ".join(pct(b, "question", k) for k in Q_CLASSES)
            + f" | {100 * b['question_wrong']:.1f} | " + " | ".join(pct(b, "answer", k) for k in A_CLASSES) + " |"
        )
    for k, ex in result.get("examples", {}).items():
        lines += ["", f"Examples, {k.replace('_', '-')}:", ""]
        lines += [f"- {e['question']} — subject {e['subject']!r}, linked {e['mention']!r} → {e['entity']} (count {e['count']})" for e in ex]
    return "\n".join(lines) + "\n"
