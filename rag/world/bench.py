"""`rag bench`: the built-in benchmark on a generated world, end to end, with no data or model to download.

    world -> passages -> BM25 + dense indexes -> lexicon -> counts (the ordinary linker and counter)
          -> agreement with the generator's ground truth -> tiny LM trained on the corpus
          -> bucketed closed-book / retrieval-augmented evaluation (rag.evaluation) -> probes -> report

Every step writes its own artifact folder under `out` and is skipped when that folder is already finished
(its manifest exists), so a rerun reuses everything done and an interrupted run continues.

    out/world/ passages/ bm25/ dense/ lexicon/ counts/ model/ [model-cf/] eval/ (a run folder, with report.html)
        [dynamics/] (`rag world dynamics`, --dynamics)  [inject/] (`rag world inject` on model/, --inject)
    out/agreement.json  probes.json  [counterfactual.json]  bench.json  report.md  plots/
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.artifacts import MANIFEST, read_manifest, write_json_atomic
from rag.errors import BadInputError
from rag.world.generator import DEMOS, ENTITIES, PROBES, QA, TRUTH, CORPUS, WorldParams, generate, load_avoid_list, open_world, read_jsonl, write_world
from rag.world.tinylm import TinyConfig, TrainConfig

log = logging.getLogger(__name__)

RETRIEVERS = ("bm25", "dense")


@dataclass(frozen=True)
class BenchConfig:
    world: WorldParams = field(default_factory=WorldParams)
    model: TinyConfig = field(default_factory=TinyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    retrievers: tuple[str, ...] = RETRIEVERS
    encoder: str = "all-MiniLM-L6-v2"
    k: int = 10  # passages retrieved for the reader
    shots: int = 2
    # what the reader is shown, chosen by measurement on this world (eval/results/world/NOTES.md): only the 3
    # sentences of the top k passages that best match the question, the best passage nearest the question
    prompt_format: str = "kandpal-best-last"
    sentences: int | None = 3
    per_bucket: int | None = None  # None: every question
    counterfactual: int = 0  # facts (with count >= 10) whose documents a second model never sees
    avoid_names: str | None = None  # a name list / DBpedia surface forms the generated names must avoid
    seed: int = 0
    dynamics: str | None = None  # a `rag world dynamics` preset run into out/dynamics (None: not run)
    inject: bool = False  # also run `rag world inject` (its quick settings) on the bench's model into out/inject

    def __post_init__(self):
        bad = [r for r in self.retrievers if r not in RETRIEVERS]
        if bad or not self.retrievers:
            raise BadInputError(f"retrievers must be among {', '.join(RETRIEVERS)}, got {list(self.retrievers)}")
        if self.k < 1 or self.shots < 0:
            raise BadInputError(f"k must be >= 1 and shots >= 0, got k={self.k}, shots={self.shots}")
        if self.counterfactual < 0:
            raise BadInputError(f"counterfactual must be >= 0, got {self.counterfactual}")
        from rag.readers.prompts import FORMATS

        FORMATS.get(self.prompt_format)  # an unknown format is an error naming the choices
        if self.sentences is not None and self.sentences < 1:
            raise BadInputError(f"sentences must be positive (or None for whole passages), got {self.sentences}")
        if self.per_bucket is not None and self.per_bucket < 1:
            raise BadInputError(f"per_bucket must be positive, got {self.per_bucket}")
        if self.dynamics is not None:
            from rag.world.dynamics import preset

            preset(self.dynamics)  # an unknown preset is an error naming the choices


def _identity(cfg: dict) -> dict:
    """The settings that finished artifacts depend on. Left out: training threads (speed only), and what a
    resumed run may add to (more retrievers, a larger per-bucket sample, a counterfactual model, the dynamics and
    injection experiments)."""
    cfg = json.loads(json.dumps(cfg))
    for k in ("counterfactual", "retrievers", "per_bucket", "dynamics", "inject"):
        cfg.pop(k, None)
    cfg.get("train", {}).pop("threads", None)
    return cfg


def _done(folder: Path) -> bool:
    return (folder / MANIFEST).exists()


class _Steps:
    """Timing and reuse notes of each pipeline step (written to bench.json)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def run(self, name: str, folder: Path | None, fn):
        from rag.progress import note, stage

        if folder is not None and _done(folder):
            self.rows[name] = {"seconds": 0.0, "reused": True}
            note("bench %s: reused (%s)", name, folder)
            return None
        t = time.perf_counter()
        with stage(f"bench {name}"):
            out = fn()
        self.rows[name] = {"seconds": round(time.perf_counter() - t, 1), "reused": False}
        return out


