"""Retrieval benchmark (issue 2): build cost, query speed and approximate-search recall, side by side.

Sections (run all, or pick with --sections):
  bm25     our BM25 (bm25s engine) vs bare bm25s vs rank-bm25: build time, peak memory, queries/s on the
           NQ-open test questions, at several corpus sizes up to both Wikipedia extracts (~780k passages).
  encoder  MiniLM passages/s on real passages next to this machine's fp32 matmul GFLOP/s (same run).
  dense    Flat vs HNSW vs IVF-PQ over the 2021 extract: build time, queries/s, recall@10 against Flat.
  scaling  dense build/query cost at 10k .. 1M vectors (beyond the real corpus: draws from a Gaussian mixture
           fitted to the real vectors).

Results merge into eval/results/retrieval.json and are rendered to eval/results/retrieval.md.

    .venv/bin/python eval/bench_retrieval.py --sections bm25 --small indexes/wiki2021 --large indexes/wiki-both
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchutil as bu  # noqa: E402

# OpenMP threads (faiss, torch) that spin while waiting collapse when another job shares the 2 cores: training
# IVF512,PQ192x4fs on 20k vectors took 276 s with the default policy on a loaded machine and 13 s with PASSIVE.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


ENCODER_CHILD = bu.CHILD_PRELUDE + """
import numpy as np, torch, sys
sys.path.insert(0, {evaldir!r})
import benchutil as bu
from rag.corpus.store import PassageStore, passage_text
from rag.encoders import DEFAULT_ENCODER, get_encoder
store = PassageStore({store!r})
rng = np.random.default_rng(0)
rows = np.sort(rng.choice(len(store), size={n}, replace=False))
texts = [passage_text(p.title, p.text) for p in store.get_rows(rows)]
enc = get_encoder(DEFAULT_ENCODER)
st = enc.model
# FLOPs of one encoder pass: 2 x non-embedding parameters per token, plus attention scores and mixing
# (2 x 2 x seq x hidden per token per layer); embeddings are lookups, not matmuls.
emb_params = sum(p.numel() for n_, p in st.named_parameters() if "embeddings" in n_)
dense_params = sum(p.numel() for p in st.parameters()) - emb_params
cfg = st[0].auto_model.config
lens = enc.token_lengths(texts)
flops = float((2 * dense_params * lens + 4 * cfg.num_hidden_layers * cfg.hidden_size * lens.astype(np.float64) ** 2).sum())
enc.encode_batch(texts[:64])  # warm-up
res = {{}}
for bs in {batch_sizes}:
    enc.batch_size = bs
    t = time.perf_counter(); enc.encode_batch(texts); dt = time.perf_counter() - t
    res[f"sorted_bs{{bs}}"] = {{"passages_per_s": len(texts) / dt, "gflops": flops / dt / 1e9}}
# the same passages in unsorted batches of 32 (what sentence-transformers' encode does without sorting helps little)
enc.batch_size = 32
def unsorted():
    with torch.inference_mode():
        for s in range(0, len(texts), 32):
            f = st.preprocess(texts[s:s + 32]); st(f)
t = time.perf_counter(); unsorted(); dt = time.perf_counter() - t
res["unsorted_bs32"] = {{"passages_per_s": len(texts) / dt, "gflops": flops / dt / 1e9}}
peak = bu.matmul_peak_gflops()
_done(n=len(texts), mean_tokens=float(lens.mean()), dense_params=int(dense_params), flops_per_passage=flops / len(texts),
      runs=res, matmul_peak_gflops=peak, torch_threads=torch.get_num_threads())
