"""`rag bench`: the built-in benchmark on a generated fictional world (no data or model to download)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("bench")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench"), show_default=True,
              help="Folder for every artifact of the run. Rerunning with the same folder reuses finished steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the world, the training and the evaluation sample.")
@click.option("--people", type=int, default=None, help="Person entities in the world (default 120).")
@click.option("--orgs", type=int, default=None, help="Organizations (default 40).")
@click.option("--cities", type=int, default=None, help="Cities (default 36).")
@click.option("--countries", type=int, default=None, help="Countries (default 10).")
@click.option("--max-count", type=int, default=None, help="Most documents stating one fact (default 1000).")
@click.option("--zipf", type=float, default=None, help="Exponent of the heavy-tailed count law P(c) ~ c^-zipf (default 1.4).")
@click.option("--mentions", type=click.Choice(["paraphrase", "duplicate"]), default=None,
              help="paraphrase: each mention of a fact uses a random template; duplicate: one template per fact.")
@click.option("--distractors", type=int, default=None, help="Distractor documents (entities without facts; default 300).")
@click.option("--reading-docs", type=int, default=None, help="Passage/Q/A reading exercises about throwaway names (default 800).")
@click.option("--reading-known", type=float, default=None,
              help="Share of reading exercises answered by an entity of the world instead of a throwaway name (default 0).")
@click.option("--avoid-names", type=click.Path(path_type=Path), default=None,
              help="A list of real names (one per line, or a DBpedia `surface<TAB>resource` TSV, .xz ok) that generated names must avoid.")
@click.option("--steps", type=int, default=None, help="Training steps of the tiny model (default 400).")
@click.option("--d-model", type=int, default=None, help="Width of the tiny model (default 192).")
@click.option("--layers", type=int, default=None, help="Transformer blocks of the tiny model (default 4).")
@click.option("--threads", type=int, default=0, show_default=True, help="Torch threads for training (0: every core).")
@click.option("--retriever", "retrievers", multiple=True, type=click.Choice(["bm25", "dense"]),
              help="Retrievers to index and evaluate (repeatable; default both).")
@click.option("--encoder", default="all-MiniLM-L6-v2", show_default=True,
              help="Dense encoder (e.g. hash:256 for a model-free test run).")
@click.option("-k", "--k", "k", type=int, default=10, show_default=True,
              help="Passages retrieved for the reader (it is shown --sentences of them).")
@click.option("--shots", type=int, default=2, show_default=True, help="Demonstrations per prompt (drawn from the world's demonstration questions).")
@click.option("--sentences", type=click.IntRange(min=0), default=3, show_default=True,
              help="Show the reader only the N sentences of the top-k passages that best match the question "
                   "(0: whole passages).")
@click.option("--format", "prompt_format", default="kandpal-best-last", show_default=True,
              help="Prompt format of the reader (kandpal puts the best passage first).")
@click.option("--per-bucket", type=int, default=None, help="Evaluate at most N questions per count bucket (default: all).")
@click.option("--counterfactual", type=int, default=0, show_default=True,
              help="Also train a model without the documents of N facts (count >= 10) and report the drop on them.")
@click.option("--dynamics", "dynamics", flag_value="quick", default=None,
              help="Also run `rag world dynamics --preset quick` (knowledge acquired and forgotten during training; "
                   "~2 min) into OUT/dynamics and add its section to the report.")
@click.option("--dynamics-preset", "dynamics", help="The same with another preset (e.g. paper: < 30 min).")
@click.option("--inject", is_flag=True,
              help="Also run `rag world inject` on the bench's model (new facts taught by training vs supplied by "
                   "retrieval; a few minutes) into OUT/inject and add its section to the report.")
@click.option("--export", type=click.Path(path_type=Path), default=None,
              help="Also copy the committable part (report.md, tables, plots; no records or models) to this folder.")
@click.option("--overwrite", is_flag=True, help="Delete the output folder and start afresh.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr (on a terminal; elsewhere, and with --no-progress, one log line per step).")
def bench(out, seed, people, orgs, cities, countries, max_count, zipf, mentions, distractors, reading_docs, reading_known, avoid_names,
          steps, d_model, layers, threads, retrievers, encoder, k, shots, sentences, prompt_format, per_bucket, counterfactual, dynamics, inject,
          export, overwrite, progress) -> None:
    """Run the built-in benchmark end to end on a generated world.

    Generates a fictional world with known relevant-document counts, builds passages, BM25 and dense
    indexes, counts relevant documents with the ordinary entity linker and checks them against the
    ground truth, trains a tiny language model on the world's documents (CPU, minutes), evaluates it
    closed-book and retrieval-augmented by count bucket, runs memorization / semantic / composition
    probes, and writes OUT/report.md with plots. With no options it takes about 8 minutes on 2 idle cores.
    """
    from dataclasses import replace

    from rag.world.bench import BenchConfig, run_bench
    from rag.world.generator import WorldParams

    wp = {k_: v for k_, v in dict(seed=seed, n_people=people, n_orgs=orgs, n_cities=cities, n_countries=countries,
                                  max_count=max_count, zipf=zipf, mentions=mentions, n_distractor_docs=distractors,
                                  n_reading_docs=reading_docs, reading_known_answers=reading_known).items() if v is not None}
    base = BenchConfig()
    mc = {k_: v for k_, v in dict(d_model=d_model, n_layer=layers).items() if v is not None}
    tc = {k_: v for k_, v in dict(steps=steps, seed=seed, threads=threads).items() if v is not None}
    cfg = BenchConfig(
        world=WorldParams(**{**vars(base.world), **wp}),
        model=replace(base.model, **mc),
        train=replace(base.train, **tc),
        retrievers=tuple(retrievers) or base.retrievers,
        encoder=encoder, k=k, shots=shots, sentences=sentences or None, prompt_format=prompt_format,
        per_bucket=per_bucket, counterfactual=counterfactual,
        avoid_names=str(avoid_names) if avoid_names else None, seed=seed, dynamics=dynamics, inject=inject,
    )
    summary = run_bench(cfg, out, overwrite=overwrite, progress=progress)
    if export is not None:
        from rag.world.bench import export_report

        export_report(out, export)
    a = summary["agreement"]
    click.echo((Path(out) / "report.md").read_text(encoding="utf-8"))
    click.echo(f"counter agreement: {a['exact']}/{a['n_questions']} exact; report: {Path(out) / 'report.md'}", err=True)