def build_world_lexicon(world: Path, passages: Path, out: Path, case_sample: int = 20_000) -> None:
    """A lexicon of the world's entities: canonical names (as titles), their aliases (as redirects) and
    the QA set's answer aliases; case statistics from the passages, as `build_lexicon` does."""
    from rag.corpus.store import PassageStore
    from rag.entities.lexicon import LexiconBuilder
    from rag.entities.lexicon_build import sample_texts
    from rag.entities.linkers import LexiconLinker
    from rag.qa import load_questions

    ents = read_jsonl(world / ENTITIES)
    b = LexiconBuilder(years=True)  # founding years are entities of this world
    b.add_titles(e["name"] for e in ents)
    b.add_redirects(((a, e["name"]) for e in ents for a in e["aliases"] if a != e["name"]), name="world aliases")
    b.add_aliases(load_questions(world / QA, "nq-open"), name=str(world / QA))
    lex = b.build()
    store = PassageStore(passages)
    lex.n_lower, lex.n_upper = LexiconLinker(lex).case_stats(sample_texts(store, case_sample))
    lex.save(out, sources=b.sources, case_sample=case_sample,
             passages={"path": str(store.folder), "fingerprint": store.fingerprint, "n_passages": len(store)})


def count_agreement(counts_rows, truth: Sequence[dict]) -> dict:
    """Linker counts vs the generator's ground truth, per question."""
    by_qid = {r.qid: r for r in counts_rows}
    exact, mism, unlinked = 0, [], 0
    for t in truth:
        r = by_qid.get(t["qid"])
        got = r.count if r is not None and r.status == "ok" else None
        if got is None:
            unlinked += 1
        if got == t["count"]:
            exact += 1
        else:
            mism.append({"qid": t["qid"], "question": t["question"], "truth": t["count"], "linker": got,
                         "status": r.status if r else "missing"})
    n = len(truth)
    tc = np.array([t["count"] for t in truth], dtype=float)
    lc = np.array([(by_qid[t["qid"]].count if t["qid"] in by_qid else 0) for t in truth], dtype=float)
    from scipy.stats import spearmanr

    rho = float(spearmanr(tc, lc).statistic) if n > 1 and tc.std() > 0 and lc.std() > 0 else float("nan")
    return {"n_questions": n, "exact": exact, "exact_fraction": round(exact / n, 4) if n else 0.0, "unlinked": unlinked,
            "spearman": round(rho, 4), "mismatches": mism[:20], "n_mismatches": len(mism)}


def _bucket(c: int) -> str:
    from rag.buckets import Buckets

    return Buckets().assign([c])[0]


