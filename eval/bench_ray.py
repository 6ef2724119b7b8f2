"""Throughput of the ray engine with 1 and 2 workers against the local engine, on this machine, for the two
heaviest batch stages, and an estimate for the full DPR Wikipedia (21,015,324 passages) from the per-worker rates.

    dense   all-MiniLM-L6-v2 (fp32, CPU) encoding + Flat indexing of the first --encode-passages real passages of
            the 2021 extract: local (one process, torch on every core) vs ray with 1 worker (all cores) and
            2 workers (one core each), shards of equal size
    link    corpus linking (postings) of the whole 2021 extract (111k passages) with the NQ-open lexicon
            (2.0M surface forms): local (forked processes on every core) vs ray with 1 and 2 workers

Per-worker rates are steady-state: a shard's rows over the seconds its worker spent on it (model loading and
Ray start-up excluded, reported separately). Every run is checked against the local result (same embeddings
within 1e-5, identical postings). Writes eval/results/ray.json and ray.md.

    .venv/bin/python eval/bench_ray.py [--passages ../main/indexes/wiki2021] [--lexicon ...] [--encode-passages 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "eval"))
sys.path.insert(0, str(REPO))
from benchutil import machine, md_table, write_results  # noqa: E402

DPR_PASSAGES = 21_015_324  # psgs_w100.tsv of DPR (Karpukhin et al. 2020)


def subset_store(src: Path, n: int, out: Path):
    from rag.artifacts import atomic_dir
    from rag.corpus.store import COLUMNS, PassageStore, PassageWriter, read_row_range

    with atomic_dir(out) as tmp:
        w = PassageWriter(tmp)
        w.add_columns(read_row_range(src, 0, n, COLUMNS))
        w.close(source=str(src), n_first=n)
    return PassageStore(out)


def per_worker_rates(records: list[dict], rows_of) -> dict:
    """worker -> passages per busy second; the median over workers; the busiest worker's busy seconds."""
    busy: dict[str, list[float]] = {}
    for r in records:
        b = busy.setdefault(r["worker"], [0, 0.0])
        b[0] += rows_of(r)
        b[1] += r["seconds"]
    rates = {w: rows / max(s, 1e-9) for w, (rows, s) in busy.items()}
    return {"per_worker": {w: round(v, 1) for w, v in rates.items()}, "median_per_worker": round(float(np.median(list(rates.values()))), 1),
            "busiest_s": max(s for _, s in busy.values())}


def bench_dense(store, tmp: Path, ray_engines: dict) -> list[dict]:
    from rag.retrievers import load_index
    from rag.retrievers.dense import DenseRetriever

    rows = []
    t = time.perf_counter()
    DenseRetriever.build(store, tmp / "dense-local", progress=False, device="cpu")
    wall = time.perf_counter() - t
    m = load_index(tmp / "dense-local").manifest
    ref = np.load(tmp / "dense-local" / "embeddings.npy")
    rows.append({"stage": "dense", "engine": "local", "workers": 1, "threads_per_worker": os.cpu_count(), "wall_s": round(wall, 1),
                 "encode_s": round(m["build"]["encode_seconds"], 1), "index_s": round(m["build"]["index_seconds"], 2),
                 "passages_per_s": round(len(store) / wall, 1), "steady_per_worker": round(len(store) / m["build"]["encode_seconds"], 1)})
    for name, engine in ray_engines.items():
        t = time.perf_counter()
        DenseRetriever.build(store, tmp / f"dense-{name}", progress=False, device="cpu", engine=engine)
        wall = time.perf_counter() - t
        m = load_index(tmp / f"dense-{name}").manifest
        emb = np.load(tmp / f"dense-{name}" / "embeddings.npy")
        shards = {s["start"]: s["stop"] - s["start"] for s in m["shards"]}
        enc = [{**r, "start": s["start"]} for r, s in zip(m["build"]["shards"]["encode"], m["shards"])]
        rates = per_worker_rates(enc, lambda r: shards[r["start"]])
        rows.append({"stage": "dense", "engine": "ray", "workers": engine.workers, "threads_per_worker": os.cpu_count() // engine.workers,
                     "wall_s": round(wall, 1), "encode_s": round(m["build"]["encode_seconds"], 1), "index_s": round(m["build"]["index_seconds"], 2),
                     "passages_per_s": round(len(store) / wall, 1), "steady_per_worker": rates["median_per_worker"],
                     "per_worker": rates["per_worker"], "shards": len(m["shards"]), "overhead_s": round(wall - rates["busiest_s"], 1),
                     "max_abs_diff_vs_local": float(np.abs(emb - ref).max())})
        assert rows[-1]["max_abs_diff_vs_local"] < 1e-5, rows[-1]
    rows[0]["hnsw32_add_per_s_1thread"] = round(hnsw_rate(ref))
    return rows


