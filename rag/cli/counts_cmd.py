"""`rag counts ...`: relevant-document counts per question (lexicon, postings, counts, summary, import, external)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from rag.cli.engine_opts import engine_options
from rag.cli.link_cmd import linker_options, make_cli_linker

_P = click.Path(path_type=Path)


@click.group()
def counts() -> None:
    """Relevant-document counts (Kandpal et al. 2023): for each question, how many corpus documents
    contain both its question entity and its answer entity.

    \b
    The usual path is one command:
      rag counts build --passages indexes/wiki-both --qa nq-open.test.jsonl \\
          --surface-forms dbpedia-surface-forms.tsv.xz --out runs/nq-counts
      rag counts show runs/nq-counts
    The steps can also be run one by one: `lexicon`, `postings`, then `build` with --lexicon/--postings.
    An interrupted `build` rerun with the same arguments reuses its finished lexicon and postings.
    Counts computed elsewhere enter through `import`, which checks them against their QA file.
    """


def _questions(qa: Path):
    from rag.qa import load_questions

    return load_questions(qa)


@counts.command("lexicon")
@click.option("--out", "-o", required=True, type=_P, help="Folder to write the lexicon to (atomically).")
@click.option("--passages", type=_P, default=None,
              help="Passage store: its article titles (and redirects.tsv, from XML dumps) become surface forms, and a "
              "sample of its passages gives the case statistics that decide which forms are common words.")
@click.option("--surface-forms", multiple=True, type=_P,
              help="DBpedia surface-form TSV (`surface TAB resource`, lower-cased, `_` for spaces; .xz/.bz2/.gz read "
              "directly). Repeatable.")
@click.option("--redirects", multiple=True, type=_P, help="Extra redirect TSV (`alias TAB target title`). Repeatable.")
@click.option("--qa", "qa_files", multiple=True, type=_P,
              help="QA dataset whose answer aliases are added (aliases no other source knows become entities). Repeatable.")
@click.option("--case-sample", type=click.IntRange(min=0), default=20_000, show_default=True,
              help="Passages sampled (evenly) for case statistics; 0 = none (only stopwords count as common).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def lexicon_cmd(out, passages, surface_forms, redirects, qa_files, case_sample, overwrite) -> None:
    """Build a versioned lexicon: surface forms -> entities with priors."""
    from rag.entities.lexicon_build import build_lexicon

    if passages is None and not surface_forms and not redirects and not qa_files:
        raise click.UsageError("give at least one source: --passages, --surface-forms, --redirects or --qa")
    from rag.progress import stage

    questions = [q for path in qa_files for q in _questions(path)]
    with stage("lexicon", f"-> {out}") as info:
        lex = build_lexicon(out, passages=passages, surface_forms=surface_forms, redirects=redirects, questions=questions,
                            qa_name=",".join(map(str, qa_files)) or "qa", case_sample=case_sample, overwrite=overwrite)
        info.update(forms=lex.manifest["n_forms"], entities=lex.manifest["n_entities"])
    m = lex.manifest
    click.echo(f"lexicon {out}: {m['n_forms']:,} forms, {m['n_entities']:,} entities, {m['n_ambiguous_forms']:,} ambiguous forms "
               f"(fingerprint {m['fingerprint']})")


@counts.command("postings")
@click.option("--passages", required=True, type=_P, help="Passage store to link.")
@click.option("--lexicon", type=_P, default=None, help="Lexicon folder (lexicon and spacy linkers).")
@click.option("--out", "-o", required=True, type=_P, help="Folder to write the postings to (atomically).")
@click.option("--docs", "unit", type=click.Choice(["articles", "passages"]), default="articles", show_default=True,
              help="What a document is: an article (all passages of a doc_id, as in the paper) or a single passage.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes; default: all cores.")
@click.option("--no-title", is_flag=True, help="Do not add each passage's own article entity (from its title) to its document.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar: one log line per stage (as when stderr is not a terminal).")
@linker_options
@engine_options(own_workers=True)
def postings_cmd(passages, lexicon, out, unit, workers, no_title, overwrite, no_progress, linker_name, linker_opts, exec_engine) -> None:
    """Link every passage and write entity -> document postings (CSR .npy, memory-mapped).

    With --exec-engine ray (or --shards) row-range shards are linked by workers that each build the automaton
    once; an interrupted build rerun with the same command skips the finished shards. Same postings either way.
    """
    from rag.entities.postings import build_postings
    from rag.progress import draw_bars, stage

    linker = make_cli_linker(linker_name, linker_opts, lexicon)
    with stage("postings", f"linking {passages} -> {out}") as info:  # the linking bar is drawn on a terminal only
        p = build_postings(passages, linker, out, unit=unit, include_title=not no_title, workers=workers,
                           overwrite=overwrite, progress=draw_bars(not no_progress), engine=exec_engine)
        info.update(pairs=p.manifest["n_pairs"], entities=p.manifest["n_entities"])
    m = p.manifest
    click.echo(f"postings {out}: {m['n_entities']:,} entities, {m['n_pairs']:,} (entity, document) pairs over {m['n_docs']:,} {unit}; "
               f"{m['passages_per_second']:,.0f} passages/s with {m['workers']} worker(s)")


@counts.command("build")
@click.option("--passages", "--corpus", "passages", required=True, type=_P,
              help="Passage store (from `rag corpus build`) whose documents are counted.")
@click.option("--qa", required=True, type=_P, help="QA dataset (NQ-open JSONL, DPR TSV, EntityQuestions JSON, ...).")
@click.option("--out", "-o", required=True, type=_P,
              help="Output folder: counts.parquet + manifest.json, plus lexicon/ and postings/ when built here.")
@click.option("--lexicon", type=_P, default=None,
              help="Use this lexicon instead of building one (from the corpus titles/redirects, --surface-forms and the "
              "QA set's answer aliases).")
@click.option("--postings", type=_P, default=None,
              help="Reuse these postings (checked against the passages and the linker) instead of linking the corpus.")
@click.option("--surface-forms", multiple=True, type=_P, help="DBpedia surface-form TSV for the lexicon built here. Repeatable.")
@click.option("--redirects", multiple=True, type=_P, help="Extra redirect TSV for the lexicon built here. Repeatable.")
@click.option("--docs", "unit", type=click.Choice(["articles", "passages"]), default="articles", show_default=True,
              help="What a document is when postings are built here: an article (the paper's unit) or a passage.")
@click.option("--exclude-countries", is_flag=True,
              help="Ignore countries among question entities (Kandpal et al.'s --exclude_countries).")
@click.option("--surface-index", type=_P, default=None,
              help="BM25 index over the same passages (`rag index build --kind bm25`). With it, a question whose subject "
              "links no entity is counted from the text: the documents holding its exact subject phrase (its framed "
              "subject, see --frames, else its longest proper-name span), intersected with the answer entity's documents or with those holding an answer string. "
              "Each question records whether it was counted by entity or surface.")
@click.option("--frames/--no-frames", default=True, show_default=True,
              help="Induce question frames from the QA set (\"Where is ... located?\"); when the set looks template-generated "
              "(half its questions fit a frame), each question's subject is what its frame leaves, and only an entity "
              "mentioned as exactly that subject is its question entity. Natural QA sets (NQ, TriviaQA) are left alone.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes for corpus linking; default: all cores.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar: one log line per stage (as when stderr is not a terminal).")
@linker_options
@engine_options(own_workers=True)
def build_cmd(passages, qa, out, lexicon, postings, surface_forms, redirects, unit, exclude_countries, surface_index, frames, workers, overwrite,
              no_progress, linker_name, linker_opts, exec_engine) -> None:
    """Count relevant documents for every question of --qa in --passages.

    Each question's count is the number of documents containing both its question entity and its
    most frequent answer entity (max over entity pairs, ties kept). Questions whose question or answers
    link nothing are kept with a status (question-unlinked / answer-unlinked / both-unlinked).
    """
    from rag.entities.counting import build_counts
    from rag.progress import draw_bars

    questions = _questions(qa)
    rows, manifest = build_counts(
        passages, questions, out, qa_path=qa, lexicon=lexicon, postings=postings, surface_forms=surface_forms,
        redirects=redirects, linker=linker_name, linker_options=linker_opts, unit=unit,
        exclude_countries=exclude_countries, phrase_index=surface_index, frames=frames, workers=workers, overwrite=overwrite,
        progress=draw_bars(not no_progress), engine=exec_engine,  # stages log started / done lines; bars on a terminal
    )
    _print_summary(out, manifest["summary"])


def _print_summary(path, s: dict, top: int = 10) -> None:
    n = s["n_questions"]
    click.echo(f"{path}: {n:,} questions, {s['fraction_unlinked']:.1%} unlinked, median count (linked) {s['median_count_linked']:g}")
    click.echo("status:")
    for k, v in s["status"].items():
        click.echo(f"  {k:<18} {v:>7,}  {v / max(n, 1):6.1%}")
    by = s.get("buckets_by_method")
    # entity and surface always (the counting pipeline's); another method (external: an imported table) when present
    shown = ["entity", "surface", *(m for m, c in s.get("method", {}).items() if c and m not in ("entity", "surface", "none"))]
    how = " / ".join({"entity": "by entity", "surface": "by surface phrase"}.get(m, m) for m in shown)
    click.echo("questions per log10 bucket of the count" + (f" (counted {how}):" if by else ":"))
    for k, v in s["buckets"].items():
        split = ""
        if by and k != "unlinked":
            split = "   " + "  ".join(f"{m} {by[k].get(m, 0):>6,}" for m in shown)
        click.echo(f"  {k:<18} {v:>7,}  {v / max(n, 1):6.1%}{split}")
    for what, key in (("question entities", "top_question_entities"), ("subject phrases", "top_subject_phrases"),
                      ("answer entities", "top_answer_entities")):
        ents = s.get(key, [])[:top]
        if ents:
            click.echo(f"top {what}: " + ", ".join(f"{e} ({c})" for e, c in ents))


@counts.command("show")
@click.argument("path", type=_P)
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="How many top entities to list.")
@click.option("--examples", type=click.IntRange(min=0), default=0, help="Also print this many questions with their entities and counts.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def show(path, top, examples, as_json) -> None:
    """Summarize a counts folder: questions per log10 bucket, fraction unlinked, top entities."""
    from rag.counts import load_counts, summarize

    rows, manifest = load_counts(path)
    s = summarize(rows, top=top)
    if as_json:
        click.echo(json.dumps(s, indent=2, ensure_ascii=False))
    else:
        _print_summary(path, s, top)
    for r in rows[:examples]:
        click.echo(f"[{r.status}] {r.question} | answers {list(r.answers)[:3]} | {r.q_entity} x {r.a_entity} = {r.count} "
                   f"(docs {r.q_entity_docs} / {r.a_entity_docs})")


@counts.command("import")
@click.argument("table", type=_P)
@click.option("--qa", required=True, type=_P, help="The QA file (or EntityQuestions folder) the table was made for.")
@click.option("--out", "-o", required=True, type=_P, help="Counts folder to write (counts.parquet + manifest.json).")
@click.option("--qa-format", default=None, help="Format of --qa (nq-open, dpr-tsv, entityquestions, curatedtrec, jsonl). Default: from the name.")
@click.option("--qid-column", default=None, help="Column holding the question ids. Default: qid, question_id or id.")
@click.option("--count-column", default=None,
              help="Column holding the counts (an integer; null or empty = no count). Default: count, cooccurrence, co_count or n_docs.")
@click.option("--status-column", default=None,
              help="Optional column: a status other than ok (or linked) marks the question unlinked. Default: status or label if present.")
@click.option("--question-column", default=None,
              help="Optional column of question texts, checked against the QA file. Default: question or text if present.")
@click.option("--method-column", default=None,
              help="Optional column saying how each count was obtained. Default: method or count_method if present, else \"external\".")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def import_cmd(table, qa, out, qa_format, qid_column, count_column, status_column, question_column, method_column, overwrite) -> None:
    """Import TABLE, per-question counts made elsewhere, as a counts folder that `rag eval` reads.

    \b
    TABLE is a .parquet, .jsonl or .tsv file (or a folder holding counts.parquet/.jsonl/.tsv) with one row
    per question: its id as rag numbers the questions of --qa (`rag qa info`) and its count. The ids and any
    question texts are checked against --qa; the folder records the QA file's fingerprint, so an evaluation
    of another QA file refuses it. Each question's method is "external" unless a method column says otherwise.
    """
    from rag.entities.external import COLUMNS, import_table

    cols = {"qid": qid_column, "count": count_column, "status": status_column, "question": question_column, "method": method_column}
    rows, manifest = import_table(table, qa, out, columns=cols, qa_format=qa_format, overwrite=overwrite)
    used = manifest["source"]["columns"]
    used = ", ".join(f"{k} <- {used[k]}" for k in COLUMNS if k in used)
    click.echo(f"imported {len(rows):,} questions from {table} ({used})")
    _print_summary(out, manifest["summary"])


@counts.command("compare")
@click.argument("path", type=_P)
@click.option("--external", required=True, type=_P,
              help="TREC qrels file, or a folder with qrels*.txt and topics*.tsv (e.g. NanoKnow's nanoknow-nq/).")
@click.option("--topics", multiple=True, type=_P, help="`qid TAB question` TSV(s) for a qrels file; a folder's topics*.tsv are found.")
@click.option("--match-by", type=click.Choice(["text", "id"]), default="text", show_default=True,
              help="Match questions by normalized text, or by record number (external qid 17 = record 17 of the QA file).")
@click.option("--out", type=_P, default=None, help="Also write the comparison as JSON here.")
def compare_cmd(path, external, topics, match_by, out) -> None:
    """Spearman correlation between the counts in PATH and external per-question counts (number of qrels)."""
    from dataclasses import asdict

    from rag.artifacts import write_json_atomic
    from rag.counts import load_counts
    from rag.entities.external import compare, load_external

    rows, _ = load_counts(path)
    c = compare(rows, load_external(external, topics), match_by=match_by)
    click.echo(f"matched {c.n_shared_all:,} of {c.n_ours:,} questions ({c.n_external:,} external) by {match_by}")
    click.echo(f"Spearman rho over {c.n_shared:,} linked questions: {c.spearman:.3f} (p = {c.p_value:.2g})")
    click.echo(f"Spearman rho over all {c.n_shared_all:,} matched (unlinked = 0): {c.spearman_all:.3f}")
    if out:
        write_json_atomic(out, asdict(c))



@counts.command("evaluate")
@click.argument("path", type=_P)
@click.option("--templates", required=True, type=_P,
              help="JSON {relation: template with [X]} (EntityQuestions' relation_query_templates.json, or your own): the "
              "questions' gold subjects are recovered by matching their template.")
@click.option("--out", type=_P, default=None, help="Also write the result as OUT.json and OUT.md.")
@click.option("--examples", type=click.IntRange(min=0), default=5, show_default=True, help="Wrong links listed per class.")
def evaluate_cmd(path, templates, out, examples) -> None:
    """Score the question entities of the counts in PATH against gold subjects from question templates.

    Each question's chosen question entity is exact (found by an entity link or by the surface fallback), a
    sub-span of the subject, another entity, or unlinked; the answer entity likewise against the gold answers.
    Per relation and overall.
    """
    from rag.artifacts import write_json_atomic, write_text_atomic
    from rag.counts import load_counts
    from rag.entities.templates import evaluate_counts, load_templates, to_markdown

    rows, _ = load_counts(path)
    result = evaluate_counts(rows, load_templates(templates), examples=examples)
    md = to_markdown(result)
    click.echo(md)
    if out:
        out = Path(out)
        write_json_atomic(out.with_suffix(".json"), result)
        write_text_atomic(out.with_suffix(".md"), md)
