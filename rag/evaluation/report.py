"""Summaries of a run folder: per count bucket, accuracy closed-book and with each retriever, the gain, recall@k.

summary.csv (long format, one row per bucket x system x measure):
    bucket      a count bucket label, "unlinked", "linked" (every linked bucket) or "all"
    population  questions of the QA set in that bucket; n: questions evaluated (with a record)
    system      "closed", "rag:<r>" (reader with retriever r), "gain:<r>" (rag:<r> - closed, paired per
                question), "retriever:<r>" (recall of r, independent of the reader)
    measure     em | f1 | contains | recall@<k>
    mean, lo, hi  the rate and its 95% percentile-bootstrap interval (empty when n = 0)
"linked" and "all" weight each sampling bucket by its population (a stratified-sample estimate of the whole
QA set; with no sampling it is the plain mean). Every bucket is listed, with n = 0 when it has no questions.

render() also writes attribution.csv and its section at the end of summary.md (rag.evaluation.attribution), and
with html=True report.html (rag.evaluation.report_html).
"""
from __future__ import annotations

import csv
import io
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rag.buckets import UNLINKED, Buckets
from rag.evaluation.config import METRICS, answer_metric  # noqa: F401 (METRICS: re-exported)
from rag.evaluation.stats import Rate, bootstrap_mean, stratified_bootstrap_mean
from rag.evaluation.summary import ALL, LINKED, Bucketing, Row, Summary

if TYPE_CHECKING:  # pragma: no cover
    from rag.evaluation.run_folder import Run, Selection

log = logging.getLogger(__name__)

RATE_MEASURES = ("em", "f1", "contains")  # the measures that are rates (0..1), in every summary


def recorded_scores(recs: dict, measure: str) -> dict[str, float]:
    """qid -> the record's `measure`, leaving out NaN (a gold log-probability the run did not record)."""
    out = {q: r.score(measure) for q, r in recs.items()}
    return {q: v for q, v in out.items() if v == v}

CSV_FIELDS = ("bucket", "population", "n", "system", "measure", "mean", "lo", "hi")


def summarize(run: "Run", edges: Sequence[int] | None = None) -> Summary:
    """Every rate of the report, from a run's records (no model needed)."""
    manifest, cfg, selection = run.manifest, run.config, run.selection
    bk = Bucketing.of(run, edges)
    buckets, sample_buckets = bk.buckets, bk.strata
    if buckets.edges != sample_buckets.edges and selection.per_bucket is not None:
        log.warning("re-bucketing a stratified sample drawn with edges %s: per-bucket rates are unweighted within "
                    "the new buckets", sample_buckets.edges)
    qids = selection.qids
    retrievers = run.retrievers
    modes = run.modes
    by_mode = run.by_mode(modes)
    count_of, evaluated, label_of, stratum_of = bk.count_of, bk.evaluated, bk.label_of, bk.stratum_of
    population, strata_pop = bk.population, bk.strata_population

    labels = buckets.all_labels
    n_boot, seed = cfg.n_boot, cfg.seed
    rows: list[Row] = []

    def add_rates(system: str, measure: str, values: dict[str, float]) -> None:
        """values: qid -> outcome, for the questions that have it."""
        for b in labels:
            x = [values[q] for q in values if label_of[q] == b]
            rows.append(Row(b, population[b], len(x), system, measure, bootstrap_mean(x, n_boot=n_boot, seed=seed)))
        for name, keep in ((LINKED, lambda s: s != UNLINKED), (ALL, lambda s: True)):
            strata = [s for s in sample_buckets.all_labels if keep(s)]
            groups = [[values[q] for q in values if stratum_of[q] == s] for s in strata]
            rate = stratified_bootstrap_mean(groups, [strata_pop[s] for s in strata], n_boot=n_boot, seed=seed)
            pop = sum(strata_pop[s] for s in strata)
            rows.append(Row(name, pop, sum(map(len, groups)), system, measure, rate))

    closed = by_mode["closed"]
    # the gold log-probability joins the rows only as the run's metric (the other files keep their rows)
    measures = RATE_MEASURES + (("logprob",) if cfg.metric == "logprob" else ())

    for m in measures:
        add_rates("closed", m, recorded_scores(closed, m))
    for r in retrievers:
        recs = by_mode[f"rag:{r}"]
        for m in measures:
            mine, base = recorded_scores(recs, m), recorded_scores(closed, m)
            add_rates(f"rag:{r}", m, mine)
            add_rates(f"gain:{r}", m, {q: v - base[q] for q, v in mine.items() if q in base})
        for k in cfg.recall_ks:
            add_rates(f"retriever:{r}", f"recall@{k}",
                      {q: float(rec.hit_at(k)) for q, rec in recs.items()})

    by_method = _split_by_method(cfg, selection, buckets, by_mode, label_of, retrievers)
    n_present = sum(len(v) for v in by_mode.values())
    adaptive = _adaptive(cfg, retrievers, by_mode, qids, count_of)
    reader = manifest.get("reader", {})
    code = manifest.get("code", {})
    header = {
        "name": cfg.name,
        "reader": f"{reader.get('model', cfg.reader.model)} ({reader.get('backend', cfg.reader.backend)}, "
                  f"{cfg.reader.shots}-shot, format {cfg.reader.prompt_format or 'model default'})",
        "qa": f"{cfg.qa.path} ({manifest.get('qa', {}).get('n_questions', '?')} questions"
              + (f", first {cfg.qa.limit}" if cfg.qa.limit else "")
              + (", regex golds: EM = match at the start (DrQA), recall = DPR regex has_answer"
                 if manifest.get("identity", {}).get("qa", {}).get("match_type") == "regex" else "") + ")",
        "counts": str(cfg.counts),
        "retrievers": ", ".join(f"{n} = {manifest.get('indexes', {}).get(n, {}).get('path', '?')}" for n in retrievers) or "none",
        "k": cfg.k,
        "reading": (f"k = {cfg.k} passages retrieved, of which the reader is shown the {cfg.reader.sentences} "
                    f"best-matching sentences" if cfg.reader.sentences else f"k = {cfg.k} passages read"),
        "metric": cfg.metric,
        "sampling": (f"{selection.per_bucket} per bucket, seed {selection.seed}" if selection.per_bucket else
                     f"budget {selection.plan['budget_s'] / 60:.0f} min, {selection.plan['allocation']} allocation "
                     f"({selection.plan['cost_per_question_s']:.2f} s per question), seed {selection.seed}"
                     if selection.plan else "every question"),
        "code": code.get("git_commit", code.get("rag", "?"))[:12] + (" (uncommitted changes)" if code.get("git_dirty") else ""),
        "status": manifest.get("status", "?"),
    }
    sample = {b: {"population": population[b], "n": sum(1 for q in evaluated if label_of[q] == b)} for b in labels}
    return Summary(rows, [*labels, LINKED, ALL], retrievers, list(cfg.recall_ks), cfg.metric, sample, adaptive, header,
                   (n_present, len(qids) * len(modes)), by_method)


