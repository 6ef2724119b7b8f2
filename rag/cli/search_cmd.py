"""`rag search QUERY --index PATH`: the top-k passages for one query, as text or JSON."""
from __future__ import annotations

import json
from pathlib import Path

import click

from rag.errors import BadInputError

# flag -> query-time option name, for indexes whose SEARCH_OPTIONS include it
SEARCH_FLAGS = {"--ef-search": "ef_search", "--nprobe": "nprobe", "--k-factor": "k_factor"}
FLAG_FOR = {"--ef-search": "dense HNSW indexes", "--nprobe": "dense IVF indexes",
            "--k-factor": "dense indexes with a re-ranking stage (factory ending in ,RFlat)"}


def _snippet(text: str, width: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


@click.command()
@click.argument("query")
@click.option("--index", "index_path", required=True, type=click.Path(path_type=Path),
              help="Index folder (from `rag index build`); its manifest says which kind it is.")
@click.option("-k", "--k", "k", default=10, show_default=True, type=int, help="How many passages to return.")
@click.option("--passages", type=click.Path(path_type=Path), default=None,
              help="Passage store to read hits from. Default: the store recorded in the index manifest; "
                   "it must be the same store (checked by fingerprint).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {pid, rank, score, title, text} instead of a table.")
@click.option("--ef-search", type=int, default=None,
              help="[dense, HNSW] Candidates examined per query: higher is better recall and slower.")
@click.option("--nprobe", type=int, default=None,
              help="[dense, IVF] Inverted lists visited per query: higher is better recall and slower.")
@click.option("--k-factor", type=int, default=None,
              help="[dense, ...,RFlat] Candidates re-scored exactly per requested hit (k_factor * k): higher is "
                   "better recall and slower.")
def search(query: str, index_path: Path, k: int, passages: Path | None, as_json: bool, ef_search, nprobe,
           k_factor) -> None:
    """Search an index for QUERY and print rank, score, title and a snippet of each passage.

    \b
    Example:
      rag search "who wrote the declaration of independence" --index indexes/bm25 -k 5
    """
    from rag.retrievers import load_index

    from rag.artifacts import read_manifest

    retriever = load_index(index_path, passages=passages)
    options = {"ef_search": ef_search, "nprobe": nprobe, "k_factor": k_factor}
    for flag, name in SEARCH_FLAGS.items():
        if options[name] is not None and name not in retriever.SEARCH_OPTIONS:
            kind = read_manifest(index_path)["kind"]
            raise BadInputError(f"{flag} does not apply to this {kind} index; it is for {FLAG_FOR[flag]}")
    retriever.configure(**options)
    hits = retriever.search(query, k)
    found = retriever.passages(hits)
    if as_json:
        rows = [{"pid": h.pid, "rank": h.rank, "score": h.score, "title": p.title, "text": p.text} for h, p in zip(hits, found)]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no passage matches the query", err=True)
    for h, p in zip(hits, found):
        click.echo(f"{h.rank:>3}  {h.score:9.4f}  {p.title}  [{h.pid}]")
        click.echo(f"     {_snippet(p.text)}")
