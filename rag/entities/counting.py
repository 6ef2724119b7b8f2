"""Relevant-document counts per question, exactly as Kandpal et al. (2023) count them.

For one question:
  1. Question entities Q: the entities linked in the question (distinct; countries removed with
     exclude_countries).
  2. Answer entities: the entities linked in the answers, where the answers are linked as the text
     question + "\\n" + "\\n".join(answers) and only mentions after the question are kept (their linking
     script does this so Spotlight sees the question as context). Entities also in Q are dropped.
  3. The salient answer entities A: those linked most often across the answers, ALL ties kept.
  4. count = max over (q in Q, a in A) of |docs(q) ∩ docs(a)|; the pair reaching it first (A outer,
     Q inner, in order of first mention) is reported. When every intersection is empty the first pair
     is reported with count 0 (the reference reports no pair).
  5. q_occurrence = max over Q of |docs(q)|; a_occurrence = max over all answer entities (after step 2)
     of |docs(a)| (their `q_occurrence` / `a_occurrence` counts).
Surface fallback (ours; the paper has none). Most long-tail subjects have no entity, so their questions link
nothing and would drop out of every analysis. Given a BM25 index over the same passages (`phrases`), a side
that links no entity is counted from the text instead (rag.entities.surface):
  * question side: the subject phrase is the question's framed subject when the QA set is template-generated
    (rag.entities.frames: then only an entity whose mention is exactly that subject may be its question
    entity), else its longest proper-name span (rag.entities.spans; first on ties); its documents are those
    holding the exact phrase;
  * answer side: the documents holding any gold answer string (dates, numbers, common nouns that are not
    entities), looked up inside the question side's documents;
  * count = max over the question side's candidates of the intersection, as above.
Each row records how it was counted: `method` "entity" (both sides linked entities: exactly the paper's
count), "surface" (at least one side from the text) or "none" (then `status` and `why` say what was missing),
and `q_source` / `a_source` ("entity" / "surface" / ""). `q_mention` / `a_mention` are the surface strings
behind the chosen pair (the subject phrase itself for a surface side), so linking can be checked against
gold subjects (rag.entities.templates).
Questions that are counted by neither method are kept, with count 0 and status "question-unlinked",
"answer-unlinked" or "both-unlinked", so reports can show them as their own bucket.

The rows (QuestionCount) and their folder (counts.parquet + manifest.json) are the counts artifact, rag.counts.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.counts import A_UNLINKED, BOTH_UNLINKED, ENTITY, NONE, OK, Q_UNLINKED, SURFACE, QuestionCount, save_counts
from rag.entities.countries import is_country
from rag.entities.frames import subject_key
from rag.entities.linkers import EntityLinker
from rag.entities.postings import Postings, intersect_count
from rag.errors import ArtifactError, BadInputError
from rag.progress import stage
from rag.regex_golds import NOT_LITERAL, is_regex, linking_answers
from rag.types import Mention, Question

log = logging.getLogger(__name__)


def select_entities(q_labels: Sequence[str], a_labels: Sequence[str], exclude_countries: bool = False) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(question entities, all answer entities, most frequent answer entities with ties), in first-mention order."""
    q = tuple(dict.fromkeys(q_labels))
    if exclude_countries:
        q = tuple(e for e in q if not is_country(e))
    qs = set(q)
    a_list = [a for a in a_labels if a not in qs]
    freq = Counter(a_list)
    a_all = tuple(dict.fromkeys(a_list))
    if not freq:
        return q, a_all, ()
    top = max(freq.values())
    return q, a_all, tuple(a for a in a_all if freq[a] == top)


def count_one(
    q_entities: Sequence[str], a_all: Sequence[str], a_tied: Sequence[str], docs_of: Callable[[str], np.ndarray]
) -> tuple[int, str | None, str | None, int, int]:
    """(count, chosen q, chosen a, q_occurrence, a_occurrence) for one question."""
    cache: dict[str, np.ndarray] = {}

    def d(e: str) -> np.ndarray:
        if e not in cache:
            cache[e] = docs_of(e)
        return cache[e]

    best, pair = -1, (None, None)
    for a in a_tied:
        for q in q_entities:
            c = intersect_count(d(q), d(a))
            if c > best:
                best, pair = c, (q, a)
    q_occ = max((len(d(q)) for q in q_entities), default=0)
    a_occ = max((len(d(a)) for a in a_all), default=0)
    return max(best, 0), pair[0], pair[1], q_occ, a_occ


