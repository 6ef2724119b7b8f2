"""Linker precision and recall on a labelled sentence set.

File format (JSON lines): {"text": str, "gold": [{"surface": str, "entities": [label, ...]}, ...]}
`surface` is the gold mention (its first occurrence in the text); `entities` lists acceptable labels
(e.g. a title and its DBpedia name), compared by form_key. Two scores:
    mention level  a predicted mention is right if its span equals a gold span and its entity is acceptable
    entity level   per sentence, the set of linked entities against the gold entities (what counting uses)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rag.entities.fold import form_key
from rag.entities.linkers import EntityLinker
from rag.errors import BadInputError
from rag.jsonl import json_objects


@dataclass(frozen=True)
class LabelledSentence:
    text: str
    gold: tuple[tuple[int, int, frozenset[str]], ...]  # (start, end, acceptable entity keys)


def load_labelled(path: str | os.PathLike) -> list[LabelledSentence]:
    path = Path(path)
    out = []
    for _, line_no, obj in json_objects(path):
        try:
            text = obj["text"]
            gold = []
            for g in obj["gold"]:
                start = text.find(g["surface"])
                if start < 0:
                    raise BadInputError(f"{path}:{line_no}: surface {g['surface']!r} is not in the text")
                gold.append((start, start + len(g["surface"]), frozenset(form_key(e) for e in g["entities"])))
        except (KeyError, TypeError, AttributeError) as e:
            raise BadInputError(f"{path}:{line_no}: expected {{'text', 'gold': [{{'surface', 'entities'}}]}} ({e})") from None
        out.append(LabelledSentence(text, tuple(gold)))
    return out


def _prf(right_pred: int, n_pred: int, found_gold: int, n_gold: int) -> dict:
    p = right_pred / n_pred if n_pred else 1.0
    r = found_gold / n_gold if n_gold else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "predicted": n_pred, "gold": n_gold}


def evaluate_linker(linker: EntityLinker, sentences: list[LabelledSentence]) -> dict:
    """{"mention": {precision, recall, f1, ...}, "entity": {...}, "errors": [...]} over the sentences."""
    predicted = linker.link_batch([s.text for s in sentences])
    m_tp = m_pred = m_gold = e_right = e_found = e_pred = e_gold = 0
    errors = []
    for s, mentions in zip(sentences, predicted):
        gold_spans = {(a, b): keys for a, b, keys in s.gold}
        m_gold += len(s.gold)
        m_pred += len(mentions)
        for m in mentions:
            keys = gold_spans.get((m.start, m.end))
            if keys is not None and form_key(m.entity) in keys:
                m_tp += 1
        gold_sets = [keys for _, _, keys in s.gold]
        pred_keys = {form_key(m.entity) for m in mentions}
        e_gold += len(gold_sets)
        e_pred += len(pred_keys)
        e_found += sum(1 for keys in gold_sets if keys & pred_keys)
        wrong = [k for k in pred_keys if not any(k in keys for keys in gold_sets)]
        e_right += len(pred_keys) - len(wrong)
        missed = [sorted(keys)[0] for keys in gold_sets if not keys & pred_keys]
        if wrong or missed:
            errors.append({"text": s.text, "wrong": sorted(wrong), "missed": missed})
    return {"mention": _prf(m_tp, m_pred, m_tp, m_gold), "entity": _prf(e_right, e_pred, e_found, e_gold), "n_sentences": len(sentences), "errors": errors}
