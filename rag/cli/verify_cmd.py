"""`rag verify PATH`: check every file of an artifact against the sha256 recorded when it was built."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def verify(path: Path) -> None:
    """Check every file of an artifact folder (passage store, bm25 / dense / hybrid index, counts, run folder,
    world) against the size and full sha256 its manifest recorded at build time, and the artifacts nested in it
    (a hybrid's members too). Prints one OK line, or one line per mismatch and exits with status 2.

    Loading an artifact checks only sizes and a sampled hash (a few 64 KiB blocks); this reads every byte.

    \b
    Example:
      rag verify indexes/wiki-bm25
    """
    from rag.artifacts import read_manifest, verify_folder

    manifest = read_manifest(path)  # not an artifact at all: the usual one-line error
    problems, notes = verify_folder(path)
    checked = [path]
    if not problems:
        for m in manifest.get("members") or []:  # a hybrid index: its members are artifacts of their own
            rel = (path / m.get("relpath", "")).resolve()
            member = rel if m.get("relpath") and rel.exists() else Path(m.get("path", ""))
            p, n = verify_folder(member)
            problems += p
            notes += n
            checked.append(member)
    for n in notes:
        click.echo(f"note: {n}", err=True)
    if problems:
        for p in problems:
            click.echo(f"MISMATCH {p}")
        click.echo(f"{len(problems)} problem(s); rebuild what is damaged", err=True)
        click.get_current_context().exit(2)
    click.echo(f"OK {', '.join(map(str, checked))}: every recorded file matches")