def link_questions(questions: Sequence[Question], linker: EntityLinker, batch_size: int = 2_000) -> list[tuple[list[str], list[str]]]:
    """(question entity labels, answer entity labels) per question, linked as the reference does."""
    return [([m.entity for m in qm], [m.entity for m in am]) for qm, am in link_question_mentions(questions, linker, batch_size)]


def link_question_mentions(questions: Sequence[Question], linker: EntityLinker, batch_size: int = 2_000) -> list[tuple[list[Mention], list[Mention]]]:
    """(question mentions, answer mentions) per question; answer mentions carry offsets into the linked text
    question + "\n" + "\n".join(answers)."""
    for q in questions:
        if not isinstance(q.question, str) or not q.question.strip():
            raise BadInputError(f"question {q.qid!r} has an empty question text")
        if isinstance(q.answers, str) or not all(isinstance(a, str) for a in q.answers):
            raise BadInputError(f"question {q.qid!r}: answers must be a list of strings, got {q.answers!r}")
    out: list[tuple[list[str], list[str]]] = []
    for i in range(0, len(questions), batch_size):
        qs = questions[i : i + batch_size]
        texts = [q.question for q in qs] + [q.question + "\n" + "\n".join(linking_answers(q)) for q in qs]
        linked: list[list[Mention]] = linker.link_batch(texts)
        for k, q in enumerate(qs):
            cut = len(q.question) + 1
            out.append((linked[k], [m for m in linked[len(qs) + k] if m.start >= cut]))
    return out


def _first_surface(mentions: Sequence[Mention], entity: str | None) -> str | None:
    return next((m.surface for m in mentions if m.entity == entity), None) if entity else None


def subject_phrase(question: str) -> str | None:
    """The question's longest proper-name span (first on ties): the subject phrase of the surface fallback."""
    from rag.entities.spans import text_spans

    best = None
    for a, b in text_spans(question):
        if best is None or b - a > best[1] - best[0]:
            best = (a, b)
    return question[best[0] : best[1]] if best else None


def _frame_subjects(questions: Sequence[Question], linked: list, frames: "Frames | None") -> dict[int, str]:
    """Framed subject per question index; keeps (in place) only question mentions that are exactly it."""
    framed: dict[int, str] = {}
    if frames is None:
        return framed
    for i, q in enumerate(questions):
        sp = frames.subject(q.question)
        if sp is not None:
            framed[i] = q.question[sp[0] : sp[1]]
            key = subject_key(framed[i])
            linked[i] = ([m for m in linked[i][0] if subject_key(m.surface) == key], linked[i][1])
    return framed


def _surface_subjects(questions, sel, framed, phrases) -> dict[int, tuple[str, np.ndarray | str]]:
    """Question index -> (subject phrase, its documents or NO_STEMS), for the questions with no question entity."""
    todo = [(i, framed.get(i) or subject_phrase(q.question)) for i, (q, (qe, _, _)) in enumerate(zip(questions, sel)) if not qe]
    todo = [(i, p) for i, p in todo if p]
    return {i: (p, d) for (i, p), d in zip(todo, phrases.docs_batch([p for _, p in todo]))}


def _surface_answers(sel, golds, subj, postings, phrases) -> dict[int, tuple[int, str, str]]:
    """Question index -> (count, question side label, answer string) for the questions whose answer links no
    entity: documents holding any answer string inside each question side candidate's documents (max over them)."""
    reqs = []  # (question index, question side label, its documents, answer string)
    for i, (qe, _, at) in enumerate(sel):
        if at or not golds[i]:
            continue
        if qe:
            sides = [(e, postings.docs_of(e)) for e in qe]
        else:
            sides = [subj[i]] if i in subj and not isinstance(subj[i][1], str) else []
        for label, docs in sides:
            if len(docs):
                reqs.extend((i, label, docs, a) for a in dict.fromkeys(x.strip() for x in golds[i]) if a)
    found = phrases.docs_batch([a for *_, a in reqs], within=[d for _, _, d, _ in reqs]) if reqs else []
    union: dict[tuple[int, str], list] = {}
    for (i, label, _, a), d in zip(reqs, found):
        if not isinstance(d, str) and len(d):
            union.setdefault((i, label), []).append((a, d))
    out: dict[int, tuple[int, str, str]] = {}
    for (i, label), parts in union.items():
        c = len(np.unique(np.concatenate([d for _, d in parts])))
        if i not in out or c > out[i][0]:
            out[i] = (c, label, max(parts, key=lambda x: len(x[1]))[0])
    return out