def run_probes(model_dir: Path, probes: Sequence[dict], batch_size: int = 64) -> dict:
    """Per probe kind and count bucket: mean target log-probability (sum over the target's tokens, and per
    token) and greedy exact match of the target span."""
    from rag.world.tinylm import TinyLM

    lm = TinyLM(model_dir)
    res = lm.target_logprobs([p["prefix"] for p in probes], [p["target"] for p in probes], batch_size=batch_size)
    agg: dict[tuple[str, str], list] = defaultdict(list)
    for p, (lp, n, em) in zip(probes, res):
        agg[(p["kind"], _bucket(p["count"]))].append((lp, lp / max(n, 1), em))
    rows = []
    for (kind, b), v in sorted(agg.items()):
        a = np.array(v, dtype=float)
        rows.append({"kind": kind, "bucket": b, "n": len(v), "logprob": round(float(a[:, 0].mean()), 3),
                     "logprob_per_token": round(float(a[:, 1].mean()), 3), "em": round(float(a[:, 2].mean()), 3)})
    return {"model": str(model_dir), "rows": rows,
            "per_probe": [{"qid": p["qid"], "kind": p["kind"], "logprob": round(lp, 4), "em": em} for p, (lp, _, em) in zip(probes, res)]}


def _eval_config(cfg: BenchConfig, out: Path, model_dir: Path):
    from rag.evaluation.config import EvalConfig, QAConfig, RetrieverConfig
    from rag.pipeline import ReaderConfig

    return EvalConfig(
        qa=QAConfig(path=out / "world" / QA, format="nq-open"),
        counts=out / "counts",
        retrievers=[RetrieverConfig(name=r, index=out / r) for r in cfg.retrievers],
        reader=ReaderConfig(model=str(model_dir), backend="tiny-lm", shots=cfg.shots, demos=out / "world" / DEMOS,
                            max_new_tokens=8, device="cpu", batch_size=16, prompt_format=cfg.prompt_format,
                            sentences=cfg.sentences),
        name="bench", k=cfg.k, per_bucket=cfg.per_bucket, seed=cfg.seed, batch_size=64, n_boot=1000,
        out=out / "eval",
    )


def counterfactual(cfg: BenchConfig, out: Path, truth: list[dict], docs: list[dict], vocab_texts: list[str], progress: bool) -> dict:
    """Train a second model without the documents of `cfg.counterfactual` facts (count >= 10); compare both
    models on those facts: closed-book EM and the target log-probability of their probes."""
    from rag.pipeline import Pipeline, ReaderConfig
    from rag.qa import load_questions
    from rag.world.tinylm import train_model

    rng = np.random.default_rng(cfg.seed + 1)
    cands = [t for t in truth if t["count"] >= 10]
    if len(cands) < cfg.counterfactual:
        raise BadInputError(f"counterfactual {cfg.counterfactual}: only {len(cands)} facts have a count >= 10")
    chosen = [cands[i] for i in sorted(rng.choice(len(cands), cfg.counterfactual, replace=False))]
    removed = {d for t in chosen for d in t["docs"]}
    cf_dir = out / "model-cf"
    if not _done(cf_dir):
        kept = [d["text"] for d in docs if d["id"] not in removed]
        train_model(kept, cf_dir, vocab_texts=vocab_texts + [d["text"] for d in docs if d["id"] in removed],
                    model_cfg=cfg.model, train_cfg=cfg.train, progress=progress,
                    excluded={"facts": [t["qid"] for t in chosen], "n_docs": len(removed)})
    qids = {t["qid"] for t in chosen}
    all_q = load_questions(out / "world" / QA, "nq-open")
    qs = [q for q in all_q if q.qid in qids]
    probes = [p for p in read_jsonl(out / "world" / PROBES) if p["qid"] in qids and p["kind"] != "composition"]
    result = {"n_facts": len(chosen), "n_docs_removed": len(removed), "facts": [t["qid"] for t in chosen]}
    from rag.metrics import score_answer

    for name, folder in (("full", out / "model"), ("counterfactual", cf_dir)):
        # closed-book, the reader's own format, with demonstrations drawn as the evaluation draws them
        rc = ReaderConfig(model=str(folder), backend="tiny-lm", shots=cfg.shots, demos=out / "world" / DEMOS,
                          max_new_tokens=8, device="cpu")
        pipe = Pipeline.open(rc, seed=cfg.seed, exclude=all_q)
        preds = pipe.answer(qs)
        pipe.close()
        em = [score_answer(p.answer, q.answers).em for p, q in zip(preds, qs)]
        pr = run_probes(folder, probes)
        lp = defaultdict(list)
        for p in pr["per_probe"]:
            lp[p["kind"]].append(p["logprob"])
        result[name] = {"closed_em": round(float(np.mean(em)), 3), **{f"{k}_logprob": round(float(np.mean(v)), 3) for k, v in lp.items()}}
    return result


