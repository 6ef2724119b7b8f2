"""`rag corpus build` and `rag corpus info`: corpus files -> passage store, and what a store holds."""
from __future__ import annotations

import time
from pathlib import Path

import click

from rag.cli.engine_opts import engine_options
from rag.corpus.chunking import DEFAULT_WORDS

_FORMATS_HELP = (
    "wikiextractor (JSON lines with id/url/title/text), wikiextractor-doc (<doc> blocks), jsonl, tsv "
    "(header row), parquet, mediawiki-xml (pages-articles dump)"
)


@click.group()
def corpus() -> None:
    """Build DPR-style passage stores from corpus files, and inspect them."""


@corpus.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Folder to write the passage store to (passages.parquet, redirects.tsv, manifest.json). "
              "Written atomically: a failed build leaves nothing here.")
@click.option("--format", "fmt", default=None, metavar="NAME",
              help=f"Input format for every SOURCE; default: detected per file from its name (and, for .jsonl or "
              f"names without a suffix, its first line). One of: {_FORMATS_HELP}.")
@click.option("--words", default=DEFAULT_WORDS, show_default=True, type=click.IntRange(min=1),
              help="Passage size in whitespace-separated words. Passages are consecutive, non-overlapping "
              "windows; a document's last passage may be shorter (kept, as in DPR).")
@click.option("--id-field", default="id", show_default=True,
              help="Field (jsonl/parquet) or column (tsv) holding the document id.")
@click.option("--title-field", default="title", show_default=True,
              help="Field holding the title; '' for records without titles (passages then have an empty title).")
@click.option("--text-field", default="text", show_default=True, help="Field holding the document text.")
@click.option("--number-docs", is_flag=True,
              help="Records have no id: use the 1-based line (or row) number as the document id instead of --id-field.")
@click.option("--prefix-ids", is_flag=True,
              help="Prefix every document id with its file's name (e.g. 'wiki-2015:12'). Needed when sources reuse "
              "the same ids; without it a repeated id is an error.")
@click.option("--skip-bad", is_flag=True,
              help="Skip malformed records (not JSON, invalid UTF-8, missing fields, wrong column count) instead of "
              "stopping; they are counted in the summary and the manifest.")
@click.option("--limit-docs", type=click.IntRange(min=1), default=None,
              help="Stop after this many documents (over all sources), e.g. to build a small test store.")
@click.option("--overwrite", is_flag=True, help="Replace the store at --out if it exists.")
@click.option("--no-progress", is_flag=True,
              help="No progress bar: one log line when reading starts and one when it ends (as when stderr is not a terminal).")
@engine_options(shards=False)
def build(sources, out, fmt, words, id_field, title_field, text_field, number_docs, prefix_ids, skip_bad,
          limit_docs, overwrite, no_progress, exec_engine) -> None:
    """Read SOURCE files (or folders of them) and write their passages to --out.

    Each document is split into consecutive windows of --words words; each passage keeps the document
    title and gets the id "<doc id>#<position>". Plain, .gz, .bz2 and .xz files are read as streams, so
    corpora larger than memory are fine. Redirects found in MediaWiki dumps are written to
    OUT/redirects.tsv (alias TAB target).

    \b
    Examples:
      rag corpus build enwiki-2021.jsonl.xz --out indexes/wiki2021
      rag corpus build pages-articles.xml.bz2 --out indexes/dump
      rag corpus build docs.tsv --id-field docid --title-field '' --out indexes/docs
      rag corpus build wikiextractor-out/ --out indexes/wiki --exec-engine ray --ray-address head:6379

    With --exec-engine ray each source file is read by its own worker (one shard per file; a resumed build skips
    the finished files), and the store is the same, byte for byte, as a local build's.
    """
    from rag.corpus.build import build_passages, expand_sources
    from rag.progress import bar

    paths = expand_sources(sources)
    total = sum(p.stat().st_size for p in paths)
    counts = {"documents": 0, "passages": 0}
    t0 = time.perf_counter()
    with bar(f"reading {len(paths)} source{'s' if len(paths) > 1 else ''}", total=total, unit="B", unit_scale=True,
             enabled=not no_progress, unit_divisor=1024) as b:

        def progress(nbytes: int, docs: int, passages: int) -> None:
            counts["documents"] += docs
            counts["passages"] += passages
            b.update(nbytes)
            if counts["documents"] % 500 == 0:
                b.set_postfix(counts, refresh=False)

        manifest = build_passages(
            paths, out, format=fmt, words=words, id_field=id_field, title_field=title_field or None,
            text_field=text_field, number_docs=number_docs, prefix_ids=prefix_ids, skip_bad=skip_bad,
            overwrite=overwrite, limit_docs=limit_docs, progress=progress, engine=exec_engine,
        )
        b.set_postfix(counts, refresh=False)
    seconds = time.perf_counter() - t0
    click.echo(_summary(out, manifest, seconds))


def _summary(out: Path, m: dict, seconds: float | None = None) -> str:
    lines = [f"passages: {out}"]
    for s in m["sources"]:
        bad = f", {s['n_bad']} bad records skipped" if s["n_bad"] else ""
        red = f", {s['n_redirects']:,} redirects" if s["n_redirects"] else ""
        lines.append(f"  {s['path']} [{s['format']}]: {s['n_docs']:,} documents -> {s['n_passages']:,} passages{red}{bad}")
        lines.extend(f"    skipped {e}" for e in s.get("bad_examples", []))
    lines.append(
        f"  total: {m['n_docs_read']:,} documents ({m['n_empty_docs']:,} empty), {m['n_passages']:,} passages of "
        f"<= {m['words']} words, {m['n_redirects']:,} redirects, {m['n_bad']:,} bad records skipped"
    )
    if m.get("limit_docs"):
        lines.append(f"  stopped after --limit-docs {m['limit_docs']}")
    if seconds:
        rate = f"{m['n_passages'] / seconds:,.0f} passages/s, {m['n_docs_read'] / seconds:,.0f} documents/s"
        lines.append(f"  {seconds:.1f} s ({rate})")
    return "\n".join(lines)


@corpus.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--row", default=0, show_default=True, type=click.IntRange(min=0), help="Which passage to show as a sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON instead of the summary.")
def info(path, row, as_json) -> None:
    """Summarise the passage store at PATH (sources, counts, size on disk) and show one passage."""
    import json

    from rag.corpus.store import PassageStore

    store = PassageStore(path)
    m = store.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2, ensure_ascii=False))
        return
    size = sum(m["files"].values())
    click.echo(_summary(path, m))
    click.echo(f"  built {m['created']} by rag {m['libraries'].get('rag')}, {size / 2**20:.1f} MiB on disk, "
               f"fingerprint {m['fingerprint']}")
    if row >= len(store):
        raise click.BadParameter(f"the store has {len(store)} passages (rows 0..{len(store) - 1})", param_hint="--row")
    p = store.get_rows([row])[0]
    click.echo(f"\npassage {row}: pid={p.pid} title={p.title!r}\n  {p.text}")
    first = next(store.redirects(), None)
    if first is not None:
        click.echo(f"\nredirect: {first[0]!r} -> {first[1]!r}")
