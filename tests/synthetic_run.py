"""A synthetic run folder of any size, written directly (no reader, no retrieval): for report.html's tests and
eval/bench_report_html.py. A passage store of 100-word passages (each question has two stating its answer and four
only naming its subject), counts drawn log-uniform with a fifth unlinked, closed-book and retrieval-augmented
records whose accuracy rises with the count and with an answer-bearing passage shown. Records, selection,
config and manifest are in the ordinary on-disk formats, so load_run / open_run / render read it like any run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FIRST = ["Ada", "Bruno", "Celia", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca", "Mira",
         "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara", "Umberto", "Vera", "Wim", "Xenia", "Yusuf", "Zora"]
LAST = ["Albrecht", "Brandt", "Castell", "Duval", "Eriksen", "Falk", "Gallo", "Horvath", "Ivanova", "Jansen", "Kowal",
        "Lindqvist", "Moreau", "Novak", "Ortega", "Petrov", "Quist", "Rossi", "Santos", "Tamm", "Ulrich", "Varga",
        "Weiss", "Yilmaz", "Zeller"]
PLACES = ["Arlon", "Brescia", "Colmar", "Delft", "Eger", "Faro", "Ghent", "Hvar", "Ischia", "Jena", "Kotor", "Lund",
          "Mainz", "Nantes", "Olomouc", "Pula", "Quimper", "Ribe", "Siena", "Tartu", "Utrecht", "Vaasa", "Wels", "Zadar"]
RELATIONS = [("Where was {} born?", "was born in {}"), ("In which city did {} die?", "died in {}"),
             ("Where did {} study?", "studied at the university of {}"), ("Which city is {} the mayor of?", "became the mayor of {}")]
FILLER = ("the museum council archive river festival railway station treaty during century was built after later "
          "renamed by local authorities in early modern period its population grew while several families moved "
          "from the old town to the new district near the harbour and the cathedral square").split()


def _name(rng) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _passage(rng, subject: str, fact: str | None, words: int = 100) -> str:
    filler = " ".join(rng.choice(FILLER, size=words - 12))
    head = f"{subject} {fact}." if fact else f"{subject} is mentioned in the records of {rng.choice(PLACES)}."
    return f"{head} {filler.capitalize()}."


def synthetic_run(root: Path, n_questions: int = 10_000, retrievers=("bm25", "dense"), k: int = 3, depth: int = 20,
                  seed: int = 0) -> Path:
    """A complete run folder at root/run (and its passage store at root/passages); returns the run folder."""
    from rag.artifacts import atomic_dir, write_manifest
    from rag.buckets import Buckets
    from rag.corpus.store import PassageStore, PassageWriter
    from rag.evaluation.config import AdaptiveConfig, EvalConfig, QAConfig, RetrieverConfig
    from rag.evaluation.records import CLOSED, EvalRecord, RecordStore, rag_mode
    from rag.evaluation.run_folder import FORMAT, KIND, RunFolder, Selection
    from rag.pipeline import ReaderConfig
    from rag.types import Passage

    rng = np.random.default_rng(seed)
    # counts: a fifth unlinked, the rest log-uniform over 0 .. 10^4
    linked = rng.random(n_questions) >= 0.2
    counts = [int(10 ** rng.uniform(-0.3, 4)) if ok else None for ok in linked]
    counts = [0 if c is not None and c < 1 else c for c in counts]
    labels = Buckets().assign(counts)
    skill = {"0": 0.05, "1-9": 0.1, "10-99": 0.2, "100-999": 0.35, ">=1000": 0.5, "unlinked": 0.1}

    questions, passages = [], []
    for i in range(n_questions):
        subject, place = _name(rng), str(rng.choice(PLACES))
        q_tpl, fact_tpl = RELATIONS[i % len(RELATIONS)]
        questions.append((f"q{i}", q_tpl.format(subject), place, subject))
        # each question's own documents: two stating the fact, four only mentioning the subject
        for j in range(6):
            fact = fact_tpl.format(place) if j < 2 else None
            passages.append(Passage(f"d{i}#{j}", f"d{i}", f"{subject} ({j})" if j else subject, _passage(rng, subject, fact), j))
    with atomic_dir(root / "passages") as tmp:
        w = PassageWriter(tmp)
        w.add(passages)
        w.close()
    store = PassageStore(root / "passages")

    out = root / "run"
    rets = [RetrieverConfig(r, root / f"{r}-index") for r in retrievers]
    cfg = EvalConfig(qa=QAConfig(root / "qa.jsonl"), counts=root / "counts", retrievers=rets, name=f"synthetic-{n_questions}",
                     reader=ReaderConfig(model="synthetic", backend="fake"), k=k, recall_ks=[1, 5, depth], out=out,
                     adaptive=AdaptiveConfig())
    folder = RunFolder.open(out, {}, {}, overwrite=True)
    folder.write_config(cfg)
    folder.write_selection(Selection(seed=seed, per_bucket=None, limit=None, buckets=tuple(cfg.buckets), sample={},
                                     qids=tuple(q[0] for q in questions), population_counts=tuple(counts),
                                     population_methods=tuple("entity" if c is not None else "none" for c in counts)))
    modes = {CLOSED: {}, **{rag_mode(r): {"index": "synthetic", "search": {}} for r in retrievers}}
    write_manifest(out, kind=KIND, format=FORMAT, name=cfg.name, status="complete", code={"rag": "synthetic"}, seed=seed,
                   qa={"path": str(cfg.qa.path), "fingerprint": "synthetic", "n_questions": n_questions},
                   counts={"path": str(cfg.counts), "fingerprint": "synthetic"},
                   reader={"model": "synthetic", "backend": "fake"}, reader_info={},
                   indexes={r: {"path": str(root / f"{r}-index"), "kind": "synthetic", "fingerprint": "synthetic",
                                "passages": {"path": str(store.folder), "fingerprint": store.fingerprint}} for r in retrievers},
                   identity={}, modes=modes, n_selected=n_questions)

    records = []
    wrong = [_name(rng) for _ in range(64)] + list(PLACES)
    for (qid, question, answer, subject), count, label in zip(questions, counts, labels):
        i = int(qid[1:])
        p_closed = skill[label]
        closed_right = rng.random() < p_closed
        common = dict(qid=qid, question=question, answers=(answer,), count=count,
                      status="ok" if count is not None else "unlinked", count_method="entity" if count is not None else "none")

        def pred(right: bool) -> tuple[str, float, float]:
            if right:
                return answer, 1.0, 1.0
            guess = str(rng.choice(wrong))
            return guess, 0.0, 0.0

        p, em, f1 = pred(closed_right)
        records.append(EvalRecord(mode=CLOSED, prediction=p, em=em, f1=f1, contains=em, prompt_tokens=70, new_tokens=3, **common))
        for r in retrievers:
            roll = rng.random()
            others = [f"d{j}#{int(rng.integers(2, 6))}" for j in rng.integers(0, n_questions, size=depth)]
            own_noise = [f"d{i}#{j}" for j in (2, 3, 4, 5)]
            if roll < 0.45:  # an answer-bearing passage among the k shown
                hit = int(rng.integers(1, k + 1))
            elif roll < 0.65:  # deeper
                hit = int(rng.integers(k + 1, depth + 1))
            else:
                hit = None
            ranked = own_noise[:2] + others
            rng.shuffle(ranked)
            ranked = ranked[:depth]
            if hit is not None:
                ranked[hit - 1] = f"d{i}#{int(rng.integers(0, 2))}"
            right = rng.random() < (0.7 if hit is not None and hit <= k else 0.15 + 0.5 * p_closed)
            p, em, f1 = pred(right)
            records.append(EvalRecord(mode=rag_mode(r), prediction=p, em=em, f1=f1, contains=em, prompt_tokens=480,
                                      new_tokens=3, passages_dropped=0, passages_truncated=0, pids=tuple(ranked[:k]),
                                      retrieved=tuple(ranked[:k]), first_hit=hit, depth=depth, **common))
    RecordStore(out / "records.jsonl").append(records)
    return out
