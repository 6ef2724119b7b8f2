"""Passage length for the presets, by measurement: BM25 answer recall at a fixed reading budget.

The reader's cost is the number of passage tokens it reads, so the fair comparison of passage lengths is at
the same number of words read: with passages of w words the reader gets the top floor(B / w) of them. For
w in {50, 100, 200} over the same extract (the 2021 Wikipedia extract, ~111k 100-word passages), each store is
built and BM25-indexed here, and for NQ-open and TriviaQA questions we report the share whose answer (DPR
has_answer, normalized) occurs in the words read, for budgets B of 100-600 words. Only a small share of
the questions has its answer in this extract at all, so read the ratios between lengths, not the levels.

Writes eval/results/passage_length.{json,md}. Usage:
    .venv/bin/python eval/bench_passage_length.py [--wiki PATH] [--work indexes/passage-length] [--limit N]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchutil import machine, md_table, write_results  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LENGTHS = (50, 100, 200)
BUDGETS = (100, 200, 300, 400, 600)
QA = {"nq-open": SHARED / "qa" / "nq-open.test.jsonl", "triviaqa": SHARED / "qa" / "triviaqa.test.dpr-topics.tsv"}


def build(wiki: Path, work: Path, words: int) -> tuple[Path, float | None]:
    """The BM25 index over `words`-word passages, and its build seconds (None: reused from an earlier --keep run)."""
    from rag.corpus.build import build_passages
    from rag.corpus.store import PassageStore
    from rag.retrievers.bm25 import BM25Retriever

    passages, index = work / f"w{words}", work / f"w{words}-bm25"
    if passages.exists() and index.exists():
        return index, None
    t = time.perf_counter()
    if not passages.exists():
        build_passages([wiki], passages, words=words)
    if not index.exists():
        BM25Retriever.build(PassageStore(passages), index, progress=False)
    return index, time.perf_counter() - t


def recall_at_budgets(index: Path, words: int, questions) -> dict[int, float]:
    from rag.metrics import has_answer_batch
    from rag.retrievers.base import load_index

    retriever = load_index(index)
    store = retriever.store
    depth = max(1, max(BUDGETS) // words)
    hits = retriever.search_batch([q.question for q in questions], k=depth)
    # rank of the first passage holding an answer (depth + 1: none)
    first = np.full(len(questions), depth + 1)
    for i, (q, hs) in enumerate(zip(questions, hits)):
        texts = [f"{p.title} {p.text}" for p in store.get_rows([h.row for h in hs])]
        found = has_answer_batch(list(q.answers), texts)
        first[i] = next((r + 1 for r, f in enumerate(found) if f), depth + 1)
    return {b: float(np.mean(first <= max(1, b // words))) for b in BUDGETS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wiki", type=Path, default=SHARED / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz")
    ap.add_argument("--work", type=Path, default=Path("indexes/passage-length"))
    ap.add_argument("--limit", type=int, default=None, help="questions per QA set (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the built stores and indexes")
    args = ap.parse_args()
    from rag.qa import load_questions

    sets = {name: list(load_questions(path, limit=args.limit)) for name, path in QA.items()}
    rows, build_s = [], {}
    for w in LENGTHS:
        index, build_s[w] = build(args.wiki, args.work, w)
        for name, qs in sets.items():
            t = time.perf_counter()
            rec = recall_at_budgets(index, w, qs)
            rows.append({"qa": name, "words": w, "n": len(qs), **{f"B{b}": 100 * rec[b] for b in BUDGETS},
                         "search_s": time.perf_counter() - t})
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    md = ["# Passage length at a fixed reading budget (BM25)", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
          f"Extract: `{args.wiki.name}`. Cells: % of questions with an answer in the first B words read "
          f"(top floor(B / w) passages). Build (passages + BM25) seconds: "
          + ", ".join(f"{w} words " + (f"{build_s[w]:.0f} s" if build_s[w] is not None else "reused") for w in LENGTHS) + ".", "",
          md_table(rows, ["qa", "words", "n", *(f"B{b}" for b in BUDGETS), "search_s"])]
    write_results("passage_length", {"machine": machine(), "rows": rows, "build_s": build_s,
                                     "wiki": str(args.wiki)}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
