"""`rag eval run|report|compare`: bucketed closed-book vs retrieval-augmented evaluation."""
from __future__ import annotations

from pathlib import Path

import click

from rag.cli.engine_opts import engine_options
from rag.errors import BadInputError


def _edges(value: str | None):
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise BadInputError(f"--edges {value!r}: expected comma-separated integers, e.g. 0,1,10,100,1000") from None


@click.group("eval")
def eval_group() -> None:
    """Evaluate a reader closed-book and with retrieval, bucketed by relevant-document count.

    \b
    Examples:
    rag eval run --config configs/nq-open.yaml --per-bucket 50     run or resume a preset
    rag eval report runs/nq-open                                   re-render tables and plots
    rag eval report runs/nq-open --html                            ... and report.html (explorer)
    rag eval compare runs/nq-open runs/nq-open-qwen1.5b            per-bucket differences
    """


@eval_group.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="YAML preset (see configs/): QA file, counts, reader, retrievers, k, buckets, sampling.")
@click.option("--per-bucket", type=int, default=None,
              help="Evaluate a seeded stratified sample of at most N questions per count bucket (overrides per_bucket).")
@click.option("--all", "all_questions", is_flag=True, help="Evaluate every question (overrides per_bucket in the config).")
@click.option("--budget", default=None, metavar="DURATION",
              help="Spend at most this long (e.g. 90m, 2h): the reader's cost per question is measured on a pilot, the "
                   "per-bucket sample sizes that fit are planned (printed and recorded in selection.json), and the run "
                   "stops cleanly when the time is spent. A larger budget later extends the same sample.")
@click.option("--allocation", type=click.Choice(["slope", "equal"]), default=None,
              help="How --budget spreads questions over buckets: slope (default: where they narrow the interval of "
                   "the accuracy-vs-count slope most) or equal.")
@click.option("--seed", type=int, default=None, help="Seed of the sample, the demonstrations and the bootstrap (overrides seed).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder. Default: runs/<name>. Rerunning with the same folder resumes it.")
@click.option("--reader", "model", default=None, help="Reader model (overrides reader.model): a named model, a .gguf file, ...")
@click.option("--backend", default=None, help="Reader backend (overrides reader.backend): auto (the fastest here), llama-cpp, torch, ct2, transformers, openai (a model server: --set reader.options.base_url=...), vllm, fake.")
@click.option("--limit", type=int, default=None, help="Only the first N questions of the QA file (overrides qa.limit).")
@click.option("-k", "--k", "k", type=int, default=None, help="Passages given to the reader (overrides k).")
@click.option("--count-method", type=click.Choice(["entity", "surface"]), default=None,
              help="Only questions whose count was obtained this way (overrides count_method): entity = both sides "
              "entity-linked (the paper's count), surface = subject phrase or answer string found in the text. The "
              "report always splits each bucket by it.")
@click.option("--retriever", "only", multiple=True,
              help="Run only this configured retriever (repeatable); others are left out of this session.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config value by its dotted key, VALUE read as YAML, e.g. --set reader.n_ctx=1024 "
                   "--set buckets=[0,10,1000] (repeatable).")
@click.option("--overwrite", is_flag=True, help="Delete the run folder's results and start afresh instead of resuming.")
@click.option("--allow-store-mismatch", is_flag=True, default=None,
              help="Run although the counts and an index were built over different passage stores (refused by default); "
                   "the run's manifest and summary say so (config: allow_store_mismatch: true).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr (on a terminal; elsewhere, and with --no-progress, one log line per stage).")