def count_questions(
    questions: Sequence[Question],
    linker: EntityLinker,
    postings: Postings,
    exclude_countries: bool = False,
    batch_size: int = 2_000,
    phrases: "PhraseDocs | None" = None,
    frames: "Frames | None" = None,
) -> list[QuestionCount]:
    """Link every question and count its relevant documents in `postings` (made by the same linker); with
    `phrases` (a PhraseDocs over the same passages), sides that link no entity are counted from the text;
    with `frames` (rag.entities.frames, induced from a template-generated QA set), a question's subject is
    its framed subject: only an entity whose mention is exactly that subject is its question entity."""
    postings.check_linker(linker)
    if phrases is not None and phrases.unit != postings.unit:
        raise BadInputError(f"the phrase lookup counts {phrases.unit}, the postings {postings.unit}")
    no_answers = [q.qid for q in questions if not q.answers]
    if no_answers:
        log.warning("%d question(s) have no answers and are labelled answer-unlinked (first: %s)", len(no_answers), no_answers[0])
    linked = link_question_mentions(questions, linker, batch_size)
    golds = [linking_answers(q) for q in questions]  # answer strings (literal aliases of regex golds)
    framed = _frame_subjects(questions, linked, frames)
    sel = [select_entities([m.entity for m in qm], [m.entity for m in am], exclude_countries) for qm, am in linked]
    # surface fallback, batched: subject phrases first, then answer strings inside the question side's documents
    subj = _surface_subjects(questions, sel, framed, phrases) if phrases is not None else {}
    ans = _surface_answers(sel, golds, subj, postings, phrases) if phrases is not None else {}
    rows = []
    for i, (q, (qm, am), (q_ents, a_all, a_tied)) in enumerate(zip(questions, linked, sel)):
        q_src = ENTITY if q_ents else SURFACE if i in subj and not isinstance(subj[i][1], str) else ""
        a_src = ENTITY if a_tied else SURFACE if phrases is not None and golds[i] and q_src else ""
        f = dict(q_entity=None, a_entity=None, count=0, q_entity_docs=0, a_entity_docs=0, q_occurrence=0, a_occurrence=0,
                 q_mention=None, a_mention=None, why="")
        if q_src == ENTITY and a_src == ENTITY:  # the paper's count
            count, qe, ae, q_occ, a_occ = count_one(q_ents, a_all, a_tied, postings.docs_of)
            f.update(q_entity=qe, a_entity=ae, count=count, q_occurrence=q_occ, a_occurrence=a_occ,
                     q_entity_docs=postings.doc_count(qe) if qe else 0, a_entity_docs=postings.doc_count(ae) if ae else 0,
                     q_mention=_first_surface(qm, qe), a_mention=_first_surface(am, ae))
        elif q_src == SURFACE and a_src == ENTITY:  # subject phrase x answer entity
            phrase, docs = subj[i]
            best, ae = max(((intersect_count(docs, postings.docs_of(a)), a) for a in a_tied), key=lambda x: x[0])
            f.update(q_entity=phrase, a_entity=ae, count=best, q_entity_docs=len(docs), a_entity_docs=postings.doc_count(ae),
                     q_occurrence=len(docs), a_occurrence=max(postings.doc_count(a) for a in a_all),
                     q_mention=phrase, a_mention=_first_surface(am, ae))
        elif a_src == SURFACE:  # question entity or subject phrase x answer strings
            count, qe, ae = ans.get(i, (0, None, None))
            if qe is None:  # the answer strings occur in none of the question side's documents
                qe = q_ents[0] if q_ents else subj[i][0]
                ae = next((a.strip() for a in golds[i] if a.strip()), None)
            q_docs = postings.doc_count(qe) if q_src == ENTITY else len(subj[i][1])
            f.update(q_entity=qe, a_entity=ae, count=count, q_entity_docs=q_docs, a_entity_docs=count, a_occurrence=count,
                     q_occurrence=max(postings.doc_count(e) for e in q_ents) if q_src == ENTITY else q_docs,
                     q_mention=_first_surface(qm, qe) if q_src == ENTITY else qe, a_mention=ae)
        else:
            if q_ents:
                f.update(q_entity=q_ents[0], q_mention=_first_surface(qm, q_ents[0]))
            if a_tied:
                f.update(a_entity=a_tied[0], a_mention=_first_surface(am, a_tied[0]))
            f["why"] = _why_not_counted(q, golds[i], q_src, subj.get(i), phrases is not None)
        method = ENTITY if q_src == ENTITY and a_src == ENTITY else SURFACE if q_src and a_src else NONE
        if method != NONE:
            status = OK
        else:
            status = BOTH_UNLINKED if not q_src and not a_tied else Q_UNLINKED if not q_src else A_UNLINKED
        rows.append(QuestionCount(qid=q.qid, question=q.question, answers=tuple(q.answers), status=status, q_entities=q_ents,
                                  a_entities=a_tied, method=method, q_source=q_src, a_source=a_src, **f))
    return rows


