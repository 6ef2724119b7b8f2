"""Retrieval benchmark (issue 2): build cost, query speed and approximate-search recall, side by side.

Sections (run all, or pick with --sections):
  bm25     our BM25 (bm25s engine) vs bare bm25s vs rank-bm25: build time, peak memory, queries/s on the
           NQ-open test questions, at several corpus sizes up to both Wikipedia extracts (~780k passages).
  encoder  MiniLM passages/s on real passages next to this machine's fp32 matmul GFLOP/s (same run).
  dense    Flat vs HNSW vs IVF-PQ over the 2021 extract: build time, queries/s, recall@10 against Flat.
  scaling  dense build/query cost at 10k .. 1M vectors (beyond the real corpus: real vectors + small noise).

Results merge into eval/results/retrieval.json and are rendered to eval/results/retrieval.md.

    .venv/bin/python eval/bench_retrieval.py --sections bm25 --small indexes/wiki2021 --large indexes/wiki-both
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
WORK = REPO / "indexes" / "bench"


def subset_store(src: Path, n: int) -> Path:
    """The first n passages of a store, as a store of its own (cached under indexes/bench)."""
    from rag.artifacts import atomic_dir
    from rag.corpus.store import PassageStore, PassageWriter
    from rag.types import Passage

    store = PassageStore(src)
    if n >= len(store):
        return src
    out = WORK / f"{src.name}-first{n}"
    if (out / "manifest.json").exists():
        return out
    with atomic_dir(out, overwrite=True) as tmp:
        w = PassageWriter(tmp)
        for row, b in store.iter_batches(50_000, columns=("pid", "doc_id", "title", "text", "position")):
            take = min(len(b["pid"]), n - row)
            if take <= 0:
                break
            w.add(Passage(*vals) for vals in zip(*(b[c][:take] for c in ("pid", "doc_id", "title", "text", "position"))))
        w.close(subset_of=str(src), rows=n)
    return out


BUILD_CHILD = bu.CHILD_PRELUDE + """
from rag.corpus.store import PassageStore
from rag.retrievers import INDEXES
t = time.perf_counter()
INDEXES.get({kind!r}).build(PassageStore({store!r}), {out!r}, overwrite=True, progress=False, **{params!r})
_done(build_s=time.perf_counter() - t)
"""

BM25_QUERY_CHILD = bu.CHILD_PRELUDE + """
import numpy as np, bm25s, Stemmer
from rag.qa import load_questions
from rag.retrievers import load_index
qs = [q.question for q in load_questions({qa!r})]
ours = load_index({index!r}).configure(n_threads=2)
ours.search_batch(qs[:50], 10)  # warm: memory maps, caches
def median(fn, r=3):
    ts = []
    for _ in range(r):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]