"""


def bench_encoder(small: Path, n: int) -> dict:
    r = bu.run_child(ENCODER_CHILD.format(evaldir=str(Path(__file__).parent), store=str(small), n=n, batch_sizes=[16, 32, 64, 128]))
    best = max(r["runs"].items(), key=lambda kv: kv[1]["passages_per_s"])
    r["best"] = {"setting": best[0], **best[1], "fraction_of_peak": best[1]["gflops"] / r["matmul_peak_gflops"]}
    rows = [{"setting": k, **v, "fraction_of_peak": v["gflops"] / r["matmul_peak_gflops"]} for k, v in r["runs"].items()]
    r["markdown"] = (
        f"all-MiniLM-L6-v2 on {r['n']:,} random passages of {small.name} (mean {r['mean_tokens']:.0f} wordpieces, "
        f"{r['flops_per_passage'] / 1e9:.2f} GFLOP each, {r['dense_params'] / 1e6:.1f}M non-embedding parameters), "
        f"{r['torch_threads']} torch threads. fp32 matmul peak measured in the same process: "
        f"**{r['matmul_peak_gflops']:.0f} GFLOP/s**.\n\n"
        + bu.md_table(rows, ["setting", "passages_per_s", "gflops", "fraction_of_peak"])
    )
    print(f"[encoder] best {best[0]}: {best[1]['passages_per_s']:.1f} passages/s = {best[1]['gflops']:.0f} GFLOP/s "
          f"of {r['matmul_peak_gflops']:.0f} peak", flush=True)
    return r


def _set_params(index, **params) -> None:
    import faiss

    ps = faiss.ParameterSpace()
    for k, v in params.items():
        ps.set_index_parameter(index, k, v)


def _recall(found, truth) -> float:
    import numpy as np

    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def _query_sweep(index, queries, truth, k: int, settings: list[dict]) -> list[dict]:
    out = []
    for params in settings:
        _set_params(index, **params)
        index.search(queries[:100], k)  # warm
        t = time.perf_counter()
        _, rows = index.search(queries, k)
        dt = time.perf_counter() - t
        out.append({"params": ",".join(f"{a}={b}" for a, b in params.items()) or "-", "qps": len(queries) / dt,
                    "recall_at_10": _recall(rows, truth) if truth is not None else 1.0})
    return out


FACTORY_SETTINGS = {
    "Flat": [{}],
    "HNSW32": [{"efSearch": e} for e in (16, 32, 48, 64, 96, 128, 256)],
    "IVF-PQ": [{"nprobe": p, "k_factor_rf": f} for p in (16, 32, 64, 128, 192, 256, 384, 512) for f in (2, 4, 6, 8, 16)],
    # half the code size: scanning is twice as fast, the coarser codes are made up for by re-ranking more
    "IVF-PQ-compact": [{"nprobe": p, "k_factor_rf": f} for p in (64, 128, 192, 256, 384, 512) for f in (8, 32, 64)],
}


def ivfpq_factory(n: int, dim: int, bytes_per_dim: float = 0.25) -> str:
    # fast-scan PQ (4-bit codes, SIMD scanning) with an exact re-rank of the shortlist (RFlat, k_factor);
    # m sub-quantizers of 4 bits = m / 2 bytes per vector
    nlist = int(2 ** round(__import__("math").log2(4 * n ** 0.5)))
    return f"IVF{nlist},PQ{int(dim * bytes_per_dim * 2)}x4fs,RFlat"


KINDS = ("Flat", "HNSW32", "IVF-PQ", "IVF-PQ-compact")


def _kind(row: dict) -> str:
    # rows written before "kind" was recorded had one IVF variant only
    return row.get("kind") or ("Flat" if row["index"] == "Flat" else "HNSW32" if row["index"].startswith("HNSW") else "IVF-PQ")


def bench_dense_at(vectors, queries, ef_construction: int, label: str, kinds=KINDS) -> list[dict]:
    """Build Flat and the `kinds` of index over `vectors`, sweep query settings, recall@10 against Flat."""
    from rag.retrievers.faiss_index import build_faiss

    rows = []
    truth = None
    n, dim = vectors.shape
    for name, factory in (("Flat", "Flat"), ("HNSW32", "HNSW32"), ("IVF-PQ", ivfpq_factory(n, dim)),
                          ("IVF-PQ-compact", ivfpq_factory(n, dim, 0.125))):
        if name != "Flat" and name not in kinds:
            continue
        t = time.perf_counter()
        index, n_train = build_faiss(vectors, factory, ef_construction=ef_construction, progress=False)
        build_s = time.perf_counter() - t
        # the index's memory: what faiss.write_index stores (vectors or codes, graph, re-rank copies)
        import faiss

        index_mb = faiss.serialize_index(index).nbytes / 2**20
        sweep = _query_sweep(index, queries, truth, 10, FACTORY_SETTINGS[name])
        if name == "Flat":
            _, truth = index.search(queries, 10)
        for s in sweep:
            rows.append({"vectors": n, "data": label, "kind": name, "index": factory, "build_s": build_s,
                         "index_mb": index_mb, "train": n_train, **s})
        print(f"[dense] {n:,} {factory}: built {build_s:.1f}s; " + "; ".join(f"{s['params']} {s['qps']:.0f} q/s r={s['recall_at_10']:.3f}" for s in sweep), flush=True)
        del index
    flat_qps = rows[0]["qps"]
    for r in rows:
        r["speedup_vs_flat"] = r["qps"] / flat_qps
    return rows


def _vectors_and_queries(qa: Path, dense_index: Path):
    """Passage vectors of a dense index and the encoded NQ-open questions.

    `dense_index` may also be an unfinished local build (`X.partial/`, its one shard's progress in
    encode/shard-00000.progress.json): then only its finished rows are used, which the results say.
    """
    import numpy as np
    from rag.encoders import DEFAULT_ENCODER, get_encoder
    from rag.qa import load_questions

    qs = [q.question for q in load_questions(qa)]
    progress = dense_index / "encode" / "shard-00000.progress.json"
    if (dense_index / "manifest.json").exists():
        from rag.retrievers import load_index

        r = load_index(dense_index)
        enc, emb, source = r.encoder, np.ascontiguousarray(r.embeddings()), f"{dense_index.name} (complete)"
    elif progress.exists():
        done = json.loads(progress.read_text())["rows_done"]
        enc = get_encoder(DEFAULT_ENCODER)
        emb = np.ascontiguousarray(np.load(dense_index / "encode" / "shard-00000.npy", mmap_mode="r")[:done])
        source = f"the first {done:,} passages of {dense_index.name} (an unfinished encoding)"
    else:
        raise SystemExit(f"{dense_index}: neither a dense index nor a partial build")
    t = time.perf_counter()
    vecs = enc.encode_batch(qs)
    return emb, vecs, {"n_queries": len(qs), "query_encode_qps": len(qs) / (time.perf_counter() - t), "vectors_source": source}


def bench_dense(dense_index: Path, qa: Path, ef_construction: int) -> dict:
    emb, q, info = _vectors_and_queries(qa, dense_index)
    rows = bench_dense_at(emb, q, ef_construction, "real")
    best = best_at_recall(rows, 0.95)
    return {**info, "index": str(dense_index), "rows": rows, "best_at_0.95": best,
            "markdown": f"{emb.shape[0]:,} real passage vectors ({info['vectors_source']}), {info['n_queries']:,} NQ-open queries "
                        f"encoded once ({info['query_encode_qps']:.0f} queries/s), k=10, one batched search call per setting. "
                        f"HNSW efConstruction={ef_construction}.\n\n"
                        + bu.md_table(rows, ["index", "build_s", "index_mb", "params", "qps", "recall_at_10", "speedup_vs_flat"])}


def best_at_recall(rows: list[dict], target: float) -> dict:
    out = {}
    for r in rows:
        if r["index"] != "Flat" and r["recall_at_10"] >= target:
            key = r["index"]
            if key not in out or r["qps"] > out[key]["qps"]:
                out[key] = {k: r[k] for k in ("params", "qps", "recall_at_10", "speedup_vs_flat", "build_s")}
    return out


def synthetic(real, n: int, clusters: int, seed: int = 0):
    """n vectors: the real ones, then draws from a Gaussian mixture fitted to them.

    k-means splits the real vectors into `clusters` clusters; a new vector is its cluster's centroid plus a
    random Gaussian combination of that cluster's residuals (w ~ N(0, 1/m) over its m members), so each
    cluster keeps its own empirical covariance and the mixture keeps the corpus' topical clustering and
    spectrum. Unlike noisy copies, this adds no isotropic noise (which raises the intrinsic dimension and
    makes any ANN index look worse than on real text) and no near-duplicates (which make recall@10 a coin
    toss among ties). Renormalized to unit length like the real vectors.
    """
    import faiss
    import numpy as np

    n_real, dim = real.shape
    if n <= n_real:
        return np.ascontiguousarray(real[:n])
    km = faiss.Kmeans(dim, clusters, niter=10, seed=seed, spherical=True, verbose=False)
    km.train(real)
    _, assign = km.index.search(real, 1)
    assign = assign[:, 0]
    rng = np.random.default_rng(seed)
    sizes = np.bincount(assign, minlength=clusters)
    want = rng.multinomial(n - n_real, sizes / n_real)  # new vectors per cluster, in proportion to its size
    out = np.empty((n, dim), dtype=np.float32)
    out[:n_real] = real
    at = n_real
    for c in np.flatnonzero(want):
        members = real[assign == c]
        centre = members.mean(axis=0)
        resid = members - centre  # (m, dim)
        w = rng.standard_normal((want[c], len(members))).astype(np.float32) / np.sqrt(len(members))
        v = centre + w @ resid
        out[at:at + want[c]] = v / np.linalg.norm(v, axis=1, keepdims=True)
        at += want[c]
    perm = n_real + rng.permutation(n - n_real)  # interleave clusters as a real corpus would
    out[n_real:] = out[perm]
    return out


def bench_scaling(dense_index: Path, qa: Path, sizes: list[int], clusters: int, ef_construction: int, n_queries: int,
                  keep_other_sizes: bool = True, kinds=KINDS) -> dict:
    real, q, info = _vectors_and_queries(qa, dense_index)
    q = q[:n_queries]
    info = {**info, "n_queries": len(q), "n_real": real.shape[0], "clusters": clusters}
    rows = []
    path = bu.RESULTS / "retrieval.json"
    old = json.loads(path.read_text()).get("scaling", {}) if path.exists() else {}
    if keep_other_sizes and all(old.get(k) == info[k] for k in ("n_queries", "n_real", "clusters")):
        # same queries and data: comparable; kept unless this run re-measures that size and kind
        rows = [r for r in old.get("rows", []) if r["vectors"] not in sizes or (_kind(r) not in kinds and _kind(r) != "Flat")]
    for n in sizes:
        label = "real" if n <= real.shape[0] else f"real + mixture draws ({clusters} clusters)"
        new = bench_dense_at(synthetic(real, n, clusters), q, ef_construction, label, kinds)
        flat = next(r["qps"] for r in new if r["kind"] == "Flat")
        for r in rows:
            if r["vectors"] == n:  # kept rows of this size: speed-up against this run's Flat
                r["speedup_vs_flat"] = r["qps"] / flat
        rows = sorted(rows + new, key=lambda r: (r["vectors"], KINDS.index(_kind(r))))
        # saved after every size: the largest sizes take long, and an interrupted run keeps what it measured
        _save_section("scaling", scaling_summary(rows, info))
    return scaling_summary(rows, info)


def scaling_summary(rows: list[dict], info: dict) -> dict:
    sizes = sorted({x["vectors"] for x in rows})
    table = []
    for n in sizes:
        sub = [x for x in rows if x["vectors"] == n]
        best = best_at_recall(sub, 0.95)
        line = {"vectors": n, "data": sub[0]["data"], "Flat_qps": sub[0]["qps"]}
        for name in ("HNSW32", "IVF"):
            # the fastest index of this family (IVF: two code sizes) at recall >= 0.95, and its setting
            top = max(((k, v) for k, v in best.items() if k.startswith(name)), key=lambda kv: kv[1]["qps"], default=None)
            built = [x["build_s"] for x in sub if x["index"].startswith(name)]
            if top:
                factory, b = top
                params = f"{factory}: {b['params']}" if name == "IVF" else b["params"]
            line[f"{name}_build_s"] = b["build_s"] if top else (built[0] if built else float("nan"))
            line[f"{name}_best_qps@0.95"] = b["qps"] if top else float("nan")
            line[f"{name}_params"] = params if top else ("recall<0.95" if built else "not measured")
            line[f"{name}_speedup"] = b["speedup_vs_flat"] if top else float("nan")
        table.append(line)
    n_real = info["n_real"]
    md = (f"Real vectors: {info['vectors_source']}. Vectors beyond the {n_real:,} real passage embeddings are drawn "
          f"from a Gaussian mixture fitted to them ({info['clusters']} spherical k-means clusters, each with its own "
          f"empirical covariance; see `synthetic`). "
          f"{info['n_queries']:,} NQ-open queries, k=10, recall@10 against Flat on the same vectors; best setting with "
          f"recall@10 ≥ 0.95. {info.get('note', '')}\n\n"
          + bu.md_table(table, list(table[0]))
          + "\n\nAll settings:\n\n" + bu.md_table(rows, ["vectors", "index", "build_s", "params", "qps", "recall_at_10", "speedup_vs_flat"]))
    return {**info, "rows": rows, "summary": table, "markdown": md}


def _save_section(name: str, data: dict) -> None:
    path = bu.RESULTS / "retrieval.json"
    latest = json.loads(path.read_text()) if path.exists() else {}
    latest[name] = data
    bu.write_results("retrieval", latest, render(latest))


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
    ap.add_argument("--dense-index", type=Path, default=REPO / "indexes" / "wiki2021-dense", help="a Flat dense index of the 2021 extract")
    ap.add_argument("--encoder-passages", type=int, default=2000)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--scaling-sizes", default="10000,30000,111266,300000,1000000")
    ap.add_argument("--clusters", type=int, default=1024, help="mixture components fitted to the real vectors for sizes beyond them")
    ap.add_argument("--scaling-queries", type=int, default=2000)
    ap.add_argument("--scaling-kinds", default=",".join(KINDS[1:]),
                    help=f"index kinds built per size besides Flat (comma-separated from {', '.join(KINDS[1:])})")
    ap.add_argument("--fresh-scaling", action="store_true",
                    help="drop earlier scaling rows of sizes not in --scaling-sizes (kept by default when comparable)")
    args = ap.parse_args()
    path = bu.RESULTS / "retrieval.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = {**bu.machine(), "OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]}
    sections = args.sections.split(",")
    if "bm25" in sections:
        results["bm25"] = bench_bm25(args.small, args.large, [int(s) for s in args.bm25_sizes.split(",")], args.qa, args.ref_budget)
    if "encoder" in sections:
        results["encoder"] = bench_encoder(args.small, args.encoder_passages)
    if "dense" in sections:
        results["dense"] = bench_dense(args.dense_index, args.qa, args.ef_construction)
    if "scaling" in sections:
        results["scaling"] = bench_scaling(args.dense_index, args.qa, [int(x) for x in args.scaling_sizes.split(",")],
                                           args.clusters, args.ef_construction, args.scaling_queries,
                                           keep_other_sizes=not args.fresh_scaling, kinds=args.scaling_kinds.split(","))
    # merge into what is on disk now: sections may be run by separate processes at the same time
    latest = json.loads(path.read_text()) if path.exists() else {}
    latest.update({k: v for k, v in results.items() if k in sections or k == "machine"})
    bu.write_results("retrieval", latest, render(latest))


if __name__ == "__main__":
    main()
