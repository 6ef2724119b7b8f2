"""Artifact folders: every built thing is a folder with a manifest.json, written atomically.

Layout of a manifest (JSON object):
    format      int, bumped when the folder layout changes
    kind        "passages" | "index/bm25" | "index/dense" | ...
    created     ISO time
    libraries   {name: version}
    ...         kind-specific fields (inputs' fingerprints, parameters, counts)
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence

from rag.errors import ArtifactError

MANIFEST = "manifest.json"


def library_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("rag", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def quick_fingerprint(path: str | os.PathLike) -> str:
    """Cheap identity of a (possibly huge) input file: size, mtime and the first/last MiB."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256(f"{p.name}:{st.st_size}".encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:32]


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json_file(path: str | os.PathLike):
    """A JSON file of an artifact; a damaged or missing one is an ArtifactError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing; rebuild the artifact") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: damaged ({type(e).__name__}: {e}); rebuild the artifact") from None


def write_manifest(folder: str | os.PathLike, kind: str, format: int, libraries: tuple[str, ...] = (), **fields) -> dict:
    manifest = {
        "kind": kind,
        "format": format,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "libraries": library_versions(*libraries),
        **fields,
    }
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    return manifest


def read_manifest(folder: str | os.PathLike, kind: str | None = None, format: int | None = None) -> dict:
    """Read and check a manifest; errors say what to rebuild."""
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactError(f"{folder}: no such folder; build it first (see `rag --help`)")
    path = folder / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{folder}: no {MANIFEST}; this is not a finished artifact (an interrupted build?). Rebuild it.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({e}); rebuild the artifact") from e
    if kind is not None and not str(manifest.get("kind", "")).startswith(kind):
        raise ArtifactError(f"{folder}: is a {manifest.get('kind')!r} artifact, expected {kind!r}")
    if format is not None and manifest.get("format") != format:
        raise ArtifactError(
            f"{folder}: format {manifest.get('format')} but this version of rag reads format {format}; rebuild it"
        )
    return manifest


def check_files(folder: str | os.PathLike, sizes: dict[str, int]) -> None:
    """Refuse truncated or missing files, using the sizes recorded in the manifest."""
    folder = Path(folder)
    for name, size in sizes.items():
        p = folder / name
        if not p.exists():
            raise ArtifactError(f"{folder}: missing file {name}; rebuild the artifact")
        if p.stat().st_size != size:
            raise ArtifactError(
                f"{folder}: {name} is {p.stat().st_size} bytes, the manifest says {size} (truncated or replaced); rebuild"
            )


def file_sizes(folder: str | os.PathLike, names) -> dict[str, int]:
    return {n: (Path(folder) / n).stat().st_size for n in names}


def partial_dir(out: str | os.PathLike) -> Path:
    """Where a build of `out` works before it is renamed into place; kept after a failure so builds resume."""
    out = Path(out)
    return out.with_name(f"{out.name}.partial")


def check_replaceable(out: str | os.PathLike, kind: str | None = None, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse to let --overwrite replace `out` unless it is an artifact this command would have written: a folder
    with a manifest (of `kind`, when given) that is none of the command's `inputs` and holds none of them."""
    out = Path(out)
    where = f"{out} exists and"
    if not out.is_dir():
        raise ArtifactError(f"{where} is a file, not an artifact folder; --overwrite replaces only artifacts. "
                            f"Choose another --out, or move the file away")
    for i in inputs:
        i = Path(i).resolve()
        o = out.resolve()
        if i == o or o in i.parents or i in o.parents:
            raise ArtifactError(f"{where} {'is' if i == o else 'holds' if o in i.parents else 'is inside'} an input of "
                                f"this command ({i}); --overwrite never replaces an input. Choose another --out")
    if not (out / MANIFEST).exists():
        if not any(out.iterdir()):
            return
        raise ArtifactError(f"{where} is not an artifact folder (no {MANIFEST}; it holds "
                            f"{', '.join(sorted(p.name for p in out.iterdir())[:5])}{', ...' if len(list(out.iterdir())) > 5 else ''}); "
                            f"--overwrite replaces only artifacts. Choose another --out")
    if kind is not None:
        try:
            have = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError):
            have = None
        if not str(have or "").startswith(kind):
            raise ArtifactError(f"{where} holds a {have!r} artifact, not a {kind!r} one; --overwrite replaces only an "
                                f"artifact of the kind this command builds. Choose another --out")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False, kind: str | None = None,
               inputs: Sequence[str | os.PathLike] = ()) -> Iterator[Path]:
    """Build into `out.partial/`, then rename to `out` only if the block succeeds, holding `out`'s write lock
    (rag.locks) throughout so a second builder of the same `out` is refused.

    With resume=True a leftover partial folder is reused (the builder checks it belongs to the same
    build) and kept on failure; otherwise it is wiped first and removed on failure, so nothing is half-written.
    `overwrite` replaces an existing `out` only when check_replaceable(out, kind, inputs) allows it.
    """
    from rag.locks import writer_lock

    out = Path(out)
    with writer_lock(out):
        if out.exists() and not overwrite:
            raise ArtifactError(f"{out} already exists; pass --overwrite to replace it")
        if out.exists():
            check_replaceable(out, kind, inputs)
        tmp = partial_dir(out)
        if tmp.exists() and not resume:
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            yield tmp
        except BaseException:
            if not resume:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