t_ours = median(lambda: ours.search_batch(qs, 10))
# bare bm25s: the same saved index files, bm25s's own tokenizer and retrieve, the same thread count
bare = bm25s.BM25.load({index!r}, mmap=True, load_vocab=True)
stem = Stemmer.Stemmer("english")
def run_bare():
    toks = bm25s.tokenize(qs, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
    toks = [[w for w in q if w in bare.vocab_dict] or [next(iter(bare.vocab_dict))] for q in toks]
    bare.retrieve(toks, k=10, n_threads=2, show_progress=False)
run_bare()
t_bare = median(run_bare)
# agreement of ours and bare bm25s on the top-10 sets (same scores => same sets up to ties)
res = ours.search_batch(qs[:200], 10)
toks = bm25s.tokenize(qs[:200], stopwords="en", stemmer=stem, return_ids=False, show_progress=False)
toks = [[w for w in q if w in bare.vocab_dict] or [next(iter(bare.vocab_dict))] for q in toks]
docs, _ = bare.retrieve(toks, k=10, n_threads=2, show_progress=False)
agree = float(np.mean([len({{h.row for h in r}} & set(map(int, d))) / max(1, len(r)) for r, d in zip(res, docs) if r]))
out = dict(n_queries=len(qs), ours_qps=len(qs) / t_ours, bare_qps=len(qs) / t_bare, top10_agreement=agree)
if {ref!r}:
    ref = load_index({ref!r})
    n, t0 = 0, time.perf_counter()
    while n < len(qs) and time.perf_counter() - t0 < {ref_budget}:
        ref.search_batch(qs[n:n + 2], 10); n += 2
    out.update(ref_qps=n / (time.perf_counter() - t0), ref_queries=n)
_done(**out)
"""


def bench_bm25(small: Path, large: Path, sizes: list[int], qa: Path, ref_budget: float) -> dict:
    from rag.corpus.store import PassageStore

    rows = []
    n_large = len(PassageStore(large))
    for n in sizes:
        src = small if n <= len(PassageStore(small)) else large
        store = subset_store(src, min(n, n_large))
        n_real = len(PassageStore(store))
        row = {"passages": n_real, "store": str(store)}
        for engine in ("bm25s", "rank-bm25"):
            out = WORK / f"bm25-{engine}-{n_real}"
            # okapi: the variant both engines implement identically (the parity test checks the scores)
            b = bu.run_child(BUILD_CHILD.format(kind="bm25", store=str(store), out=str(out), params={"engine": engine, "variant": "okapi"}))
            row[f"{engine}_build_s"] = b["build_s"]
            row[f"{engine}_build_peak_mb"] = b["peak_rss_mb"]
            print(f"[bm25] {n_real} passages: {engine} built in {b['build_s']:.1f}s, peak {b['peak_rss_mb']:.0f} MB", flush=True)
        q = bu.run_child(
            BM25_QUERY_CHILD.format(qa=str(qa), index=str(WORK / f"bm25-bm25s-{n_real}"), ref=str(WORK / f"bm25-rank-bm25-{n_real}"), ref_budget=ref_budget)
        )
        row.update(q)
        row["speedup_vs_rank_bm25"] = q["ours_qps"] / q["ref_qps"]
        row["ours_vs_bare"] = q["ours_qps"] / q["bare_qps"]
        print(f"[bm25] {n_real}: ours {q['ours_qps']:.0f} q/s, bare bm25s {q['bare_qps']:.0f} q/s, rank-bm25 {q['ref_qps']:.2f} q/s", flush=True)
        rows.append(row)
    return {"qa": str(qa), "rows": rows}


def render(results: dict) -> str:
    md = ["# Retrieval benchmark", "", f"Machine: {results.get('machine')}", ""]
    if "bm25" in results:
        r = results["bm25"]
        md += [
            "## BM25: ours (bm25s engine) vs bare bm25s vs rank-bm25",
            "",
            f"Queries: the {r['rows'][0]['n_queries']:,} NQ-open test questions, k=10, 2 threads (rank-bm25: as many as fit its time budget). "
            "Variant okapi (k1=0.9, b=0.4) for both engines; peak RSS is the build process's own.",
            "",
            bu.md_table(
                r["rows"],
                ["passages", "bm25s_build_s", "bm25s_build_peak_mb", "rank-bm25_build_s", "rank-bm25_build_peak_mb",
                 "ours_qps", "bare_qps", "ref_qps", "speedup_vs_rank_bm25", "ours_vs_bare", "top10_agreement"],
            ),
        ]
    for key in ("encoder", "dense", "scaling"):
        if key in results:
            md += [f"## {key}", "", results[key].get("markdown", "```\n" + json.dumps(results[key], indent=1) + "\n```"), ""]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="bm25,encoder,dense,scaling")
    ap.add_argument("--small", type=Path, default=REPO / "indexes" / "wiki2021", help="passage store of the 2021 extract")
    ap.add_argument("--large", type=Path, default=REPO / "indexes" / "wiki-both", help="passage store of both extracts")
    ap.add_argument("--qa", type=Path, default=SHARED / "qa" / "nq-open.test.jsonl")
    ap.add_argument("--bm25-sizes", default="10000,30000,100000,300000,1000000")
    ap.add_argument("--ref-budget", type=float, default=60.0, help="seconds of rank-bm25 querying per size")
    args = ap.parse_args()
    path = bu.RESULTS / "retrieval.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = bu.machine()
    sections = args.sections.split(",")
    if "bm25" in sections:
        results["bm25"] = bench_bm25(args.small, args.large, [int(s) for s in args.bm25_sizes.split(",")], args.qa, args.ref_budget)
    bu.write_results("retrieval", results, render(results))


if __name__ == "__main__":
    main()