def _split_by_method(cfg, selection: "Selection", buckets: Buckets, by_mode: dict, label_of: dict, retrievers) -> list[Row]:
    """Per bucket and count method: closed-book and RAG accuracy (cfg.metric) with intervals, and populations."""
    method_of: dict[str, str] = {}
    for recs in by_mode.values():
        for qid, rec in recs.items():
            if rec.count_method:
                method_of.setdefault(qid, rec.count_method)
    methods = sorted(set(method_of.values()))
    if len(set(methods) - {"none"}) < 2:  # every counted question counted one way: nothing to split
        return []
    pop = defaultdict(int)
    pc, pm = selection.population_counts, selection.population_methods
    if pc is not None and pm is not None and len(pc) == len(pm):
        for b, m in zip(buckets.assign(list(pc)), pm):
            pop[(b, m)] += 1
    out = []
    for system in ["closed", *(f"rag:{r}" for r in retrievers)]:
        groups: dict[tuple, list[float]] = defaultdict(list)  # (bucket, method) -> outcomes, in one pass
        for q, v in recorded_scores(by_mode[system], cfg.metric).items():
            groups[(label_of.get(q), method_of.get(q))].append(v)
        for b in buckets.all_labels:
            for m in methods:
                x = groups.get((b, m), [])
                out.append(Row(b, pop[(b, m)], len(x), f"{system}|{m}", cfg.metric, bootstrap_mean(x, n_boot=cfg.n_boot, seed=cfg.seed)))
    return out


def _adaptive(cfg, retrievers: list[str], by_mode: dict, qids: Sequence[str], count_of: dict) -> dict | None:
    from rag.evaluation.adaptive import adaptive_retrieval

    name = cfg.adaptive.retriever or (retrievers[0] if retrievers else None)
    if name is None or f"rag:{name}" not in by_mode:
        return None
    closed, rag = by_mode["closed"], by_mode[f"rag:{name}"]
    both = [q for q in qids if q in closed and q in rag]
    if len(both) < 4:
        return {"retriever": name, "error": f"only {len(both)} questions with both closed-book and {name} results"}
    m = answer_metric(cfg.metric)
    res = adaptive_retrieval(
        both, [count_of[q] for q in both], [closed[q].score(m) for q in both], [rag[q].score(m) for q in both],
        retriever=name, train_fraction=cfg.adaptive.train_fraction, seed=cfg.seed, unlinked=cfg.adaptive.unlinked,
        n_boot=cfg.n_boot,
    )
    return {**res.as_dict(), "metric": m, "train_fraction": cfg.adaptive.train_fraction, "seed": cfg.seed}