def hnsw_rate(emb: np.ndarray, n: int = 20_000, seed: int = 0) -> float:
    """HNSW32 (efConstruction 200) vectors added per second on one thread, over n vectors near the real ones."""
    import faiss

    rng = np.random.default_rng(seed)
    x = emb[rng.integers(0, len(emb), n)] + rng.normal(0, 0.02, (n, emb.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    faiss.omp_set_num_threads(1)
    index = faiss.index_factory(emb.shape[1], "HNSW32", faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    t = time.perf_counter()
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    return n / (time.perf_counter() - t)


def bench_link(store, lexicon: Path, tmp: Path, ray_engines: dict, shards: int) -> tuple[list[dict], dict]:
    from rag.entities.lexicon import Lexicon
    from rag.entities.linkers import LexiconLinker
    from rag.entities.postings import build_postings

    t = time.perf_counter()
    linker = LexiconLinker(Lexicon.load(lexicon))
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    linker.automaton
    automaton_s = time.perf_counter() - t
    rows = []
    t = time.perf_counter()
    local = build_postings(store, linker, tmp / "link-local", workers=os.cpu_count())
    wall = time.perf_counter() - t
    rows.append({"stage": "link", "engine": "local", "workers": local.manifest["workers"], "threads_per_worker": 1, "wall_s": round(wall, 1),
                 "passages_per_s": round(len(store) / wall), "steady_per_worker": None})
    files = ("indptr.npy", "docs.npy", "entities.txt", "doc_ids.txt")
    for name, engine in ray_engines.items():
        from dataclasses import replace

        engine = replace(engine, shards=shards)
        t = time.perf_counter()
        p = build_postings(store, LexiconLinker(linker.lexicon), tmp / f"link-{name}", engine=engine)
        wall = time.perf_counter() - t
        same = all((local.folder / f).read_bytes() == (p.folder / f).read_bytes() for f in files)
        assert same, f"{name}: postings differ from the local engine's"
        rates = per_worker_rates(p.manifest["shards"], lambda r: r["stop"] - r["start"])
        rows.append({"stage": "link", "engine": "ray", "workers": engine.workers, "threads_per_worker": 1, "wall_s": round(wall, 1),
                     "passages_per_s": round(len(store) / wall), "steady_per_worker": rates["median_per_worker"],
                     "per_worker": rates["per_worker"], "shards": shards, "identical_to_local": same,
                     "overhead_s": round(wall - rates["busiest_s"], 1)})
    return rows, {"lexicon_load_s": round(load_s, 1), "automaton_build_s": round(automaton_s, 1),
                  "n_forms": len(linker.lexicon.forms)}


def estimate(dense_rate: float, link_rate: float, hnsw: float) -> list[dict]:
    """Hours for the DPR Wikipedia with N one-core workers at the measured steady per-worker rates (linear in N:
    the shards share nothing but the input files; start-up, ~10-30 s per worker, is left out)."""
    out = []
    for n in (1, 16, 64, 256, 1024):
        out.append({
            "workers (1 core each)": n,
            "encode (MiniLM) h": round(DPR_PASSAGES / (dense_rate * n) / 3600, 2),
            "index (HNSW32) h": round(DPR_PASSAGES / (hnsw * n) / 3600, 3),
            "link h": round(DPR_PASSAGES / (link_rate * n) / 3600, 3),
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=Path, default=REPO.parent / "main" / "indexes" / "wiki2021")
    ap.add_argument("--lexicon", type=Path, default=REPO.parent / "main" / "indexes" / "counts-nq-open-wiki2021" / "lexicon")
    ap.add_argument("--encode-passages", type=int, default=3000)
    ap.add_argument("--link-shards", type=int, default=8)
    ap.add_argument("--sections", default="dense,link")
    args = ap.parse_args()

    import ray

    from rag.corpus.store import PassageStore
    from rag.engine import EngineConfig

    sections = set(args.sections.split(","))
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    data: dict = {"machine": machine(), "cpus": os.cpu_count()}
    try:
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        data["ray_start_s"] = round(time.perf_counter() - t, 1)
        engines = {f"ray{w}": EngineConfig(kind="ray", workers=w) for w in (1, 2)}
        rows: list[dict] = []
        if "dense" in sections:
            small = subset_store(args.passages, args.encode_passages, tmp / "subset")
            dense_engines = {k: EngineConfig(kind="ray", workers=e.workers, shards=6) for k, e in engines.items()}
            rows += bench_dense(small, tmp, dense_engines)
        if "link" in sections:
            link_rows, data["linker"] = bench_link(PassageStore(args.passages), args.lexicon, tmp, engines, args.link_shards)
            rows += link_rows
        data["rows"] = rows
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    data["machine"]["load_average_after"] = os.getloadavg()
    data["total_s"] = round(time.perf_counter() - t0, 1)

    def get(stage, engine, workers):
        return next(r for r in rows if r["stage"] == stage and r["engine"] == engine and r["workers"] == workers)

    md = ["# Ray engine vs local engine on this machine\n",
          f"{os.cpu_count()} cores shared with other jobs (load average {data['machine']['load_average_1_5_15'][0]:.1f} before, "
          f"{data['machine']['load_average_after'][0]:.1f} after), so absolute rates are pessimistic and the 2-worker speed-up is "
          f"bounded by the cores actually free. Ray start-up (local instance): {data.get('ray_start_s')} s, not included below. "
          f"`eval/bench_ray.py`, {data['machine']['when']}.\n"]
    if rows:
        md.append(md_table(rows, ["stage", "engine", "workers", "threads_per_worker", "shards", "wall_s", "encode_s",
                                  "passages_per_s", "steady_per_worker", "overhead_s"]))
        md.append("\n`steady_per_worker`: a worker's passages over its busy seconds (start-up excluded); `overhead_s`: wall "
                  "time minus the busiest worker's busy time, i.e. Ray Data scheduling, each actor loading the encoder or "
                  "unpickling the lexicon and building its automaton (the driver alone takes "
                  f"{data.get('linker', {}).get('automaton_build_s')} s to build it), assembling the embeddings and merging "
                  "the postings: a fixed cost per run, small against a 21M-passage job. `encode_s` covers encoding only "
                  "(dense). Every ray run matched the local result: embeddings within 1e-5 (max |diff| in ray.json), "
                  "postings byte-identical.\n")
    if "dense" in sections and "link" in sections:
        d1, d2 = get("dense", "ray", 1), get("dense", "ray", 2)
        l1, l2 = get("link", "ray", 1), get("link", "ray", 2)
        one_core_dense = d2["steady_per_worker"]
        one_core_link = l2["steady_per_worker"]
        hnsw = get("dense", "local", 1)["hnsw32_add_per_s_1thread"]
        est = estimate(one_core_dense, one_core_link, hnsw)
        data["estimate"] = {"dpr_passages": DPR_PASSAGES, "one_core_encode_per_s": one_core_dense, "one_core_link_per_s": one_core_link,
                            "hnsw32_add_per_s_1thread": hnsw, "speedup_2w_over_1w": {"dense": round(d1["wall_s"] / d2["wall_s"], 2),
                            "link": round(l1["wall_s"] / l2["wall_s"], 2)}, "rows": est}
        md.append(f"\n## Estimate for the DPR Wikipedia ({DPR_PASSAGES:,} passages)\n\n"
                  f"From the steady rates of one-core workers here: MiniLM encoding {one_core_dense:g} passages/s per core, linking "
                  f"{one_core_link:,.0f} passages/s per core, HNSW32 insertion {hnsw:,.0f} vectors/s per thread (measured on 20k "
                  f"vectors; per-shard graphs of ~1M vectors insert a few times slower). A Flat index needs no build (adding is a "
                  f"copy). Shards share nothing but the input files, so time ≈ passages / (rate × workers) plus the fixed overhead "
                  f"above; the rates are this loaded machine's (2 shared cores, load average 5-7).\n\n")
        md.append(md_table(est, list(est[0])))
    write_results("ray", data, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
