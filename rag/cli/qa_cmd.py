"""`rag qa download|info`: fetch the public QA datasets (checksummed) and inspect QA files."""
from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def qa() -> None:
    """Question-answering datasets: NQ-open, DPR topics (NQ, TriviaQA), EntityQuestions."""


@qa.command("download")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the dataset into.")
@click.option("--from", "src", type=click.Path(path_type=Path), default=None,
              help="Use this local copy (the file, a folder holding it, or the original zip) instead of downloading.")
@click.option("--no-verify", is_flag=True, help="Accept files whose SHA-256 differs from the recorded one.")
def download_cmd(name: str, out: Path, src: Path | None, no_verify: bool) -> None:
    """Fetch dataset NAME from its canonical public location into --out, checking its SHA-256.

    NAME is one of: nq-open, nq-open-efficientqa-dev, nq-dpr, triviaqa-dpr, entityquestions.
    Prints the path to give `load_questions` / the evaluation commands.
    """
    from rag.qa import download

    click.echo(str(download(name, out, src=src, verify=not no_verify)))


@qa.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default=None, help="nq-open, dpr-tsv, entityquestions, curatedtrec or jsonl. Default: from the name.")
@click.option("--show", type=int, default=3, show_default=True, help="How many questions to print.")
def info(path: Path, fmt: str | None, show: int) -> None:
    """Load a QA file (or EntityQuestions folder) and print counts and the first questions with their ids."""
    from collections import Counter

    from rag.qa import load_questions

    qs = load_questions(path, format=fmt)
    click.echo(f"{len(qs)} questions, {sum(len(q.answers) for q in qs) / len(qs):.2f} answers each on average")
    if qs[0].meta.get("match_type") == "regex":
        literal = sum(1 for q in qs if q.meta.get("answer_aliases"))
        click.echo(f"answers are regular expressions; {literal} of {len(qs)} questions have literal aliases to link")
    relations = Counter(q.meta.get("relation") for q in qs if q.meta.get("relation"))
    if relations:
        click.echo(f"{len(relations)} relations: " + ", ".join(f"{r} {n}" for r, n in sorted(relations.items())))
    for q in qs[:show]:
        click.echo(json.dumps({"qid": q.qid, "question": q.question, "answers": list(q.answers)}, ensure_ascii=False))
