"""Run an evaluation: the same questions closed-book and retrieval-augmented with each retriever, resumably.

Data flow per batch of `batch_size` questions (the resume granularity), through one rag.pipeline.Pipeline:
    closed-book   pipeline.read(qs, None)                                          -> score -> append + fsync
    per retriever retrieve(r, qs, depth) -> first_hit -> pipeline.show (top-k, sentences) -> read -> score -> append
`depth` = max(k, recall_ks): one retrieval serves both reading and every recall@k.

The run folder (layout, identity, resume) is rag.evaluation.run_folder; records are rag.evaluation.records.
Rerunning the same command resumes: finished (question, mode) records are kept and never recomputed; the run
refuses to continue if anything that changes a record (QA file, counts, reader, k, depth, index) differs.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.artifacts import read_manifest
from rag.buckets import Buckets
from rag.counts import CountsTable
from rag.errors import ArtifactError, BadInputError
from rag.evaluation.blind import BLIND, BlindSet
from rag.evaluation.config import EvalConfig
from rag.evaluation.generation import LocalGenerator, RayGenerator
from rag.evaluation.records import CLOSED, EvalRecord, rag_mode
from rag.evaluation.run_folder import RunFolder, Selection, mode_identities, run_identity
from rag.evaluation.sampling import stratified_sample
from rag.evaluation.timing import StageTimer, TimedReader
from rag.progress import bar as progress_bar
from rag.progress import note, stage
from rag.qa import load_questions, qa_fingerprint
from rag.regex_golds import is_regex
from rag.types import Passage, Question

if TYPE_CHECKING:  # pragma: no cover
    from rag.pipeline import Pipeline
    from rag.readers.base import Reader
    from rag.retrievers.base import Retriever
    from rag.tokenize import DocFreq
    from rag.types import Prediction

log = logging.getLogger(__name__)

__all__ = ["CLOSED", "Prepared", "RunResult", "prepare", "rag_mode", "run_eval"]


@dataclass
class RunResult:
    folder: Path
    n_questions: int
    computed: dict[str, int] = field(default_factory=dict)  # mode -> records computed in this session
    reused: int = 0  # records found finished from an earlier session
    reader_prompts: int = 0  # prompts sent to the reader in this session
    stopped_by_budget: bool = False  # a budgeted run stopped with questions left


@dataclass
class Prepared:
    """Everything checked before a model or index is opened."""

    cfg: EvalConfig
    questions: list[Question]  # selected, in file order
    all_questions: list[Question]
    counts: CountsTable
    count_of: dict[str, int | None]
    selection: Selection
    index_manifests: dict[str, dict]  # retriever name -> its index manifest
    identity: dict
    modes: dict[str, dict]  # mode -> identity of that mode
    backend_choice: dict | None = None  # how backend "auto" was resolved on this machine (rag.readers.auto.Choice)
    blind: BlindSet | None = None  # controls.subject_blind: the selected questions blinded (rag.evaluation.blind)
    store_mismatches: list[str] = field(default_factory=list)  # allowed by cfg.allow_store_mismatch (check_stores)

    def expected(self) -> list[tuple[str, str]]:
        """(qid, mode) records a complete run holds: every mode per question, the blind mode where blinded."""
        modes = [CLOSED, *(rag_mode(r.name) for r in self.cfg.retrievers)]
        keys = [(q.qid, m) for q in self.questions for m in modes]
        return keys + [(q.qid, BLIND) for q in self.questions if self.blind and q.qid in self.blind.questions]


def prepare(cfg: EvalConfig, sizes: dict[str, int] | None = None, plan: dict | None = None) -> Prepared:
    """Read and check the inputs (QA file, counts, index manifests) and draw the sample; loads no model.
    `sizes`: per-bucket sample sizes of a budget plan (`plan`, recorded in selection.json) instead of per_bucket."""
    from dataclasses import replace as _replace

    from rag.pipeline import resolve_backend
    from rag.readers import READERS

    # backend "auto" becomes this machine's choice before anything is compared: a resumed run whose resolved backend
    # or precision differs is refused like any other reader change
    reader_cfg, choice = resolve_backend(cfg.reader)
    cfg = _replace(cfg, reader=reader_cfg)
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
    store_mismatches = check_stores(cfg, counts.manifest, index_manifests)
    all_questions = load_questions(qa_path, cfg.qa.format, limit=cfg.qa.limit, match_type=cfg.qa.match_type)
    counts.check_matches(all_questions, qa_path)
    if cfg.count_method is not None:  # the population is the questions counted this way
        all_questions = [q for q in all_questions if counts.method_of(q.qid) == cfg.count_method]
        if not all_questions:
            raise BadInputError(f"no question of {qa_path} was counted by {cfg.count_method!r} in {cfg.counts}")

    count_of = {q.qid: counts.count_of(q.qid) for q in all_questions}
    labels = Buckets(tuple(cfg.buckets)).assign([count_of[q.qid] for q in all_questions])
    qids, info = stratified_sample([q.qid for q in all_questions], labels, cfg.per_bucket if sizes is None else sizes,
                                   cfg.seed)
    chosen = set(qids)
    questions = [q for q in all_questions if q.qid in chosen]
    selection = Selection(
        seed=cfg.seed, per_bucket=cfg.per_bucket if sizes is None else None, limit=cfg.qa.limit, buckets=tuple(cfg.buckets),
        sample={b: {"population": i.population, "sampled": i.sampled, "fraction": i.fraction} for b, i in info.items()},
        qids=tuple(q.qid for q in questions),
        population_counts=tuple(count_of[q.qid] for q in all_questions),
        population_methods=tuple(counts.method_of(q.qid) for q in all_questions),
        plan=plan,
    )
    identity = run_identity(cfg, qa_fingerprint(qa_path), counts.fingerprint, regex=any(is_regex(q) for q in all_questions))
    blind = None
    if cfg.controls.subject_blind:
        from rag.evaluation.blind import subject_mentions

        blind = BlindSet.of(questions, subject_mentions(cfg.counts), cfg.controls.placeholder)
    return Prepared(cfg, questions, all_questions, counts, count_of, selection, index_manifests, identity,
                    mode_identities(cfg), choice.as_dict() if choice is not None else None, blind,
                    store_mismatches)


def check_stores(cfg: EvalConfig, counts_manifest: dict, index_manifests: dict[str, dict]) -> list[str]:
    """Counts and indexes must come from one passage store (fingerprints in their manifests), else the buckets
    describe one corpus and the retrieval another. Refused unless cfg.allow_store_mismatch; returns the
    mismatches allowed that way (one line each), for the manifest and the summary."""
    have = (counts_manifest.get("passages") or {})
    out = []
    for r in cfg.retrievers:
        idx = index_manifests[r.name].get("passages") or {}
        if have.get("fingerprint") and idx.get("fingerprint") and have["fingerprint"] != idx["fingerprint"]:
            out.append(f"counts {cfg.counts} were built over passages {have.get('path')} (fingerprint "
                       f"{have['fingerprint']}) but index {r.index} (retriever {r.name!r}) over {idx.get('path')} "
                       f"(fingerprint {idx['fingerprint']})")
    if out and not cfg.allow_store_mismatch:
        raise ArtifactError(f"{out[0]}{f' (and {len(out) - 1} more)' if len(out) > 1 else ''}; rebuild one over the "
                            f"other's store, or pass --allow-store-mismatch (config: allow_store_mismatch: true) to run "
                            f"anyway, recorded in the run's manifest and summary")
    return out


def first_hit(answers: Sequence[str], passages: Sequence[Passage], ks: Sequence[int], regex: bool = False) -> int | None:
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


def make_record(p: Prepared, q: Question, mode: str, pred: "Prediction", retrieved: Sequence[Passage] | None = None,
                hit: int | None = None) -> EvalRecord:
    """Score one prediction into a record; `retrieved` (all `depth` passages) and `hit` for retrieval modes."""
    from rag.metrics import score_answer

    s = score_answer(pred.answer, q.answers, regex=is_regex(q))
    count = p.count_of[q.qid]
    rec = EvalRecord(
        qid=q.qid, mode=mode, question=q.question, answers=tuple(q.answers), count=count,
        status=p.counts.status.get(q.qid, "ok" if count is not None else "unlinked"),
        count_method=p.counts.method_of(q.qid), prediction=pred.answer, em=s.em, f1=s.f1, contains=s.contains,
        prompt_tokens=pred.prompt_tokens, new_tokens=pred.new_tokens, gold_answer=pred.gold_answer,
        gold_logprob=pred.gold_logprob, gold_tokens=pred.gold_tokens,
    )
    if retrieved is None:
        return rec
    from dataclasses import replace

    return replace(rec, passages_dropped=pred.passages_dropped, passages_truncated=pred.passages_truncated,
                   pids=tuple(pred.passages), retrieved=tuple(x.pid for x in retrieved[: p.cfg.k]), first_hit=hit,
                   depth=len(retrieved))


def run_eval(
    cfg: EvalConfig,
    overwrite: bool = False,
    progress: bool = True,
    reader: "Reader | None" = None,
    report: bool = True,
) -> RunResult:
    """Run (or resume) the evaluation described by `cfg`; `reader` replaces loading cfg.reader (tests)."""
    from rag.locks import writer_lock

    if cfg.budget is not None:
        return run_budgeted(cfg, overwrite=overwrite, progress=progress, reader=reader, report=report)
    timer = StageTimer()
    with timer.stage("load"):
        p = prepare(cfg)
    with writer_lock(cfg.run_dir):  # one writer per run folder: a second run of it is refused, naming this one
        return _run_locked(p, timer, overwrite, progress, reader, report)


def run_budgeted(cfg: EvalConfig, overwrite: bool = False, progress: bool = True, reader: "Reader | None" = None,
                 report: bool = True, clock=time.monotonic) -> RunResult:
    """cfg.budget: measure the cost per question on a pilot (the first question of each bucket in the seeded
    order, so it belongs to every plan), plan the per-bucket sizes that fit what is left of the budget, run them,
    and stop cleanly when the budget is spent (rerun with a larger budget to extend the same sample)."""
    from rag.evaluation import budget as bud
    from rag.evaluation.trends import bucket_centres
    from rag.locks import writer_lock

    start = clock()
    total = bud.parse_duration(cfg.budget)
    deadline = start + total
    with writer_lock(cfg.run_dir):
        timer = StageTimer()
        old = _recorded_plan(cfg.run_dir) if not overwrite else None
        cost = old["cost_per_question_s"] if old else None
        pilot = 1
        while cost is None:
            p = prepare(cfg, sizes=_every_bucket(cfg, pilot))
            pt = StageTimer()
            res = _run_locked(p, pt, overwrite, progress, reader, report=False)
            overwrite = False
            n = sum(res.computed.values()) / max(1, 1 + len(cfg.retrievers) + cfg.controls.subject_blind)
            if n > 0:  # the work of answering, without opening the model and indexes
                cost = sum(v.seconds for k, v in pt.stages.items() if k not in ("load", "report")) / n
            elif pilot > 50:
                raise BadInputError("budget: could not measure the reader's cost (no question left to run); pass per_bucket instead")
            pilot += 1
        probe = prepare(cfg, sizes=_every_bucket(cfg, 10**9))
        edges = Buckets(tuple(cfg.buckets))
        populations = {b: int(v["population"]) for b, v in probe.selection.sample.items()}
        centres = dict(zip(edges.labels, bucket_centres(edges.edges)))
        done = _finished_per_bucket(cfg, probe)
        left = max(0.0, deadline - clock())
        plan = bud.plan(populations, {b: centres.get(b) for b in populations}, cost, left, cfg.allocation, done=done)
        plan = bud.Plan(plan.per_bucket, cost, total, cfg.allocation)
        log.warning("%s", plan.describe())
        p = prepare(cfg, sizes=plan.per_bucket, plan=plan.as_dict())
        return _run_locked(p, timer, overwrite, progress, reader, report, deadline=deadline, clock=clock)


def _every_bucket(cfg: EvalConfig, n: int) -> dict:
    """{bucket: n} for every bucket label (the unlinked one too)."""
    return {b: n for b in Buckets(tuple(cfg.buckets)).all_labels}


def _recorded_plan(folder: Path) -> dict | None:
    import json

    try:
        return json.loads((Path(folder) / "selection.json").read_text(encoding="utf-8")).get("plan")
    except (OSError, ValueError):
        return None


def _finished_per_bucket(cfg: EvalConfig, p: Prepared) -> dict[str, int]:
    """Bucket -> questions of the population already answered in every mode of this run (they cost nothing)."""
    from rag.evaluation.records import RECORDS, RecordStore

    done = RecordStore(Path(cfg.run_dir) / RECORDS).load(repair=False)
    modes = [CLOSED, *(rag_mode(r.name) for r in cfg.retrievers)]
    labels = Buckets(tuple(cfg.buckets)).assign([p.count_of[q.qid] for q in p.all_questions])
    out: dict[str, int] = {}
    for q, b in zip(p.all_questions, labels):
        if all((q.qid, m) in done for m in modes):
            out[b] = out.get(b, 0) + 1
    return out


def _run_locked(p: Prepared, timer: StageTimer, overwrite: bool, progress: bool, reader: "Reader | None",
                report: bool, deadline: float | None = None, clock=time.monotonic) -> RunResult:
    cfg = p.cfg
    with timer.stage("load"):
        folder = RunFolder.open(cfg.run_dir, p.identity, p.modes, overwrite)
        done = folder.store.load()
    result = RunResult(folder.path, len(p.questions))
    expected = p.expected()
    pending_ids = {qid for qid, m in expected if (qid, m) not in done}
    pending_q = [q for q in p.questions if q.qid in pending_ids]
    result.reused = sum(1 for k in expected if k in done)
    _write_start(folder, p)
    if p.blind is not None:
        p.blind.write(folder.path)
    note("%s: %d questions selected, %d records already done, %d questions to run", folder.path, len(p.questions),
         result.reused, len(pending_q))

    from rag.engine import engine_session

    gen = None
    try:
        if pending_q:
            with engine_session(cfg.engine):
                gen = _run_pending(p, folder, done, pending_q, timer, result, reader, progress, deadline, clock)
                gen.close(owned=reader is None)
    except BaseException:
        # a session's timing is kept even when it is interrupted (Ctrl-C), so a resumed run shows each part
        timer.write(folder.path / "timing.json", _session_extra(result, pending_q, interrupted=True))
        raise
    final = folder.store.load(repair=False)
    n_done = sum(1 for k in expected if k in final)
    _write_start(folder, p, reader_info=getattr(gen, "info", None),
                 status="complete" if n_done >= len(expected) else "partial")
    if report:
        from rag.evaluation.report import render

        with timer.stage("report"), stage("report", str(folder.path)):
            render(folder.path)
    timer.write(folder.path / "timing.json", _session_extra(result, pending_q, interrupted=False))
    return result


def _write_start(folder: RunFolder, p: Prepared, reader_info: dict | None = None, status: str = "running") -> None:
    cfg = p.cfg
    folder.write_config(cfg)
    folder.write_selection(p.selection)
    counts = {"path": str(cfg.counts), "fingerprint": p.counts.fingerprint, "kind": p.counts.manifest.get("kind")}
    folder.write_manifest(cfg=cfg, identity=p.identity, modes=p.modes, index_manifests=p.index_manifests, counts=counts,
                          n_population=len(p.all_questions), n_selected=len(p.questions), reader_info=reader_info,
                          status=status, backend_choice=p.backend_choice, store_mismatches=p.store_mismatches)


def _session_extra(result: RunResult, pending_q: list, interrupted: bool) -> dict:
    return {"interrupted": interrupted, "questions_run": len(pending_q), "records_computed": dict(result.computed),
            "reader_prompts": result.reader_prompts}


def _open_pipeline(p: Prepared, retrievers: dict[str, "Retriever"], reader: "Reader | None", timer: StageTimer) -> "Pipeline":
    """The run's pipeline: its reader opened here (local engine; none on Ray, where the actors open theirs), the
    demonstrations drawn (each with a passage of the first retriever), sentence statistics from a BM25 index."""
    from rag.pipeline import Pipeline
    from rag.retrievers import load_index

    cfg = p.cfg
    demo_retriever = None
    if cfg.reader.demos is not None and cfg.retrievers:
        demo_retriever = next(iter(retrievers.values()), None)
        if demo_retriever is None:  # every retrieval record is done: open the first index for the demonstrations
            r0 = cfg.retrievers[0]
            demo_retriever = load_index(r0.index, passages=r0.passages).configure(**r0.search)
    doc_freq = _sentence_stats(cfg, retrievers) if cfg.reader.sentences is not None else None
    timed = None
    if not cfg.engine.is_ray:
        from rag.pipeline import open_reader

        inner = reader if reader is not None else open_reader(cfg.reader)
        timed = TimedReader(inner, timer)
    return Pipeline.open(cfg.reader, reader=timed, open_model=False, seed=cfg.seed, exclude=p.all_questions,
                         demo_retriever=demo_retriever, doc_freq=doc_freq, k=cfg.k)


def _run_pending(p: Prepared, folder: RunFolder, done: dict, pending_q: list[Question], timer: StageTimer,
                 result: RunResult, reader: "Reader | None", progress: bool, deadline: float | None = None,
                 clock=time.monotonic):
    from rag.pipeline import retrieve
    from rag.retrievers import load_index

    cfg = p.cfg
    with timer.stage("load"), stage("load", "indexes and reader"):
        retrievers: dict[str, "Retriever"] = {}
        for r in cfg.retrievers:
            if any((q.qid, rag_mode(r.name)) not in done for q in pending_q):
                retrievers[r.name] = load_index(r.index, passages=r.passages).configure(**r.search)
        pipeline = _open_pipeline(p, retrievers, reader, timer)
    gen = (LocalGenerator(pipeline, timer) if not cfg.engine.is_ray
           else RayGenerator(cfg.engine, cfg, reader, pipeline, timer))
    # recorded now, not only at the end: a session killed after its last record leaves nothing for the next one to
    # open the reader for, and the manifest would lose what read the answers
    _write_start(folder, p, reader_info=gen.info)

    def jobs_of(chunk: list[Question]) -> list[tuple]:
        """(mode, questions, retrieved passages per question, first hits) to read for one batch, closed-book first."""
        jobs = []
        todo = [q for q in chunk if (q.qid, CLOSED) not in done]
        if todo:
            jobs.append((CLOSED, todo, None, None))
        if p.blind is not None:  # the subject-blind control: closed-book on the blinded question
            todo = [p.blind.questions[q.qid] for q in chunk if q.qid in p.blind.questions and (q.qid, BLIND) not in done]
            if todo:
                jobs.append((BLIND, todo, None, None))
        for name, retriever in retrievers.items():
            mode = rag_mode(name)
            todo = [q for q in chunk if (q.qid, mode) not in done]
            if not todo:
                continue
            with timer.stage("retrieval", items=len(todo)):
                per_q = [r.passages for r in retrieve(retriever, [q.question for q in todo], cfg.depth)]
            with timer.stage("scoring", items=len(todo)):
                hits = [first_hit(q.answers, ps, cfg.recall_ks, regex=is_regex(q)) for q, ps in zip(todo, per_q)]
            jobs.append((mode, todo, per_q, hits))
        return jobs

    bar = progress_bar(f"eval {cfg.name}", total=len(pending_q), unit="question", enabled=progress)
    # a window of batches is prepared (retrieval) and handed to the generator together: one batch locally, enough
    # to keep every Ray reader actor busy otherwise; records are still written batch by batch, in order
    window = cfg.batch_size * gen.parallelism
    try:
        for wstart in range(0, len(pending_q), window):
            if deadline is not None and clock() >= deadline:
                log.warning("budget spent: %d of %d questions still to run; rerun with a larger --budget to extend "
                            "this sample (everything finished is kept)", len(pending_q) - wstart, len(pending_q))
                result.stopped_by_budget = True
                break
            chunks = [pending_q[s : s + cfg.batch_size] for s in range(wstart, min(wstart + window, len(pending_q)), cfg.batch_size)]
            jobs = [j for c in chunks for j in jobs_of(c)]
            reads = []
            for _, todo, per_q, _ in jobs:
                compressing = per_q is not None and cfg.reader.sentences is not None
                with timer.stage("compression", items=len(todo)) if compressing else nullcontext():
                    reads.append((todo, pipeline.show(todo, per_q)))
            for (mode, todo, per_q, hits), preds in zip(jobs, gen.map(reads)):
                result.reader_prompts += len(todo)
                with timer.stage("scoring", items=len(todo)):
                    recs = [make_record(p, q, mode, pr, None if per_q is None else per_q[i], None if hits is None else hits[i])
                            for i, (q, pr) in enumerate(zip(todo, preds))]
                with timer.stage("writing", items=len(recs)):
                    folder.store.append(recs)
                result.computed[mode] = result.computed.get(mode, 0) + len(recs)
            bar.update(sum(len(c) for c in chunks))
    except BaseException as e:
        bar.close(e)
        gen.close(owned=reader is None)  # free the model / the reader actors; the records written so far stay
        raise
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
