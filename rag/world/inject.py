"""`rag world inject`: teaching a trained world model new facts by further training, against supplying them by
retrieval, on the same questions.

    new entities (rag.world.knowledge), each stated in `docs_per_entity` documents of one style; their questions
    held-out entities in the same style, never trained on: the text whose perplexity measures the style learned
    model-base/   the world model with its vocabulary grown by the new words (nothing trained): the starting point
    model-full/   further training on the new documents, every weight (warmup, cosine decay; resumable)
    model-lora/   the same with low-rank adapters on the blocks (plus the new words' embeddings), merged
    passages/ bm25/   the world's corpus plus the new documents
    results/<method>.json   per method: EM and gold log-probability on the new facts and on the old facts
                  (the world's questions stated >= old_min_count times: forgetting), perplexity on the held-out
                  new-style text and on world documents
    inject.json  inject.md  manifest.json

Methods: none (model-base, closed-book), train-full and train-lora (closed-book), retrieval (model-base reading
the top-k passages of the index that holds the new documents), train-full+retrieval. Questions are asked through
the evaluation's own pipeline (demonstrations from the world's pool, the bench's prompt format and sentence
selection); the gold log-probability is that of the first answer alias after the very prompt the model answered.
Style learned without the facts shows as perplexity on new-style text falling while EM on the new facts stays low.

Every step writes its own folder or file and is skipped when finished, so a rerun (after kill -9 too) continues;
training resumes from its last checkpoint (rag.world.checkpoint) with byte-identical logs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.artifacts import MANIFEST, atomic_dir, export_files, read_json_file, read_manifest, write_json_atomic, write_manifest, write_text_atomic
from rag.errors import BadInputError
from rag.world.generator import CORPUS, DEMOS, QA, TRUTH, open_world, read_jsonl

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "world-inject"
METHODS = ("none", "train-full", "train-lora", "retrieval", "train-full+retrieval")


@dataclass(frozen=True)
class InjectConfig:
    n_people: int = 16  # new entities whose facts are taught and asked
    n_orgs: int = 8
    n_heldout: int = 12  # further new entities (half people) in the same style, never trained on: perplexity
    docs_per_entity: int = 3  # paraphrase documents per new entity
    style: str = "archive"  # "archive": a register the world never uses; "world": the world's own templates
    epochs: float = 10.0  # passes over the new documents (sets the number of training steps)
    batch_size: int = 8
    lr: float = 1e-3
    lora: bool = True
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_lr: float = 5e-3
    k: int = 10
    sentences: int | None = 3
    shots: int = 2
    prompt_format: str = "kandpal-best-last"
    old_min_count: int = 10  # old facts asked: the world's questions stated at least this often
    checkpoint_every: int = 20
    seed: int = 0

    def __post_init__(self):
        from rag.world.knowledge import STYLES

        if self.style not in STYLES:
            raise BadInputError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        for name in ("docs_per_entity", "batch_size", "k", "checkpoint_every", "lora_rank"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_people + self.n_orgs < 1 or self.n_heldout < 1:
            raise BadInputError("inject needs at least one new entity and one held-out entity")
        if not self.epochs > 0 or not self.lr > 0 or not self.lora_lr > 0:
            raise BadInputError("epochs and learning rates must be positive")

    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in METHODS if self.lora or m != "train-lora")


QUICK = InjectConfig(n_people=8, n_orgs=4, n_heldout=6)  # `rag bench --inject`


# --- the new knowledge -----------------------------------------------------------------------------------


def make_knowledge(cfg: InjectConfig, world: Path, out: Path) -> None:
    """out/knowledge/: items.jsonl (taught), heldout.jsonl (their texts), corpus.jsonl (new documents, the
    world's corpus format), qa.jsonl (new questions, nq-open)."""
    from rag.world.knowledge import WorldView, make_items, paraphrases, questions

    kdir = out / "knowledge"
    if (kdir / MANIFEST).exists():
        return
    rng = np.random.default_rng([cfg.seed, 4])
    view = WorldView.open(world)
    items = make_items(view, cfg.n_people, cfg.n_orgs, rng, prefix="new")
    view.words.update(w.lower() for it in items for n in (it.name, it.twin) for w in n.split())
    held = make_items(view, (cfg.n_heldout + 1) // 2, cfg.n_heldout // 2, rng, prefix="held")
    docs = []
    for it in items:
        for j, text in enumerate(paraphrases(it, cfg.docs_per_entity, cfg.style, rng)):
            doc_id = f"n{len(docs):06d}"
            docs.append({"id": doc_id, "url": f"world-new://{doc_id}", "title": it.name, "text": text})
    heldout = [{"kid": it.kid, "text": t} for it in held for t in paraphrases(it, cfg.docs_per_entity, cfg.style, rng)]
    with atomic_dir(kdir, overwrite=True) as tmp:
        for name, rows in (("items.jsonl", [it.to_json() for it in items]), ("heldout-items.jsonl", [it.to_json() for it in held]),
                           ("heldout.jsonl", heldout), (CORPUS, docs), (QA, questions(items))):
            write_text_atomic(tmp / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_manifest(tmp, kind=f"{KIND}/knowledge", format=FORMAT, style=cfg.style, n_items=len(items), n_docs=len(docs),
                       n_heldout_texts=len(heldout))


def _questions(rows: list[dict]):
    from rag.types import Question

    return [Question(r["qid"], r["question"], tuple(r["answer"])) for r in rows]


# --- models ----------------------------------------------------------------------------------------------


def grow_model(src: Path, out: Path, texts: Sequence[str]) -> None:
    from rag.world.tinylm import TinyLM, grow_vocabulary, write_model

    dest = out / "model-base"
    if (dest / MANIFEST).exists():
        return
    lm = TinyLM(src)
    model, tok, new = grow_vocabulary(lm.model, lm.tok, lm.cfg, texts)
    with atomic_dir(dest, overwrite=True) as tmp:
        write_model(tmp, model, tok, lm.cfg, grown_from={"model": str(src), "created": lm.manifest.get("created"),
                                                          "vocab_size": len(lm.tok), "new_tokens": len(new)})


def train_on_new(cfg: InjectConfig, out: Path, method: str, progress: bool) -> None:
    """model-full / model-lora: further training of model-base on the new documents (resumable)."""
    import torch

    from rag.world import checkpoint
    from rag.world.tinylm import TinyLM, Trainer, TrainConfig, random_windows, training_stream, write_model

    name = {"train-full": "model-full", "train-lora": "model-lora"}[method]
    dest = out / name
    if (dest / MANIFEST).exists():
        return
    work = out / f"work-{name}"
    work.mkdir(exist_ok=True)
    lm = TinyLM(out / "model-base")
    model, tok, T = lm.model, lm.tok, lm.cfg.block_size
    docs = [d["text"] for d in read_jsonl(out / "knowledge" / CORPUS)]
    stream = training_stream(docs, tok)
    n_tokens = len(stream)
    data = np.tile(stream, math.ceil((T + 2) / n_tokens) + 1) if n_tokens <= T + 1 else stream
    steps = max(1, math.ceil(cfg.epochs * n_tokens / (cfg.batch_size * T)))
    lora = method == "train-lora"
    extra = {}
    if lora:
        from rag.world.lora import add_lora

        base_vocab = read_manifest(out / "model-base")["grown_from"]["vocab_size"]
        extra["trainable"] = add_lora(model, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed, train_rows=range(base_vocab, len(tok)))
    tc = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lora_lr if lora else cfg.lr,
                     warmup=max(1, steps // 10), weight_decay=0.0 if lora else 0.05, seed=cfg.seed)
    trainer = Trainer(model, tc, steps)
    torch.manual_seed(cfg.seed)
    phase = 2 if lora else 1
    t0 = time.perf_counter()
    checkpoint.train_steps(work, model, trainer, steps,
                           batch_of=lambda u: (random_windows(data, T, cfg.batch_size, (cfg.seed, phase, u)), None),
                           line_of=lambda u, loss, info: {"u": u, "loss": round(loss, 5)},
                           first_line=None, every=cfg.checkpoint_every, sched_offset=0, progress=progress, desc=method)
    if lora:
        from rag.world.lora import merge_lora

        merge_lora(model)
    losses = [r["loss"] for r in read_jsonl(work / checkpoint.LOG)]
    with atomic_dir(dest, overwrite=True) as tmp:
        write_model(tmp, model, tok, lm.cfg, train=asdict(tc), method=method,
                    training={"steps": steps, "epochs": round(steps * cfg.batch_size * T / n_tokens, 2), "corpus_tokens": n_tokens,
                              "seconds_this_session": round(time.perf_counter() - t0, 1), "first_loss": losses[0],
                              "final_loss": round(float(np.mean(losses[-max(1, steps // 10):])), 4), **extra})
    shutil.rmtree(work / "ckpt", ignore_errors=True)


def perplexity(model_dir: Path, texts: Sequence[str], batch_size: int = 16) -> float:
    """exp(mean negative log-likelihood per token) of `texts`, each read from <bos> (cut to the context)."""
    import torch

    from rag.world.tinylm import TinyLM

    lm = TinyLM(model_dir)
    nll, n = 0.0, 0
    for i in range(0, len(texts), batch_size):
        seqs = [[2, *lm.tok.encode(t)][: lm.cfg.block_size] for t in texts[i : i + batch_size]]
        L = max(len(s) for s in seqs)
        pad = [L - len(s) for s in seqs]
        idx = torch.tensor([[0] * p + s for s, p in zip(seqs, pad)], dtype=torch.long)
        with torch.no_grad():
            logp = lm.model(idx, torch.tensor(pad, dtype=torch.long))
        for r, p in enumerate(pad):
            tgt = idx[r, p + 1:]
            nll -= float(logp[r, p : L - 1].gather(1, tgt[:, None]).sum())
            n += len(tgt)
    return math.exp(nll / max(n, 1))


# --- evaluation ------------------------------------------------------------------------------------------


def _answer(pipe, reader, questions, passages) -> tuple[list[float], list[float], list[str]]:
    """(EM, gold log-probability after the prompt the model answered, answer) per question."""
    from rag.metrics import score_answer
    from rag.readers.prompts import fit_prompt

    preds = pipe.answer(questions, passages)
    shown = pipe.show(questions, passages) or [[] for _ in questions]
    prompts = [fit_prompt(reader, pipe.fmt, list(pipe.demos), q.question, list(ps), pipe.cfg.max_new_tokens).text
               for q, ps in zip(questions, shown)]
    gold = reader.score_batch(prompts, [" " + q.answers[0] for q in questions])
    em = [float(score_answer(p.answer, q.answers).em) for p, q in zip(preds, questions)]
    return em, [g.logprob for g in gold], [p.answer for p in preds]


def evaluate(cfg: InjectConfig, world: Path, out: Path, method: str, new_q, old_q, all_q) -> dict:
    from rag.pipeline import Pipeline, ReaderConfig, retrieve
    from rag.retrievers import load_index
    from rag.world.tinylm import TinyLM, TinyLMReader

    folder = out / {"none": "model-base", "retrieval": "model-base", "train-full": "model-full",
                    "train-full+retrieval": "model-full", "train-lora": "model-lora"}[method]
    index = load_index(out / "bm25")
    rc = ReaderConfig(model=str(folder), backend="tiny-lm", shots=cfg.shots, demos=world / DEMOS, max_new_tokens=8,
                      device="cpu", batch_size=16, prompt_format=cfg.prompt_format, sentences=cfg.sentences)
    reader = TinyLMReader(TinyLM(folder))
    pipe = Pipeline.open(rc, reader=reader, seed=cfg.seed, exclude=all_q, demo_retriever=index,
                         doc_freq=index.doc_freq() if cfg.sentences else None, k=cfg.k)
    rag = method.endswith("retrieval")
    res: dict = {"method": method, "model": folder.name}
    for part, qs in (("new", new_q), ("old", old_q)):
        passages = [list(r.passages) for r in retrieve(index, [q.question for q in qs], cfg.k)] if rag else None
        em, gold, answers = _answer(pipe, reader, qs, passages)
        res[part] = {"n": len(qs), "em": round(float(np.mean(em)), 4), "gold_logprob": round(float(np.mean(gold)), 4),
                     "em_ci": _boot(em, cfg.seed), "gold_ci": _boot(gold, cfg.seed)}
        res[f"{part}_answers"] = [{"qid": q.qid, "answer": a, "em": e, "gold_logprob": round(g, 4)}
                                  for q, a, e, g in zip(qs, answers, em, gold)]
    held = [r["text"] for r in read_jsonl(out / "knowledge" / "heldout.jsonl")]
    world_docs = [d["text"] for d in read_jsonl(world / CORPUS)[: 300]]
    res["perplexity"] = {"new_style_heldout": round(perplexity(folder, held), 3), "world_docs": round(perplexity(folder, world_docs), 3)}
    return res


def _boot(x: Sequence[float], seed: int, n_boot: int = 1000) -> list[float]:
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    return [round(float(v), 4) for v in np.percentile(means, [2.5, 97.5])]


# --- the whole run ---------------------------------------------------------------------------------------


def run_inject(cfg: InjectConfig, world: str | os.PathLike, model: str | os.PathLike, out: str | os.PathLike,
               overwrite: bool = False, progress: bool = True, threads: int = 0) -> dict:
    """Run (or resume) the comparison in `out`; returns inject.json."""
    import torch

    from rag.corpus.build import build_passages
    from rag.corpus.store import PassageStore
    from rag.locks import writer_lock
    from rag.qa import load_questions
    from rag.retrievers import INDEXES
    from rag.world.knowledge import Item, vocabulary_texts
    from rag.world.tinylm import TinyLM

    world, model, out = Path(world), Path(model), Path(out)
    wm = open_world(world)
    src = TinyLM(model)  # refuses a folder that is not a tiny-lm model
    if overwrite and out.exists():
        if not (out / "config.json").exists() and any(out.iterdir()):
            raise BadInputError(f"{out} exists and is not an inject run folder; refusing to delete it (choose another --out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    mine = {"config": json.loads(json.dumps(asdict(cfg))), "world": {"path": str(world), "fingerprint": wm["fingerprint"]},
            "model": {"path": str(model), "created": src.manifest.get("created"), "n_params": src.n_params}}
    if (out / "config.json").exists() and read_json_file(out / "config.json") != mine:
        raise BadInputError(f"{out} holds an inject run with other settings, world or model; pass --overwrite to start afresh, "
                            f"or --out NEW_FOLDER")
    del src
    load0 = os.getloadavg()
    old_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        steps[name] = round(time.perf_counter() - t, 1)

    with writer_lock(out):
        write_json_atomic(out / "config.json", mine)
        torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
        try:
            timed("knowledge", lambda: make_knowledge(cfg, world, out))
            kdir = out / "knowledge"
            items = [Item.from_json(r) for r in read_jsonl(kdir / "items.jsonl")]
            held = [Item.from_json(r) for r in read_jsonl(kdir / "heldout-items.jsonl")]
            texts = [*vocabulary_texts(items + held), *(d["text"] for d in read_jsonl(kdir / CORPUS)),
                     *(r["text"] for r in read_jsonl(kdir / "heldout.jsonl"))]
            timed("grow vocabulary", lambda: grow_model(model, out, texts))
            for m in ("train-full", "train-lora"):
                if m in cfg.methods():
                    timed(m, lambda m=m: train_on_new(cfg, out, m, progress))
            if not (out / "passages" / MANIFEST).exists():
                write_text_atomic(kdir / "corpus-all.jsonl", (world / CORPUS).read_text(encoding="utf-8") +
                                  (kdir / CORPUS).read_text(encoding="utf-8"))
                timed("passages", lambda: build_passages(kdir / "corpus-all.jsonl", out / "passages", format="wikiextractor", overwrite=True))
            if not (out / "bm25" / MANIFEST).exists():
                timed("bm25", lambda: INDEXES.get("bm25").build(PassageStore(out / "passages"), out / "bm25", progress=progress, overwrite=True))
            new_q = _questions(read_jsonl(kdir / QA))
            truth = {t["qid"]: t for t in read_jsonl(world / TRUTH)}
            world_q = load_questions(world / QA, "nq-open")
            old_q = [q for q in world_q if truth[q.qid]["count"] >= cfg.old_min_count]
            (out / "results").mkdir(exist_ok=True)
            for m in cfg.methods():
                path = out / "results" / f"{m}.json"
                if not path.exists():
                    timed(f"evaluate {m}", lambda m=m, path=path: write_json_atomic(path, evaluate(cfg, world, out, m, new_q, old_q, [*world_q, *new_q])))
        finally:
            torch.set_num_threads(old_threads)
        results = {m: read_json_file(out / "results" / f"{m}.json") for m in cfg.methods()}
        summary = {"world": {k: wm[k] for k in ("n_facts", "n_docs", "n_questions")},
                   "knowledge": read_manifest(kdir), "training": {m: read_manifest(out / f)["training"]
                                                                   for m, f in (("train-full", "model-full"), ("train-lora", "model-lora"))
                                                                   if m in cfg.methods()},
                   "methods": {m: {k: v for k, v in r.items() if not k.endswith("_answers")} for m, r in results.items()},
                   "steps_seconds": steps, "wall_seconds_this_session": round(time.perf_counter() - t0, 1),
                   "load_average": {"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in os.getloadavg()]}}
        write_json_atomic(out / "inject.json", summary)
        write_markdown(out, cfg, summary)
        write_manifest(out, kind=KIND, format=FORMAT, libraries=("torch", "safetensors", "numpy"), config=mine,
                       methods=list(cfg.methods()), files={"summary": "inject.json", "report": "inject.md"})
    return summary


def write_markdown(out: Path, cfg: InjectConfig, s: dict) -> str:
    k = s["knowledge"]
    tr = "; ".join(f"{m}: {v['steps']} steps, {v['epochs']} epochs" for m, v in s["training"].items())
    lines = ["## Injecting new facts: further training vs retrieval", "",
             f"`rag world inject`: {k['n_items']} new entities ({k['n_docs']} documents in the **{cfg.style}** style, "
             f"{cfg.docs_per_entity} per entity) about the world's entities; the world model (its vocabulary grown by the "
             f"new words, nothing else changed) is trained further on them ({tr}), "
             f"or reads them through BM25 over the world's corpus plus the new documents (top {cfg.k}, "
             f"{cfg.sentences or 'whole'} sentences shown). New facts: one question per fact; old facts: the world's questions "
             f"stated >= {cfg.old_min_count} times. Gold log-prob: the first answer alias after the prompt the model answered. "
             f"Perplexity on {k['n_heldout_texts']} held-out new-style texts about other new entities (never trained on) and on "
             f"world documents. 95% bootstrap intervals over questions.", "",
             "| method | new facts EM | new gold log-prob | old facts EM | old gold log-prob | perplexity, held-out new-style | perplexity, world docs |",
             "|---|---|---|---|---|---|---|"]
    for m, r in s["methods"].items():
        n, o, p = r["new"], r["old"], r["perplexity"]
        lines.append(f"| {m} | {n['em']:.3f} [{n['em_ci'][0]:.3f}, {n['em_ci'][1]:.3f}] (n={n['n']}) | {n['gold_logprob']:.2f} | "
                     f"{o['em']:.3f} [{o['em_ci'][0]:.3f}, {o['em_ci'][1]:.3f}] (n={o['n']}) | {o['gold_logprob']:.2f} | "
                     f"{p['new_style_heldout']:.2f} | {p['world_docs']:.2f} |")
    lines += ["", f"Wall time of this session: {s['wall_seconds_this_session']} s (load average at start "
                  f"{s['load_average']['start'][0]}, end {s['load_average']['end'][0]}).", ""]
    text = "\n".join(lines)
    write_text_atomic(out / "inject.md", text)
    return text


def export_run(out: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the committable part of an inject run (summary, report, per-question results; no models or indexes)."""
    out, dest = Path(out), Path(dest)
    export_files(out, dest, ("inject.json", "inject.md", "config.json", MANIFEST), ("results/*.json",))
    (dest / "results").mkdir(exist_ok=True)
    for name in ("items.jsonl", QA):
        if (out / "knowledge" / name).exists():
            shutil.copy(out / "knowledge" / name, dest / f"knowledge-{name}")
    return dest