def _why_not_counted(q: Question, golds, q_src: str, subj, lookup: bool) -> str:
    if is_regex(q) and q.answers and not golds:
        return NOT_LITERAL
    if not q.answers:
        return "no answers"
    if not q_src:
        if not lookup:
            return "no question entity (no phrase lookup)"
        return f"subject phrase {subj[0]!r} has no searchable word" if subj else "no name span in the question"
    return "no answer entity (no phrase lookup)"


# --- the whole pipeline ---------------------------------------------------------------------------------


def _parts_key(store, questions, lexicon, postings, surface_forms, redirects, linker, opts, unit) -> dict:
    """What the kept sub-artifacts of an interrupted build depend on (input files by quick fingerprint)."""
    import hashlib

    from rag.artifacts import quick_fingerprint

    qh = hashlib.sha256()
    for q in questions:
        qh.update(f"{q.qid}\t{q.question}\n".encode())
    return {
        "passages": store.fingerprint, "questions": qh.hexdigest()[:32],
        "surface_forms": [quick_fingerprint(f) for f in surface_forms],
        "redirects": [quick_fingerprint(f) for f in redirects],
        "lexicon": str(lexicon) if lexicon is not None else None, "postings": str(postings) if postings is not None else None,
        "linker": linker, "options": {k: str(v) for k, v in sorted(opts.items())}, "unit": unit,
    }