# --- rendering ----------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6f}"


def to_csv(summary: Summary) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in summary.rows:
        w.writerow([r.bucket, r.population, r.n, r.system, r.measure, _num(r.rate.mean), _num(r.rate.lo), _num(r.rate.hi)])
    return buf.getvalue()


def _cell(row: Row | None, signed: bool = False) -> str:
    """A rate in % [95% CI]; a log-probability in nats."""
    if row is None or row.n == 0:
        return "n/a"
    r = row.rate
    if row.measure.startswith("logprob"):
        f = "{:+.2f}" if signed else "{:.2f}"
        return f"{f.format(r.mean)} [{f.format(r.lo)}, {f.format(r.hi)}]"
    if signed:
        return f"{r.mean * 100:+.1f} [{r.lo * 100:+.1f}, {r.hi * 100:+.1f}]"
    return f"{r.mean * 100:.1f} [{r.lo * 100:.1f}, {r.hi * 100:.1f}]"


def _table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def to_markdown(summary: Summary, plots: Sequence[str] = ()) -> str:
    h = summary.header
    m = summary.metric
    present, expected = summary.complete
    out = [f"# Evaluation `{h['name']}`", ""]
    out += [
        f"- reader: {h['reader']}",
        f"- questions: {h['qa']}; counts: {h['counts']}",
        f"- retrievers: {h['retrievers']}; {h['reading']}",
        f"- sampling: {h['sampling']}; accuracy = {m.upper() if m == 'em' else m}; 95% percentile-bootstrap intervals",
        f"- code: {h['code']}; status: {h['status']}"
        + ("" if present >= expected else f" ({present} of {expected} records: partial)"),
        "",
        f"## Accuracy ({m}) by relevant-document count",
        "",
        "Cells: % [95% CI]. Gain = RAG - closed-book on the same questions (paired). `linked` and `all` weight each "
        "sampling bucket by its population.",
        "",
    ]
    head = ["bucket", "n / population", "closed-book"]
    for r in summary.retrievers:
        head += [f"RAG {r}", f"gain {r}"]
    body = []
    for b in summary.buckets:
        closed = summary.get(b, "closed", m)
        pop = closed.population if closed else 0
        n = closed.n if closed else 0
        frac = f" ({n / pop:.0%})" if pop else ""
        row = [b, f"{n} / {pop}{frac}", _cell(closed)]
        for r in summary.retrievers:
            row += [_cell(summary.get(b, f"rag:{r}", m)), _cell(summary.get(b, f"gain:{r}", m), signed=True)]
        body.append(row)
    out += [_table(head, body), ""]

    if summary.retrievers:
        out += ["## Retriever recall@k by bucket", "",
                "A gold answer (DPR has_answer, normalized) in the top-k passages; the reader plays no part.", ""]
        head = ["bucket", "n"]
        for r in summary.retrievers:
            head += [f"{r} R@{k}" for k in summary.recall_ks]
        body = []
        for b in summary.buckets:
            first = summary.get(b, f"retriever:{summary.retrievers[0]}", f"recall@{summary.recall_ks[0]}")
            row = [b, str(first.n if first else 0)]
            for r in summary.retrievers:
                row += [_cell(summary.get(b, f"retriever:{r}", f"recall@{k}")) for k in summary.recall_ks]
            body.append(row)
        out += [_table(head, body), ""]

    if summary.by_method:
        methods = sorted({r.system.split("|", 1)[1] for r in summary.by_method})
        idx = {(r.bucket, r.system): r for r in summary.by_method}
        out += [f"## By how the count was obtained ({m})", "",
                "entity: both sides entity-linked (the paper's count); surface: the subject phrase and/or an answer "
                "string found in the text (rag.entities.surface); none: not counted (the unlinked bucket). Cells: % [95% CI], "
                "unweighted within each bucket.", ""]
        head = ["bucket", "counted by", "n / population", "closed-book", *(f"RAG {r}" for r in summary.retrievers)]
        body = []
        for b in summary.buckets:
            for meth in methods:
                c = idx.get((b, f"closed|{meth}"))
                if c is None or (c.population == 0 and c.n == 0):
                    continue
                body.append([b, meth, f"{c.n} / {c.population}", _cell(c),
                             *(_cell(idx.get((b, f"rag:{r}|{meth}"))) for r in summary.retrievers)])
        out += [_table(head, body), ""]

    out += ["## All metrics, whole QA set (population-weighted)", ""]
    systems = ["closed", *(f"rag:{r}" for r in summary.retrievers)]
    out += [_table(["system", *RATE_MEASURES], [[s, *(_cell(summary.get(ALL, s, x)) for x in RATE_MEASURES)] for s in systems]), ""]

    a = summary.adaptive
    if a is not None:
        out += ["## Adaptive retrieval (Mallen et al. 2023)", ""]
        if "error" in a:
            out += [f"Not computed: {a['error']}.", ""]
        else:
            fmt = lambda d: _cell(Row("", 0, d["n"], "", "", Rate(**d)))  # noqa: E731
            sfmt = lambda d: _cell(Row("", 0, d["n"], "", "", Rate(**d)), signed=True)  # noqa: E731
            out += [
                f"Threshold learned on {a['n_train']} questions ({a['train_fraction']:.0%}, seed {a['seed']}), "
                f"scored on the other {a['n_test']}; retriever {a['retriever']}, accuracy = {a['metric']}.",
                f"Policy: {a['policy']['description']} (train accuracy {a['train_accuracy'] * 100:.1f}).",
                "",
                _table(["policy", "held-out accuracy", "vs adaptive"], [
                    ["adaptive", fmt(a["adaptive"]), ""],
                    ["always retrieve", fmt(a["always"]), sfmt(a["vs_always"]) + " (adaptive - always)"],
                    ["never retrieve", fmt(a["never"]), sfmt(a["vs_never"]) + " (adaptive - never)"],
                ]),
                "",
                f"Share of held-out questions retrieved: {a['fraction_retrieved'] * 100:.1f}%.",
                "",
            ]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(out)


