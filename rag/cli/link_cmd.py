"""`rag link "text"`: print the entity mentions a linker finds (also defines the linker options shared with `rag counts`)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import click


def linker_options(f):
    """--linker and its backends' options; the command receives `linker_name` and `linker_opts`."""

    @click.option("--linker", "linker_name", type=click.Choice(["lexicon", "spacy", "spotlight"]), default="lexicon", show_default=True,
                  help="lexicon: offline Aho-Corasick over a lexicon (default). spacy: lexicon mentions kept only inside "
                  "spaCy named-entity spans (needs `pip install 'rag[ner]'`). spotlight: a DBpedia Spotlight server "
                  "(the paper's linker; you run the server).")
    @click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
                  help="lexicon/spacy: link an ambiguous surface form only if its best entity's prior P(entity|form) is at "
                  "least this (and strictly ahead of the runner-up).")
    @click.option("--engine", type=click.Choice(["ngram-hash", "ahocorasick-rs", "pyahocorasick"]), default="ngram-hash", show_default=True,
                  help="lexicon/spacy: matching engine. ngram-hash (numpy word n-gram hashing) and ahocorasick-rs (a character "
                  "automaton) find the same leftmost-longest matches, ngram-hash ~3x faster; pyahocorasick's iter_long can miss "
                  "a match right after a longer candidate that failed.")
    @click.option("--name-spans/--no-name-spans", default=True, show_default=True,
                  help="lexicon/spacy: do not link a capitalized mention that is a strict part of a longer proper-name "
                  "span (\"Robert\" in \"Robert A. Miller\"; rules in rag/entities/spans.py). --no-name-spans links "
                  "every part, as before.")
    @click.option("--ner-labels", default=None, metavar="L1,L2",
                  help="spacy: only these NER labels (e.g. PERSON,ORG,GPE,LOC,WORK_OF_ART); default all.")
    @click.option("--spotlight-url", default="http://localhost:2222/rest/annotate", show_default=True,
                  help="spotlight: the server's /rest/annotate endpoint.")
    @click.option("--confidence", type=click.FloatRange(0.0, 1.0), default=0.4, show_default=True,
                  help="spotlight: disambiguation confidence (Kandpal et al. used 0.4).")
    @click.option("--support", type=click.IntRange(min=0), default=20, show_default=True,
                  help="spotlight: minimum number of Wikipedia in-links of an entity (Kandpal et al. used 20).")
    @functools.wraps(f)
    def wrapper(*args, linker_name, threshold, engine, name_spans, ner_labels, spotlight_url, confidence, support, **kwargs):
        if linker_name == "spotlight":
            opts = {"url": spotlight_url, "confidence": confidence, "support": support}
        else:
            opts = {"threshold": threshold, "engine": engine}
            if not name_spans:
                opts["name_spans"] = False
            if linker_name == "spacy" and ner_labels:
                opts["labels"] = [x.strip() for x in ner_labels.split(",") if x.strip()]
        return f(*args, linker_name=linker_name, linker_opts=opts, **kwargs)

    return wrapper


def make_cli_linker(linker_name: str, linker_opts: dict, lexicon: Path | None):
    from rag.entities.linkers import make_linker

    opts = dict(linker_opts)
    if linker_name in ("lexicon", "spacy"):
        opts["lexicon"] = lexicon
    return make_linker(linker_name, **opts)


@click.command("link")
@click.argument("texts", nargs=-1, required=True)
@click.option("--lexicon", type=click.Path(path_type=Path), default=None,
              help="Lexicon folder (from `rag counts lexicon`, or the lexicon/ inside a `rag counts build` output). "
              "Needed by the lexicon and spacy linkers. Loading a full DBpedia lexicon takes ~20-40 s.")
@linker_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per mention instead of a table.")
def link(texts, lexicon, linker_name, linker_opts, as_json) -> None:
    """Link each TEXT and print its mentions: start, end, surface form, entity, score.

    Offsets are character offsets into the text; score is the prior P(entity|form) (lexicon) or
    Spotlight's similarity score.

    \b
    Examples:
      rag link --lexicon runs/nq-counts/lexicon "Dante Alighieri was born in Florence."
      rag link --linker spotlight "Who painted the Mona Lisa?"
    """
    linker = make_cli_linker(linker_name, linker_opts, lexicon)
    for i, (text, mentions) in enumerate(zip(texts, linker.link_batch(list(texts)))):
        if as_json:
            for m in mentions:
                click.echo(json.dumps({"text": i, "start": m.start, "end": m.end, "surface": m.surface, "entity": m.entity, "score": round(m.score, 4)}, ensure_ascii=False))
            continue
        if len(texts) > 1:
            click.echo(f"# {text}")
        if not mentions:
            click.echo("(no mentions)")
        for m in mentions:
            click.echo(f"{m.start:>5} {m.end:>5}  {m.surface!r:<30} -> {m.entity}  ({m.score:.2f})")
