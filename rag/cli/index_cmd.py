"""`rag index build` and `rag index info`: build an index folder over a passage store, or inspect one."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from rag.cli.engine_opts import engine_options
from rag.encoders import PRECISIONS
from rag.errors import ArtifactError, BadInputError
from rag.retrievers import INDEXES
from rag.retrievers.bm25 import DEFAULTS as BM25_DEFAULTS
from rag.retrievers.bm25 import ENGINES, VARIANTS
from rag.retrievers.dense import DEFAULTS as DENSE_DEFAULTS
from rag.retrievers.hybrid import DEFAULTS as HYBRID_DEFAULTS

# (flag, build parameter, click type, help, kinds to name in --help when that kind is not registered).
# Which kinds accept an option is decided by each index class's BUILD_OPTIONS; the last field only documents
# kinds whose module failed to register (e.g. a partial install).
BUILD_FLAGS = [
    ("--engine", "engine", click.Choice(list(ENGINES)),
     f"BM25 engine: bm25s (fast, default) or rank-bm25 (the rank_bm25 reference; slow, okapi variant only). "
     f"Default {BM25_DEFAULTS['engine']}.", "bm25"),
    ("--k1", "k1", float, f"BM25 term-frequency saturation k1 >= 0. Default {BM25_DEFAULTS['k1']} (Anserini).", "bm25"),
    ("--b", "b", float, f"BM25 length normalisation b in [0, 1]. Default {BM25_DEFAULTS['b']} (Anserini).", "bm25"),
    ("--variant", "variant", click.Choice(list(VARIANTS)),
     f"BM25 scoring formula (Kamphuis et al. 2020); okapi = rank_bm25's BM25Okapi with idf floored at 0. "
     f"Default {BM25_DEFAULTS['variant']}.", "bm25"),
    ("--encoder", "encoder", str,
     f"Encoder spec: a sentence-transformers model name or folder, 'sentence-transformers:PATH', or 'hash:DIM' "
     f"(a model-free test encoder). Default {DENSE_DEFAULTS['encoder']} (loaded offline from its PyPI wheel).", "dense"),
    ("--factory", "factory", str,
     f"FAISS index_factory string: Flat (exact), HNSW32, IVF1024,Flat, IVF1024,PQ32 ... Default {DENSE_DEFAULTS['factory']}.", "dense"),
    ("--batch-size", "batch_size", int, "Passages per encoder batch (default: the encoder's).", "dense"),
    ("--device", "device", str, f"torch device for the encoder: auto, cpu, cuda, cuda:1, mps. Default {DENSE_DEFAULTS['device']}.", "dense"),
    ("--train-sample", "train_sample", int, "Vectors sampled to train IVF/PQ indexes (default 40 per list, at least 50k).", "dense"),
    ("--chunk-size", "chunk_size", int,
     f"Passages encoded and added per chunk; bounds memory, and an interrupted build resumes per chunk. "
     f"Default {DENSE_DEFAULTS['chunk_size']}.", "dense"),
    ("--ef-construction", "ef_construction", int,
     f"HNSW build-time candidate list (higher = better graph, slower build). Default {DENSE_DEFAULTS['ef_construction']}.", "dense"),
    ("--precision", "precision", click.Choice(["auto", *PRECISIONS]),
     "Encoder arithmetic: auto (default: bf16 where this CPU's or GPU's bf16 matmuls measure faster, else fp32), "
     "fp32 (reproduces sentence-transformers exactly), bf16 (cosine >= 0.999 to fp32), fp16 (CUDA only). "
     "Vectors are stored as float32 either way; queries may use another precision.", "dense"),
    ("--compile/--no-compile", "compile", bool,
     "Run the encoder through torch.compile: ~40 s of start-up that pays off on builds of 100k+ passages.", "dense"),
    ("--max-seq-length", "max_seq_length", int, "Encoder tokens kept per passage (default: the model's limit).", "dense"),
    ("--seed", "seed", int, f"Seed of the IVF/PQ training sample. Default {DENSE_DEFAULTS['seed']}.", "dense"),
    ("--embeddings-from", "embeddings_from", click.Path(path_type=Path),
     "Reuse the vectors of this dense index (same passages, same encoder) instead of encoding again, "
     "e.g. to try another --factory.", "dense"),
    ("--members", "members", str, "Comma-separated member index folders to fuse, e.g. indexes/bm25,indexes/dense; "
     "all must be built over the same --passages.", "hybrid"),
    ("--rrf-k", "rrf_k", float, f"Reciprocal-rank-fusion constant: score = sum w/(rrf_k + rank). Default {HYBRID_DEFAULTS['rrf_k']:g}.", "hybrid"),
    ("--weights", "weights", str, "Comma-separated member weights, one per member (default all 1).", "hybrid"),
    ("--fusion-depth", "fusion_depth", int, f"Hits fetched from each member before fusing: max(k, this). Default {HYBRID_DEFAULTS['fusion_depth']}.", "hybrid"),
]


def _kinds_taking(param: str, fallback: str) -> str:
    kinds = [k for k, cls in sorted(INDEXES.items()) if param in getattr(cls, "BUILD_OPTIONS", ())]
    return ", ".join(kinds) or fallback


def _build_options(f):
    for flag, param, typ, help_, fallback in reversed(BUILD_FLAGS):
        f = click.option(flag, param, type=typ, default=None, help=f"[{_kinds_taking(param, fallback)}] {help_}")(f)
    return f


@click.group()
def index() -> None:
    """Build and inspect retrieval indexes (BM25, dense, hybrid) over a passage store."""


@index.command("build")
@click.option("--passages", required=True, type=click.Path(path_type=Path),
              help="Passage store folder to index (made by `rag corpus build`).")
@click.option("--kind", required=True, type=click.Choice(sorted(INDEXES)),
              help="Index kind: bm25 (lexical), dense (sentence embeddings + FAISS), hybrid (rank fusion of built indexes).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Index folder to create, e.g. indexes/bm25-wiki. Written atomically: it appears only when complete.")
@_build_options
@click.option("--overwrite", is_flag=True, help="Replace --out if it already exists.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr (on a terminal; elsewhere, and with --no-progress, one log line per stage).")
@engine_options()
def build(passages: Path, kind: str, out: Path, overwrite: bool, progress: bool, exec_engine, **options) -> None:
    """Index the passages in --passages as --kind into the folder --out.

    Options in [brackets] apply only to the kinds named there; giving one to another kind is an error.

    \b
    Examples:
      rag index build --passages indexes/wiki-passages --kind bm25 --out indexes/bm25
      rag index build --passages indexes/wiki-passages --kind hybrid \\
          --members indexes/bm25,indexes/dense --out indexes/hybrid
      rag index build --passages indexes/wiki --kind dense --exec-engine ray --ray-address head:6379 --out indexes/wiki-dense

    [dense] --exec-engine ray or --shards N encode and index row-range shards in parallel (resumable per shard;
    the index is searched shard by shard and merged).
    """
    from rag.corpus.store import PassageStore

    cls = INDEXES.get(kind)
    given = {name: value for name, value in options.items() if value is not None}
    flags = {param: flag for flag, param, *_ in BUILD_FLAGS}
    wrong = [flags[name] for name in given if name not in cls.BUILD_OPTIONS]
    if wrong:
        takes = ", ".join(flags[o] for o in cls.BUILD_OPTIONS if o in flags) or "no kind-specific options"
        raise BadInputError(f"{', '.join(wrong)} does not apply to --kind {kind} (it takes: {takes})")
    if exec_engine.sharded:
        if kind != "dense":
            raise BadInputError(f"--exec-engine ray / --shards apply to --kind dense (a {kind} index is built here)")
        given["engine"] = exec_engine  # dense takes no BM25 --engine (refused above), so the name is free
    from rag.progress import draw_bars, stage

    store = PassageStore(passages)
    t0 = time.perf_counter()
    # bars where the builder draws them (a terminal); elsewhere its stages log started / done lines, and so does this
    with stage(f"index build ({kind})", f"{len(store):,} passages -> {out}"):
        path = cls.build(store, out, overwrite=overwrite, progress=draw_bars(progress), **given)
    click.echo(f"built {kind} index {path} over {len(store):,} passages in {time.perf_counter() - t0:.1f} s")


@index.command("info")
@click.argument("path", type=click.Path(path_type=Path))
def info(path: Path) -> None:
    """Print an index folder's manifest, check its files, and check its passage store is present and unchanged."""
    from rag.artifacts import check_manifest_files, read_manifest
    from rag.retrievers.base import open_store_for

    manifest = read_manifest(path, kind="index/")
    click.echo(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))
    files = manifest.get("files", {})
    check_manifest_files(path, manifest)
    click.echo(f"files: {len(files)} present with the recorded sizes ({sum(files.values()) / 2**20:.1f} MiB)")
    try:
        store = open_store_for(path, manifest, None)
        click.echo(f"passages: {store.folder} ({len(store):,} passages, fingerprint matches)")
    except ArtifactError as e:
        click.echo(f"warning: passages: {e}", err=True)