def render(folder: str | Path, edges: Sequence[int] | None = None, plots: bool = True, html: bool = False) -> Summary:
    """(Re)write summary.csv, summary.md, attribution.csv, adaptive.json and plots/*.png of a run folder from its
    records; with `html`, report.html too (rag.evaluation.report_html)."""
    from rag.artifacts import write_json_atomic
    from rag.evaluation import attribution
    from rag.evaluation.run_folder import load_run
    from rag.evaluation.logprob import logprob_table, plot_logprob
    from rag.evaluation.logprob import to_markdown as logprob_markdown
    from rag.evaluation.trends import fitted_curves, run_trends, trends_markdown

    folder = Path(folder)
    run = load_run(folder)
    if edges is not None:
        Buckets(tuple(edges))  # checks them
    summary = summarize(run, edges)
    trends = run_trends(run)
    outcomes = attribution.attribute(run)
    attr_rows = attribution.summarize_attribution(run, edges, outcomes) if run.retrievers else []
    lp = logprob_table(run, edges)
    written: list[str] = []
    attr_plot = lp_plot = None
    if plots:
        from rag.errors import MissingDependencyError
        from rag.evaluation.plots import plot_accuracy, plot_attribution, plot_recall

        try:
            (folder / "plots").mkdir(exist_ok=True)
            plot_accuracy(summary, folder / "plots" / "accuracy.png", curves=fitted_curves(run, edges, trends))
            written.append("plots/accuracy.png")
            if summary.retrievers:
                plot_recall(summary, folder / "plots" / "recall.png")
                written.append("plots/recall.png")
            if attr_rows:
                plot_attribution(attr_rows, folder / "plots" / "attribution.png", title=summary.header.get("name", ""))
                attr_plot = "plots/attribution.png"
            if lp["scored"]:
                plot_logprob(lp, folder / "plots" / "logprob.png", title=summary.header.get("name", ""))
                lp_plot = "plots/logprob.png"
        except MissingDependencyError as e:
            log.warning("no plots: %s", e)
    _write_text(folder / "summary.csv", to_csv(summary))
    # the trends and the attribution are sections appended after everything else, so the lines above stay as they were
    md = to_markdown(summary, written) + "\n" + trends_markdown(trends)
    if attr_rows:
        md += "\n" + attribution.to_markdown(attr_rows, run.config.metric, attr_plot)
        _write_text(folder / "attribution.csv", attribution.to_csv(attr_rows))
    md += "\n" + logprob_markdown(lp, lp_plot)
    from rag.evaluation.controls import controls_markdown, run_controls

    controls = run_controls(run, edges)  # issue 20.5: beside closed-book in every summary; last, so the rest stays
    md += "\n" + controls_markdown(controls)
    if run.manifest.get("store_mismatches"):  # allowed with --allow-store-mismatch; the reader of the summary must know
        md += "\n## Warning: passage stores differ (run with --allow-store-mismatch)\n\n" + "".join(
            f"- {m}\n" for m in run.manifest["store_mismatches"])
    _write_text(folder / "summary.md", md)
    write_json_atomic(folder / "logprob.json", lp)
    write_json_atomic(folder / "adaptive.json", summary.adaptive or {})
    write_json_atomic(folder / "trends.json", trends)
    write_json_atomic(folder / "controls.json", controls)
    if html:
        from rag.evaluation.report_html import write_html

        write_html(folder, run=run, outcomes=outcomes, edges=edges)
    return summary


def _write_text(path: Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