def _open_parts(work: Path, key: dict) -> None:
    """Keep `work` when it was left by a build with the same key; otherwise start it afresh."""
    import json
    import shutil

    key_file = work / "key.json"
    if work.exists():
        try:
            same = json.loads(key_file.read_text()) == key
        except (OSError, ValueError):
            same = False
        if same:
            log.info("resuming the interrupted counts build in %s", work)
            return
        log.info("%s was left by a build with other inputs or settings; starting afresh", work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    key_file.write_text(json.dumps(key, indent=1, sort_keys=True))


def build_counts(
    passages: str | os.PathLike,
    questions: Sequence[Question],
    out: str | os.PathLike,
    *,
    qa_path: str | os.PathLike | None = None,
    lexicon: str | os.PathLike | None = None,
    postings: str | os.PathLike | None = None,
    surface_forms: Sequence[str | os.PathLike] = (),
    redirects: Sequence[str | os.PathLike] = (),
    linker: str = "lexicon",
    linker_options: dict | None = None,
    unit: str = "articles",
    exclude_countries: bool = False,
    phrase_index: str | os.PathLike | None = None,
    frames: bool = True,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    engine=None,
) -> tuple[list[QuestionCount], dict]:
    """Lexicon (built unless given) -> postings (built unless given, else checked) -> counts, in `out`.

    `out` holds counts.parquet and manifest.json, and lexicon/ and postings/ when they were built here.
    `engine` (rag.engine.EngineConfig) chooses where corpus linking runs (local processes or Ray).
    `phrase_index`: a BM25 index over the same passages; with it, sides that link no entity are counted from
    the text (the surface fallback, module docstring); without it they stay unlinked.
    `frames`: induce question frames from the questions (rag.entities.frames); they apply only to a QA set
    that looks template-generated, and then fix each question's subject.
    The sub-artifacts are built in `<out>.parts/` and kept there when a later step fails or is interrupted:
    rerunning the same command reuses a finished lexicon and postings (and sharded postings resume per
    shard); a rerun with other inputs or settings starts that folder afresh.
    """
    import shutil

    from rag.artifacts import partial_dir, quick_fingerprint
    from rag.corpus.store import PassageStore
    from rag.entities.lexicon_build import build_lexicon
    from rag.entities.linkers import make_linker
    from rag.entities.postings import build_postings

    if not questions:
        raise BadInputError("no questions to count")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ArtifactError(f"{out} already exists; pass --overwrite to replace it")
    store = PassageStore(passages)
    opts = dict(linker_options or {})
    work = partial_dir(out).with_name(f"{out.name}.parts")  # sub-artifacts are built here, then moved in
    key = _parts_key(store, questions, lexicon, postings, surface_forms, redirects, linker, opts, unit)
    _open_parts(work, key)
    built = []
    if linker in ("lexicon", "spacy"):
        if lexicon is None:
            lexicon = work / "lexicon"
            if lexicon.exists():  # complete: lexicons are written atomically
                log.info("reusing the lexicon finished by an earlier run: %s", lexicon)
            else:
                with stage("lexicon", f"titles of {len(store):,} passages, {len(surface_forms)} surface-form files, "
                                      f"{len(questions):,} questions' answers") as info:
                    lex = build_lexicon(lexicon, passages=store.folder, surface_forms=surface_forms, redirects=redirects,
                                        questions=questions, qa_name=str(qa_path or "qa"), progress=progress)
                    info.update(forms=lex.manifest["n_forms"], entities=lex.manifest["n_entities"])
            built.append("lexicon")
        opts["lexicon"] = lexicon
    lk = make_linker(linker, **opts)
    if postings is None:
        postings = work / "postings"
        if postings.exists():
            log.info("reusing the postings finished by an earlier run: %s", postings)
        else:
            with stage("postings", f"linking {len(store):,} passages") as info:
                m = build_postings(store, lk, postings, unit=unit, workers=workers, progress=progress, engine=engine).manifest
                info.update(pairs=m["n_pairs"], entities=m["n_entities"], documents=m["n_docs"])
        built.append("postings")
        post = Postings.open(postings, store=store, linker=lk)
    else:
        post = Postings.open(postings, store=store, linker=lk)
        if post.unit != unit:
            log.info("using the postings' document unit %r", post.unit)
    phrases = None
    if phrase_index is not None:
        from rag.entities.surface import PhraseDocs

        phrases = PhraseDocs(store, phrase_index, unit=post.unit)
    from rag.entities.frames import Frames

    fr = Frames.induce([q.question for q in questions]) if frames else None
    with stage("counting", f"{len(questions):,} questions") as info:
        rows = count_questions(questions, lk, post, exclude_countries=exclude_countries, phrases=phrases, frames=fr)
        info.update(counted=sum(r.status == OK for r in rows), unlinked=sum(r.status != OK for r in rows))
    fields_ = dict(
        passages={"path": str(store.folder), "fingerprint": store.fingerprint, "n_passages": len(store)},
        qa={"path": str(qa_path) if qa_path else None, "fingerprint": quick_fingerprint(qa_path) if qa_path and Path(qa_path).is_file() else None},
        linker=lk.identity(),
        postings={"path": "postings" if "postings" in built else str(postings), "fingerprint": post.manifest.get("fingerprint"), "unit": post.unit, "n_docs": post.n_docs},
        lexicon=("lexicon" if "lexicon" in built else str(lexicon)) if lexicon is not None else None,
        exclude_countries=exclude_countries,
        surface_fallback=phrases.identity() if phrases is not None else None,
        frames=fr.describe() if fr is not None else None,
    )
    manifest = save_counts(rows, out, overwrite=overwrite, **fields_)
    for name in built:
        shutil.move(str(work / name), str(out / name))
    shutil.rmtree(work, ignore_errors=True)
    return rows, manifest
