"""`rag models list|path|auto`: the named reader models, whether they are installed, their GGUF files, and which
backend `backend: auto` reads a model with on this machine."""
from __future__ import annotations

import json

import click


@click.group()
def models() -> None:
    """Named reader models that install from PyPI packages (no model hub needed)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_models(as_json: bool) -> None:
    """Show each named model, its size, whether its packages are installed, and the pip extra for it.

    Models split across packages are assembled (and SHA-256 checked) on first use; "assembled" says
    whether that already happened in the cache folder ($RAG_CACHE/models, else ~/.cache/rag/models).
    """
    from rag.readers.models import NAMED_MODELS, assembled_path, is_installed

    rows = []
    for name in sorted(NAMED_MODELS, key=lambda n: NAMED_MODELS[n].params):
        m = NAMED_MODELS[name]
        assembled = None
        if m.parts:
            assembled = assembled_path(m).exists()
        rows.append({
            "name": name,
            "params": m.params,
            "installed": is_installed(name),
            "assembled": assembled,
            "extra": m.extra,
            "packages": list(m.packages),
            "prompt_format": m.prompt_format,
            "description": m.description,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'model':<20} {'params':>7}  {'installed':<9}  {'install with':<28} description")
    for r in rows:
        state = "yes" if r["installed"] else "no"
        if r["installed"] and r["assembled"] is False:
            state = "yes*"
        click.echo(f"{r['name']:<20} {r['params'] / 1e6:>6.0f}M  {state:<9}  "
                   f"{'pip install ' + repr('rag[' + r['extra'] + ']'):<28} {r['description']}")
    if any(r["installed"] and r["assembled"] is False for r in rows):
        click.echo("* installed; assembled from its parts (and checked) on first use, or now with `rag models path NAME`")


@models.command("path")
@click.argument("name")
def model_path_cmd(name: str) -> None:
    """Print the GGUF file of named model NAME, assembling and verifying it first if needed."""
    from rag.readers.models import model_path

    click.echo(str(model_path(name)))


@models.command("auto")
@click.argument("model")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--refresh", is_flag=True, help="Measure the machine's matmul peaks and time the backends again instead of "
              "using the cached measurements.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole choice (reason and measurements) as JSON.")
def auto_cmd(model: str, device: str, refresh: bool, as_json: bool) -> None:
    """Show which backend and precision `backend: auto` picks for MODEL (a named model, a .gguf file, a folder or a
    hub id) on this machine, and why. The first call for a model times the candidates (cached; README, "Fast
    readers and `backend: auto`")."""
    from rag.readers.auto import check_model_ref, choose_backend

    check_model_ref(model)
    choice = choose_backend(model, device, refresh=refresh)
    if as_json:
        click.echo(json.dumps(choice.as_dict(), indent=2, default=str))
        return
    click.echo(f"{choice.backend} {choice.precision}: {choice.reason}")
    timed = choice.measured.get("timed_seconds")
    if timed:
        click.echo("timed on an evaluation's calls here (s): " + ", ".join(f"{k} {v}" for k, v in timed.items()))