@engine_options(shards=False)
def run(config_path, per_bucket, all_questions, budget, allocation, seed, out, model, backend, limit, k, count_method, only, sets, overwrite, allow_store_mismatch,
        progress, exec_engine) -> None:
    """Run (or resume) the evaluation described by --config.

    For the same questions: closed-book answers, then retrieval-augmented answers with each retriever's
    top-k passages; per question EM, F1, contains-answer and recall@k of each retriever. Results are
    appended per batch, so an interrupted run (Ctrl-C, kill -9) continues where it stopped when the same
    command is run again. Writes the run folder: config.yaml, manifest.json, records.jsonl, summary.csv,
    summary.md, attribution.csv, adaptive.json, timing.json and plots/*.png (`rag eval report RUN --html` adds
    report.html).

    \b
    Examples:
      rag eval run --config configs/nq-open.yaml --per-bucket 50
      rag eval run --config configs/nq-open.yaml --budget 90m
      rag eval run --config configs/triviaqa.yaml --reader qwen2.5-coder-1.5b --per-bucket 20 --out runs/tqa-1.5b
      rag eval run --config configs/nq-open.yaml --retriever bm25 --limit 100 --set reader.device=cuda
      rag eval run --config configs/nq-open.yaml --exec-engine ray --ray-address head:6379 --workers 8

    With --exec-engine ray (or `engine: {kind: ray}` in the config) answers are generated by reader actors, one model
    each (a GPU each where the cluster has them); the records are the same as a local run's.
    """
    from rag.evaluation.config import load_config, parse_set
    from rag.evaluation.run_folder import summary_text
    from rag.evaluation.runner import run_eval

    if per_bucket is not None and all_questions:
        raise BadInputError("--per-bucket and --all exclude each other")
    explicit = dict(parse_set(item) for item in sets)
    flags = {"per_bucket": per_bucket, "budget": budget, "allocation": allocation, "seed": seed, "out": str(out) if out else None, "reader.model": model,
             "reader.backend": backend, "qa.limit": limit, "k": k, "count_method": count_method,
             "allow_store_mismatch": allow_store_mismatch or None}
    if exec_engine.is_ray:  # flags win over the config's engine block; without them the config decides
        flags.update({"engine.kind": "ray", "engine.address": exec_engine.address, "engine.workers": exec_engine.workers})
    # flags win over --set for the same key (as before); --set applies null too
    explicit = {key: v for key, v in explicit.items() if flags.get(key) is None}
    cfg = load_config(config_path, flags, explicit)
    if all_questions:
        from dataclasses import replace

        cfg = replace(cfg, per_bucket=None)
    if only:
        names = [r.name for r in cfg.retrievers]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise BadInputError(f"--retriever {unknown[0]!r} is not in {config_path} (retrievers: {', '.join(names) or 'none'})")
        from dataclasses import replace

        keep = [r for r in cfg.retrievers if r.name in only]
        adaptive = cfg.adaptive if cfg.adaptive.retriever in (None, *only) else replace(cfg.adaptive, retriever=None)
        cfg = replace(cfg, retrievers=keep, adaptive=adaptive)
    result = run_eval(cfg, overwrite=overwrite, progress=progress)
    computed = ", ".join(f"{m} {n}" for m, n in sorted(result.computed.items())) or "nothing new"
    click.echo(f"{result.folder}: {result.n_questions} questions; computed {computed}; reused {result.reused} records", err=True)
    click.echo(summary_text(result.folder))


@eval_group.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--edges", default=None, help="Bucket lower edges to use instead of the run's, e.g. 0,1,10,100,1000.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write plots/*.png (needs matplotlib: rag[plots]).")
@click.option("--html", is_flag=True,
              help="Also write RUN_DIR/report.html: one self-contained page (no network needed to view it) with the "
                   "summary tables, the plots, the failure attribution and a per-question explorer (filter by bucket, "
                   "mode, outcome and text; a row expands to every mode's answer and the passages shown).")
def report(run_dir, edges, plots, html) -> None:
    """Re-render RUN_DIR's summary.csv, summary.md, attribution.csv, adaptive.json and plots from its records (no
    model needed); with --html, report.html too."""
    from rag.evaluation.report import render
    from rag.evaluation.run_folder import summary_text

    render(run_dir, edges=_edges(edges), plots=plots, html=html)
    click.echo(summary_text(run_dir))
    if html:
        click.echo(f"wrote {Path(run_dir) / 'report.html'}", err=True)


@eval_group.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--measure", "measures", multiple=True,
              help="Answer measure(s) to compare: em, f1, contains, logprob (the gold answer's log-probability; repeatable). Default: run A's metric. "
                   "Retriever recall@k is always included.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the table here (.md or .csv).")
def compare(run_a, run_b, measures, out) -> None:
    """Show B - A per count bucket for every system both runs have (paired over shared questions)."""
    from rag.evaluation.compare import compare_runs, to_csv, to_markdown
    from rag.evaluation.config import METRICS

    for m in measures:
        if m not in METRICS:
            raise BadInputError(f"--measure {m!r}: choose from {', '.join(METRICS)}")
    rows = compare_runs(run_a, run_b, list(measures) or None)
    md = to_markdown(rows, str(run_a), str(run_b))
    if out is not None:
        out.write_text(to_csv(rows) if out.suffix == ".csv" else md, encoding="utf-8")
    click.echo(md)
