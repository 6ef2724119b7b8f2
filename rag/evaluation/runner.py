"""Run an evaluation: the same questions closed-book and retrieval-augmented with each retriever, resumably.

Data flow per batch of `batch_size` questions (the resume granularity):
    closed-book   answer(reader, qs, None)                         -> score -> append + fsync
    per retriever search_batch(qs, depth) -> passages -> first_hit  -> answer(reader, qs, top-k) -> score -> append + fsync
`depth` = max(k, recall_ks): one retrieval serves both reading and every recall@k.

Run folder (cfg.run_dir):
    config.yaml      the resolved configuration (preset + overrides)
    manifest.json    kind "run/eval": code version, reader, index / counts / QA fingerprints, seed, identity
    selection.json   the evaluated question ids and, per bucket, population and sample size
    records.jsonl    per (question, mode) results (rag.evaluation.records)
    timing.json      wall time and peak memory by stage, per session (rag.evaluation.timing)
    summary.csv, summary.md, adaptive.json, plots/*.png   written by rag.evaluation.report

Rerunning the same command resumes: finished (question, mode) records are kept and never recomputed; the
run refuses to continue if anything that changes a record (QA file, counts, reader, k, depth, index) differs.
The sample size and the list of retrievers may change between sessions (a larger per-bucket sample is a
superset of a smaller one, and a new retriever only adds its own records).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.artifacts import MANIFEST, quick_fingerprint, read_manifest, write_json_atomic, write_manifest
from rag.buckets import Buckets
from rag.counts import CountsTable
from rag.errors import ArtifactError, BadInputError
from rag.evaluation.config import EvalConfig, to_dict
from rag.evaluation.generation import LocalGenerator, RayGenerator, open_reader
from rag.evaluation.records import RECORDS, RecordStore
from rag.evaluation.run_folder import FORMAT, KIND
from rag.evaluation.sampling import stratified_sample
from rag.evaluation.timing import StageTimer, TimedReader
from rag.qa import load_questions, qa_fingerprint
from rag.regex_golds import is_regex
from rag.types import Passage, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.readers.base import Reader
    from rag.retrievers.base import Retriever
    from rag.tokenize import DocFreq

log = logging.getLogger(__name__)

CLOSED = "closed"


def rag_mode(name: str) -> str:
    return f"rag:{name}"


@dataclass
class RunResult:
    folder: Path
    n_questions: int
    computed: dict[str, int] = field(default_factory=dict)  # mode -> records computed in this session
    reused: int = 0  # records found finished from an earlier session
    reader_prompts: int = 0  # prompts sent to the reader in this session


def code_version() -> dict:
    """The git commit of the rag source tree (and whether it had uncommitted changes), else the package version."""
    from rag.artifacts import library_versions

    root = Path(__file__).resolve().parents[2]
    out = {"rag": library_versions()["rag"]}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "rag"],
                capture_output=True, text=True, timeout=10,
            )
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):  # pragma: no cover - no git on the machine
        pass
    return out


def _index_fingerprint(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()[:32]


TRANSPORT_OPTIONS = ("base_url", "api_key_env", "max_concurrency", "timeout", "max_retries", "backoff")


def _comparable(identity: dict) -> dict:
    """A run identity without a model server's transport settings (where it is, how hard to retry), which are
    recorded in the manifest but may change between sessions of one run; the model name stays."""
    opts = identity.get("reader", {}).get("options")
    if not opts:
        return identity
    reader = {**identity["reader"], "options": {k: v for k, v in opts.items() if k not in TRANSPORT_OPTIONS}}
    return {**identity, "reader": reader}


def _reader_identity(cfg: EvalConfig) -> dict:
    r = to_dict(cfg)["reader"]
    # settings that change speed but not answers are left out, so a resumed run may change them
    for k in ("batch_size", "device", "n_threads"):
        r.pop(k, None)

    model = Path(cfg.reader.model)
    if model.is_file():
        r["model_fingerprint"] = quick_fingerprint(model)
    if cfg.reader.demos is not None:
        r["demos_fingerprint"] = qa_fingerprint(Path(cfg.reader.demos))
        r["demos_seed"] = cfg.seed
    return r


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


@dataclass
class Prepared:
    """Everything checked before a model or index is opened."""

    cfg: EvalConfig
    questions: list[Question]  # selected, in file order
    all_questions: list[Question]
    counts: CountsTable
    count_of: dict[str, int | None]
    bucket_of: dict[str, str]
    sample: dict  # bucket -> {population, sampled, fraction}
    index_manifests: dict[str, dict]  # retriever name -> its index manifest
    identity: dict
    modes: dict[str, dict]  # mode -> identity of that mode


def prepare(cfg: EvalConfig) -> Prepared:
    """Read and check the inputs (QA file, counts, index manifests) and draw the sample; loads no model."""
    from rag.readers import READERS

    READERS.get(cfg.reader.backend)
    qa_path = Path(cfg.qa.path)
    if not qa_path.exists():
        raise BadInputError(f"QA file {qa_path} does not exist (qa.path in the config)")
    counts = CountsTable.open(cfg.counts)
    index_manifests = {}
    for r in cfg.retrievers:
        if not Path(r.index).exists():
            raise ArtifactError(
                f"index {r.index} (retriever {r.name!r}) does not exist; build it first, e.g. "
                f"`rag index build --passages indexes/wiki-both --kind {r.name if r.name in ('bm25', 'dense') else 'bm25'} "
                f"--out {r.index}` (README, section Evaluation), or leave it out with --retriever"
            )
        index_manifests[r.name] = read_manifest(r.index, kind="index/")
    all_questions = load_questions(qa_path, cfg.qa.format, limit=cfg.qa.limit, match_type=cfg.qa.match_type)
    counts.check_matches(all_questions, qa_path)
    if cfg.count_method is not None:  # the population is the questions counted this way
        all_questions = [q for q in all_questions if counts.method_of(q.qid) == cfg.count_method]
        if not all_questions:
            raise BadInputError(f"no question of {qa_path} was counted by {cfg.count_method!r} in {cfg.counts}")

    count_of = {q.qid: counts.count_of(q.qid) for q in all_questions}
    labels = Buckets(tuple(cfg.buckets)).assign([count_of[q.qid] for q in all_questions])
    bucket_of = {q.qid: b for q, b in zip(all_questions, labels)}
    qids, info = stratified_sample([q.qid for q in all_questions], labels, cfg.per_bucket, cfg.seed)
    chosen = set(qids)
    questions = [q for q in all_questions if q.qid in chosen]
    sample = {b: {"population": i.population, "sampled": i.sampled, "fraction": i.fraction} for b, i in info.items()}

    identity = {
        "qa": {"fingerprint": qa_fingerprint(qa_path), "format": cfg.qa.format},
        "counts": counts.fingerprint,
        "reader": _reader_identity(cfg),
        "k": cfg.k,
        "depth": cfg.depth,
    }
    if cfg.count_method is not None:  # recorded only when set, so earlier runs still resume
        identity["count_method"] = cfg.count_method
    if any(is_regex(q) for q in all_questions):
        # regex golds score differently; recorded only then, so runs made before the setting existed still resume
        identity["qa"]["match_type"] = "regex"
    modes = {CLOSED: {}}
    for r in cfg.retrievers:
        modes[rag_mode(r.name)] = {"index": _index_fingerprint(Path(r.index)), "search": dict(r.search)}
    return Prepared(cfg, questions, all_questions, counts, count_of, bucket_of, sample, index_manifests, identity, modes)


def _open_folder(p: Prepared, overwrite: bool) -> tuple[Path, dict]:
    """Create or reopen the run folder; refuse a folder holding a different run. Returns (folder, old manifest)."""
    out = p.cfg.run_dir
    if out.exists() and overwrite:
        if (out / MANIFEST).exists() or (out / RECORDS).exists() or not any(out.iterdir()):
            shutil.rmtree(out)
        else:
            raise BadInputError(f"{out} exists and is not a run folder; refusing to delete it (choose another --out)")
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).exists():
            if (out / RECORDS).exists():
                raise ArtifactError(f"{out} has records but no {MANIFEST}; pass --overwrite to start afresh")
            raise BadInputError(f"{out} exists and is not a run folder; choose another --out")
        old = read_manifest(out, kind=KIND, format=FORMAT)
        diff = _diff(_comparable(old.get("identity", {})), _comparable(p.identity))
        for mode, ident in p.modes.items():
            if mode in old.get("modes", {}):
                diff += [f"{mode}.{d}" for d in _diff(old["modes"][mode], ident)]
        if diff:
            raise BadInputError(
                f"{out} holds a run with different settings ({', '.join(diff)}); resuming would mix results. "
                f"Pass --overwrite to start afresh, or --out NEW_FOLDER"
            )
        return out, old
    out.mkdir(parents=True, exist_ok=True)
    return out, {}


def _write_start(folder: Path, p: Prepared, old: dict, reader_info: dict | None = None, status: str = "running") -> None:
    import yaml

    cfg = p.cfg
    (folder / ".config.yaml.tmp").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    (folder / ".config.yaml.tmp").replace(folder / "config.yaml")
    write_json_atomic(
        folder / "selection.json",
        {"seed": cfg.seed, "per_bucket": cfg.per_bucket, "limit": cfg.qa.limit, "buckets": list(cfg.buckets),
         "sample": p.sample, "qids": [q.qid for q in p.questions],
         # every question's count (null: unlinked), so a report can re-bucket the population with other edges
         "population_counts": [p.count_of[q.qid] for q in p.all_questions],
         # and how each was counted (entity / surface / none / external), for the report's split
         "population_methods": [p.counts.method_of(q.qid) for q in p.all_questions]},
    )
    modes = {**old.get("modes", {}), **p.modes}
    indexes = {**old.get("indexes", {})}
    for r in cfg.retrievers:
        m = p.index_manifests[r.name]
        indexes[r.name] = {
            "path": str(r.index), "kind": m.get("kind"), "fingerprint": p.modes[rag_mode(r.name)]["index"],
            "passages": m.get("passages"),
        }
    write_manifest(
        folder,
        kind=KIND,
        format=FORMAT,
        libraries=("numpy", "pyarrow"),
        name=cfg.name,
        status=status,
        code=code_version(),
        seed=cfg.seed,
        qa={"path": str(cfg.qa.path), "fingerprint": p.identity["qa"]["fingerprint"], "n_questions": len(p.all_questions)},
        counts={"path": str(cfg.counts), "fingerprint": p.counts.fingerprint, "kind": p.counts.manifest.get("kind")},
        reader={**p.identity["reader"], **(reader_info or old.get("reader_info") or {})},
        reader_info=reader_info or old.get("reader_info") or {},
        indexes=indexes,
        identity=p.identity,
        modes=modes,
        n_selected=len(p.questions),
    )


def _first_hit(answers: Sequence[str], passages: Sequence[Passage], ks: Sequence[int], regex: bool = False) -> int | None:
    """1-based rank of the first passage whose text holds a gold answer (DPR has_answer; `regex`: its regex mode), or None.

    Checked in slices [1..k1], (k1..k2], ... so questions answered early skip tokenizing the deep passages.
    """
    from rag.metrics import has_answer_batch

    if not answers:
        return None
    start = 0
    for k in sorted(set(ks)):
        chunk = passages[start:k]
        if chunk:
            hits = has_answer_batch(answers, [p.text for p in chunk], regex=regex)
            for i, h in enumerate(hits):
                if h:
                    return start + i + 1
        start = k
        if start >= len(passages):
            break
    return None


def _base(q: Question, p: Prepared, mode: str) -> dict:
    return {
        "qid": q.qid,
        "mode": mode,
        "question": q.question,
        "answers": list(q.answers),
        "count": p.count_of[q.qid],
        "status": p.counts.status.get(q.qid, "ok" if p.count_of[q.qid] is not None else "unlinked"),
        "count_method": p.counts.method_of(q.qid),
    }


def run_eval(
    cfg: EvalConfig,
    overwrite: bool = False,
    progress: bool = True,
    reader: "Reader | None" = None,
    report: bool = True,
) -> RunResult:
    """Run (or resume) the evaluation described by `cfg`; `reader` replaces loading cfg.reader (tests)."""
    timer = StageTimer()
    with timer.stage("load"):
        p = prepare(cfg)
        folder, old = _open_folder(p, overwrite)
        store = RecordStore(folder / RECORDS)
        done = store.load()
    result = RunResult(folder, len(p.questions))
    modes = [CLOSED, *(rag_mode(r.name) for r in cfg.retrievers)]
    pending_q = [q for q in p.questions if any((q.qid, m) not in done for m in modes)]
    result.reused = sum(1 for q in p.questions for m in modes if (q.qid, m) in done)
    _write_start(folder, p, old)
    log.info("%s: %d questions selected, %d records already done, %d questions to run", folder, len(p.questions), result.reused, len(pending_q))

    from rag.engine import engine_session

    timed = None
    try:
        if pending_q:
            with engine_session(cfg.engine):
                timed = _run_pending(p, folder, store, done, pending_q, timer, result, reader, progress)
                timed.close(owned=reader is None)
    except BaseException:
        # a session's timing is kept even when it is interrupted (Ctrl-C), so a resumed run shows each part
        timer.write(folder / "timing.json", _session_extra(result, pending_q, interrupted=True))
        raise
    final = RecordStore(folder / RECORDS).load(repair=False)
    n_done = sum(1 for q in p.questions for m in modes if (q.qid, m) in final)
    _write_start(folder, p, old, reader_info=getattr(timed, "info", None),
                 status="complete" if n_done >= len(p.questions) * len(modes) else "partial")
    if report:
        from rag.evaluation.report import render

        with timer.stage("report"):
            render(folder)
    timer.write(folder / "timing.json", _session_extra(result, pending_q, interrupted=False))
    return result


def _session_extra(result: RunResult, pending_q: list, interrupted: bool) -> dict:
    return {"interrupted": interrupted, "questions_run": len(pending_q), "records_computed": dict(result.computed),
            "reader_prompts": result.reader_prompts}


def _run_pending(p: Prepared, folder: Path, store: RecordStore, done: dict, pending_q: list[Question], timer: StageTimer,
                 result: RunResult, reader: "Reader | None", progress: bool):
    from rag.metrics import score_answer
    from rag.readers import default_format, draw_demos
    from rag.readers.prompts import BUILTIN_DEMOS, FORMATS
    from rag.retrievers import load_index

    cfg = p.cfg
    with timer.stage("load"):
        timed = None
        if not cfg.engine.is_ray:  # on ray the reader actors load the model; this process needs none
            inner = reader if reader is not None else open_reader(cfg)
            timed = TimedReader(inner, timer)
            timed.info = {"name": inner.name, "n_ctx": inner.n_ctx, "n_params": inner.n_params, "class": type(inner).__name__}
        fmt = FORMATS.get(cfg.reader.prompt_format or default_format(cfg.reader.model))
        retrievers: dict[str, "Retriever"] = {}
        for r in cfg.retrievers:
            if any((q.qid, rag_mode(r.name)) not in done for q in pending_q):
                retrievers[r.name] = load_index(r.index, passages=r.passages).configure(**r.search)
        if cfg.reader.demos is not None:
            pool = load_questions(cfg.reader.demos)
            first = next(iter(retrievers.values()), None) if cfg.retrievers else None
            if first is None and cfg.retrievers:
                r0 = cfg.retrievers[0]
                first = load_index(r0.index, passages=r0.passages).configure(**r0.search)
            demos = draw_demos(pool, cfg.reader.shots, seed=cfg.seed, exclude=p.all_questions, retriever=first)
        else:
            if cfg.reader.shots > len(BUILTIN_DEMOS):
                raise BadInputError(f"there are {len(BUILTIN_DEMOS)} built-in demonstrations; for reader.shots "
                                    f"{cfg.reader.shots} set reader.demos to a QA file to draw them from")
            demos = list(BUILTIN_DEMOS[: cfg.reader.shots])

        n_sentences = cfg.reader.sentences
        if n_sentences is not None:  # demonstrations show their own passage the way the questions' are shown
            from rag.readers.compress import select_batch, select_demos

            stats = _sentence_stats(cfg, retrievers)
            demos = select_demos(demos, n_sentences, stats)

    gen = _generator(cfg, timed, reader, demos, fmt, timer)

    def write(recs: list[dict], mode: str) -> None:
        with timer.stage("writing", items=len(recs)):
            store.append(recs)
        result.computed[mode] = result.computed.get(mode, 0) + len(recs)

    def jobs_of(chunk: list[Question]) -> list[tuple]:
        """(mode, questions, passages per question, first hits) to read for one batch, closed-book first."""
        jobs = []
        todo = [q for q in chunk if (q.qid, CLOSED) not in done]
        if todo:
            jobs.append((CLOSED, todo, None, None))
        for name, retriever in retrievers.items():
            mode = rag_mode(name)
            todo = [q for q in chunk if (q.qid, mode) not in done]
            if not todo:
                continue
            with timer.stage("retrieval", items=len(todo)):
                hits = retriever.search_batch([q.question for q in todo], cfg.depth)
                # one store read for the whole batch, split back per question
                flat = retriever.passages([h for hs in hits for h in hs])
                per_q, at = [], 0
                for hs in hits:
                    per_q.append(flat[at : at + len(hs)])
                    at += len(hs)
            with timer.stage("scoring", items=len(todo)):
                first = [_first_hit(q.answers, ps, cfg.recall_ks, regex=is_regex(q)) for q, ps in zip(todo, per_q)]
            jobs.append((mode, todo, per_q, first))
        return jobs

    def record(mode: str, todo: list[Question], per_q, first, preds) -> list[dict]:
        recs = []
        for i, (q, pr) in enumerate(zip(todo, preds)):
            s = score_answer(pr.answer, q.answers, regex=is_regex(q))
            rec = {**_base(q, p, mode), "prediction": pr.answer, "em": s.em, "f1": s.f1, "contains": s.contains,
                   "prompt_tokens": pr.prompt_tokens, "new_tokens": pr.new_tokens}
            if per_q is not None:
                ps = per_q[i]
                rec.update({"passages_dropped": pr.passages_dropped, "passages_truncated": pr.passages_truncated,
                            "pids": list(pr.passages), "retrieved": [x.pid for x in ps[: cfg.k]],
                            "first_hit": first[i], "depth": len(ps)})
            recs.append(rec)
        return recs

    from tqdm import tqdm

    bar = tqdm(total=len(pending_q), desc=f"eval {cfg.name}", unit="q", file=sys.stderr, disable=not progress)
    # a window of batches is prepared (retrieval) and handed to the generator together: one batch locally, enough
    # to keep every Ray reader actor busy otherwise; records are still written batch by batch, in order
    window = cfg.batch_size * gen.parallelism
    try:
        for wstart in range(0, len(pending_q), window):
            chunks = [pending_q[s : s + cfg.batch_size] for s in range(wstart, min(wstart + window, len(pending_q)), cfg.batch_size)]
            jobs = [j for c in chunks for j in jobs_of(c)]
            reads = []
            for _, todo, per_q, _ in jobs:
                top = None if per_q is None else [ps[: cfg.k] for ps in per_q]
                if top is not None and n_sentences is not None:
                    with timer.stage("compression", items=len(todo)):
                        top = select_batch([q.question for q in todo], top, n_sentences, stats)
                reads.append((todo, top))
            preds_iter = gen.map(reads)
            for (mode, todo, per_q, first), preds in zip(jobs, preds_iter):
                result.reader_prompts += len(todo)
                with timer.stage("scoring", items=len(todo)):
                    recs = record(mode, todo, per_q, first, preds)
                write(recs, mode)
            bar.update(sum(len(c) for c in chunks))
    except BaseException:
        gen.close(owned=reader is None)  # free the model / the reader actors; the records written so far stay
        raise
    finally:
        bar.close()
    return gen


def _sentence_stats(cfg: EvalConfig, retrievers: dict) -> "DocFreq | None":
    """Corpus statistics for sentence selection (reader.sentences): from the first BM25 index of the run, or a
    hybrid's BM25 member; a BM25 index this session did not need is opened for them (cheap: memory-mapped), a
    dense or hybrid one is not. None: weights are counted over the candidate sentences."""
    from rag.retrievers import load_index

    for r in cfg.retrievers:
        index = retrievers.get(r.name)
        if index is None and read_manifest(r.index).get("kind") == "index/bm25":
            index = load_index(r.index, passages=r.passages)
        df = index.doc_freq() if index is not None else None
        if df is not None:
            return df
    return None


def _generator(cfg: EvalConfig, timed: TimedReader, reader: "Reader | None", demos, fmt, timer: StageTimer):
    """Local: the run's reader in this process. Ray: reader actors (the given test reader, pickled, or cfg.reader)."""
    if not cfg.engine.is_ray:
        return LocalGenerator(timed, demos, fmt, cfg, timer)
    return RayGenerator(cfg.engine, cfg, reader, demos, fmt, timer)
