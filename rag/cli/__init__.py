"""The `rag` command line. Subcommands live in their own modules and are imported only when used."""
from __future__ import annotations

import importlib
import logging
import sys

import click

from rag.errors import RagError

# command name -> (module, attribute). Built-ins are listed here like any add-on would be.
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("rag.cli.corpus_cmd", "corpus"),
    "index": ("rag.cli.index_cmd", "index"),
    "search": ("rag.cli.search_cmd", "search"),
    "ask": ("rag.cli.ask_cmd", "ask"),
    "models": ("rag.cli.models_cmd", "models"),
    "link": ("rag.cli.link_cmd", "link"),
    "counts": ("rag.cli.counts_cmd", "counts"),
    "qa": ("rag.cli.qa_cmd", "qa"),
    "eval": ("rag.cli.eval_cmd", "eval_group"),
    "bench": ("rag.cli.bench_cmd", "bench"),
    "world": ("rag.cli.world_cmd", "world"),
    "verify": ("rag.cli.verify_cmd", "verify"),
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs (keeps `rag --help` fast)."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RagError as e:
            _fail(ctx, f"error: {e}")
        except OSError as e:  # the environment (disk full, permissions, ...), not a bug: one line, exit 2
            _fail(ctx, f"error: {environment_message(e)}")
        except KeyboardInterrupt:
            # builds write into OUT.partial/ and runs append whole records, so what is finished stays and
            # nothing half-written is taken for done
            click.echo(f"\ninterrupted. Nothing half-written is kept; run the same command again to continue "
                       f"(finished records, shards and steps are reused):\n  {_command_line()}", err=True)
            ctx.exit(130)


def _command_line() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["rag", *sys.argv[1:]])


def environment_message(e: OSError) -> str:
    """One line naming the file and what to do, for an OSError raised by the machine rather than by rag."""
    import errno

    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"no space left on the device{where}; free some space and rerun (interrupted builds and runs resume)"
    if e.errno == errno.EFBIG:  # a file-size limit (ulimit -f) or a file system's maximum file size
        return f"file too large for this system's file-size limit{where}; raise the limit (ulimit -f) or free space and rerun"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}; choose a folder you can write to, or fix its permissions"
    if e.errno == errno.EROFS:
        return f"read-only file system{where}; write the output somewhere else"
    if e.errno == errno.ENOENT:
        return f"no such file or folder{where}"
    return f"{e.strerror or e}{where}"


def _fail(ctx, message: str) -> None:
    if ctx.params.get("verbose"):
        import traceback

        traceback.print_exc()
    click.echo(message, err=True)
    ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug); errors print their traceback.")
def main(verbose: int) -> None:
    """rag: how much a language model knows on its own versus how much retrieval adds.

    Build passages from a corpus, index them (BM25, dense, hybrid), search them, and (in later
    commands) answer and evaluate questions bucketed by relevant-document count.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # long commands' stage lines (rag.progress: started / done, with counts and times) are shown by default
    logging.getLogger("rag.progress").setLevel(min(level, logging.INFO))