def run_bench(cfg: BenchConfig = BenchConfig(), out: str | os.PathLike = "runs/bench", overwrite: bool = False, progress: bool = True) -> dict:
    """Run (or resume) the whole benchmark in `out`; returns the bench.json summary."""
    from rag.corpus.build import build_passages
    from rag.corpus.store import PassageStore
    from rag.counts import load_counts
    from rag.entities.counting import build_counts
    from rag.evaluation import run_eval
    from rag.progress import draw_bars
    from rag.qa import load_questions
    from rag.retrievers import INDEXES
    from rag.world.tinylm import train_model

    out = Path(out)
    if overwrite and out.exists():
        if not (out / "world").exists() and any(out.iterdir()):
            raise BadInputError(f"{out} exists and is not a bench folder; refusing to delete it (choose another --out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    old = out / "bench-config.json"
    mine = json.loads(json.dumps(asdict(cfg), default=str))
    if old.exists() and _identity(json.loads(old.read_text())) != _identity(mine):
        prev, now = _identity(json.loads(old.read_text())), _identity(mine)
        diff = sorted(k for k in set(prev) | set(now) if prev.get(k) != now.get(k))
        raise BadInputError(f"{out} holds a bench run with other settings ({', '.join(diff)}); pass --overwrite "
                            f"to start afresh, or --out NEW_FOLDER")
    write_json_atomic(old, mine)
    t0 = time.perf_counter()
    steps = _Steps()
    bars = draw_bars(progress)  # for the steps that draw their own tqdm bars; the others log started / done lines

    world = out / "world"
    avoid = load_avoid_list(cfg.avoid_names) if cfg.avoid_names else ()
    steps.run("world", world, lambda: write_world(generate(cfg.world, avoid), world))
    wm = open_world(world)
    passages = out / "passages"
    steps.run("passages", passages, lambda: build_passages(world / CORPUS, passages, format="wikiextractor"))
    store = PassageStore(passages)
    for r in cfg.retrievers:
        opts = {"encoder": cfg.encoder} if r == "dense" else {}
        steps.run(f"index:{r}", out / r, lambda r=r, opts=opts: INDEXES.get(r).build(store, out / r, progress=bars, **opts))
    steps.run("lexicon", out / "lexicon", lambda: build_world_lexicon(world, passages, out / "lexicon"))
    questions = load_questions(world / QA, "nq-open")
    steps.run("counts", out / "counts", lambda: build_counts(passages, questions, out / "counts", qa_path=world / QA,
                                                            lexicon=out / "lexicon", unit="articles", workers=1))
    rows, _ = load_counts(out / "counts")
    truth = read_jsonl(world / TRUTH)
    agreement = count_agreement(rows, truth)
    write_json_atomic(out / "agreement.json", agreement)

    docs = read_jsonl(world / CORPUS)
    probes = read_jsonl(world / PROBES)
    vocab_texts = [q.question for q in questions] + [p["prefix"] + " " + p["target"] for p in probes] + \
                  [json.dumps(x) for x in read_jsonl(world / DEMOS)]
    steps.run("train", out / "model", lambda: train_model([d["text"] for d in docs], out / "model", vocab_texts=vocab_texts,
                                                          model_cfg=cfg.model, train_cfg=cfg.train, progress=bars,
                                                          world={"fingerprint": wm["fingerprint"]}))
    ecfg = _eval_config(cfg, out, out / "model")
    # the evaluation resumes on its own: finished (question, mode) records are kept, new retrievers added
    res = steps.run("eval", None, lambda: run_eval(ecfg, progress=progress))
    steps.rows["eval"].update(reused=not res.computed, records_computed=dict(res.computed), records_reused=res.reused)
    from rag.evaluation.report_html import write_html

    write_html(out / "eval")  # eval/report.html: the summary and the per-question explorer, one self-contained page
    if not (out / "probes.json").exists():
        steps.run("probes", None, lambda: write_json_atomic(out / "probes.json", run_probes(out / "model", probes)))
    cf = None
    if cfg.counterfactual:
        if not (out / "counterfactual.json").exists():
            steps.run("counterfactual", None, lambda: write_json_atomic(
                out / "counterfactual.json", counterfactual(cfg, out, truth, docs, vocab_texts, bars)))
        cf = json.loads((out / "counterfactual.json").read_text())
    if cfg.dynamics:
        from rag.world.dynamics import preset, run_dynamics

        steps.run("dynamics", out / "dynamics", lambda: run_dynamics(preset(cfg.dynamics), out / "dynamics", progress=progress,
                                                                     threads=cfg.train.threads, preset_name=cfg.dynamics))
    if cfg.inject:
        from rag.world.inject import QUICK, run_inject

        steps.run("inject", out / "inject", lambda: run_inject(QUICK, world, out / "model", out / "inject", progress=progress,
                                                               threads=cfg.train.threads))
    summary = {
        "world": {k: wm[k] for k in ("n_entities", "n_facts", "n_docs", "n_questions", "n_demos", "n_probes", "counts")},
        "passages": len(store),
        "agreement": {k: v for k, v in agreement.items() if k != "mismatches"},
        "model": {k: read_manifest(out / "model")[k] for k in ("n_params", "vocab_size", "config", "training")},
        "steps": steps.rows,
        "wall_seconds_this_session": round(time.perf_counter() - t0, 1),
        "counterfactual": cf,
    }
    write_json_atomic(out / "bench.json", summary)
    write_report(out, summary)
    return summary


def _md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def plot_probes(probes: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plots are optional
        log.warning("matplotlib is not installed (pip install 'rag[plots]'); no probe plot")
        return None
    from rag.buckets import Buckets

    order = Buckets().labels
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind in ("memorization", "semantic", "composition"):
        rows = {r["bucket"]: r for r in probes["rows"] if r["kind"] == kind}
        bs = [b for b in order if b in rows]
        if not bs:
            continue
        xs = [order.index(b) for b in bs]
        axes[0].plot(xs, [rows[b]["logprob_per_token"] for b in bs], marker="o", label=kind)
        axes[1].plot(xs, [rows[b]["em"] for b in bs], marker="o", label=kind)
    for ax, title in zip(axes, ("target log-prob per token", "target exact match (greedy)")):
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("documents stating the fact")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, summary: dict) -> Path:
    """report.md (world, counter agreement, evaluation summary, probes, counterfactual, timing) and plots/."""
    probes = json.loads((out / "probes.json").read_text())
    plot_probes(probes, out / "plots" / "probes.png")
    eval_plots = out / "eval" / "plots"
    if eval_plots.exists():
        for p in eval_plots.glob("*.png"):
            shutil.copy(p, out / "plots" / p.name)
    w, a, m = summary["world"], summary["agreement"], summary["model"]
    lines = [
        "# rag bench: the built-in fictional world",
        "",
        f"World: {w['n_entities']} entities, {w['n_facts']} facts, {w['n_docs']} documents ({summary['passages']} passages), "
        f"{w['n_questions']} evaluated questions, {w['n_demos']} demonstration questions. Facts stated per question "
        f"(ground truth): max {w['counts']['max']}, {w['counts']['zero']} never stated; per bucket {w['counts']['per_log10_bucket']}.",
        "",
        "## Counter validation",
        "",
        f"Counts from the lexicon linker + Kandpal counter vs the generator's ground truth: **{a['exact']}/{a['n_questions']} "
        f"exact ({100 * a['exact_fraction']:.1f}%)**, Spearman {a['spearman']}, {a['unlinked']} unlinked. "
        + ("" if a["n_mismatches"] == 0 else "Mismatches are listed in agreement.json."),
        "",
        "## Model",
        "",
        f"Tiny GPT, {m['n_params']:,} parameters ({m['config']['n_layer']} layers, d={m['config']['d_model']}, "
        f"context {m['config']['block_size']}), word vocabulary of {m['vocab_size']}; {m['training']['steps']} steps, "
        f"{m['training']['epochs']} epochs over {m['training']['corpus_tokens']:,} tokens in {m['training']['seconds']} s "
        f"({m['training']['threads']} threads); final training loss {m['training']['final_loss']}.",
        "",
        "## Evaluation (closed-book vs retrieval-augmented, by count bucket)",
        "",
    ]
    summ = out / "eval" / "summary.md"
    if (out / "eval" / "report.html").exists():
        lines += ["Every question's answers and the passages shown, filterable by bucket, mode and outcome: "
                  "`eval/report.html` (one self-contained page).", ""]
    if summ.exists():
        text = summ.read_text(encoding="utf-8")
        lines.append(text.split("\n", 1)[1] if text.startswith("#") else text)
    lines += ["", "## Probes (Chang et al. 2024): target log-probability and exact match by count", "",
              _md_table(["probe", "bucket", "n", "log-prob (sum)", "log-prob / token", "EM"],
                        [[r["kind"], r["bucket"], r["n"], r["logprob"], r["logprob_per_token"], r["em"]] for r in probes["rows"]]),
              "", "![probes](plots/probes.png)", ""]
    cf = summary.get("counterfactual")
    if cf:
        keys = [k for k in cf["full"] if k != "closed_em"]
        lines += ["## Counterfactual: the same model trained without the documents of some facts", "",
                  f"{cf['n_facts']} facts (count >= 10), {cf['n_docs_removed']} documents removed.", "",
                  _md_table(["model", "closed-book EM", *keys],
                            [[name, cf[name]["closed_em"], *(cf[name][k] for k in keys)] for name in ("full", "counterfactual")]), ""]
    for sub, name in (("dynamics", "dynamics.md"), ("inject", "inject.md")):
        if (out / sub / MANIFEST).exists() and (out / sub / name).exists():
            text = (out / sub / name).read_text(encoding="utf-8")
            lines += [text.replace("](plots/", f"]({sub}/plots/"), ""]
    lines += ["## Steps", "", _md_table(["step", "seconds", "reused"], [[k, v["seconds"], v["reused"]] for k, v in summary["steps"].items()]),
              "", f"Wall time of this session: {summary['wall_seconds_this_session']} s.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def export_report(out: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the small, committable part of a bench run (report, tables, plots; no records, models or indexes)."""
    out, dest = Path(out), Path(dest)
    (dest / "plots").mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "bench.json", "agreement.json", "counterfactual.json", "bench-config.json"):
        if (out / name).exists():
            shutil.copy(out / name, dest / name)
    for name in ("summary.csv", "summary.md", "timing.json", "adaptive.json"):
        if (out / "eval" / name).exists():
            shutil.copy(out / "eval" / name, dest / f"eval-{name}")
    probes = json.loads((out / "probes.json").read_text())
    write_json_atomic(dest / "probes.json", {"model": probes["model"], "rows": probes["rows"]})
    for p in (out / "plots").glob("*.png"):
        shutil.copy(p, dest / "plots" / p.name)
    if (out / "dynamics" / MANIFEST).exists():
        from rag.world.dynamics import export_run

        export_run(out / "dynamics", dest / "dynamics")
    if (out / "inject" / MANIFEST).exists():
        from rag.world.inject import export_run as export_inject

        export_inject(out / "inject", dest / "inject")
    return dest
