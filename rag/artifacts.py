"""Artifact folders: every built thing is a folder with a manifest.json, written atomically.

Layout of a manifest (JSON object):
    format      int, bumped when the folder layout changes
    kind        "passages" | "index/bm25" | "index/dense" | ...
    created     ISO time
    libraries   {name: version}
    files       {name: size in bytes}                        (most kinds)
    hashes      {name: {"sha256": hex, "sample": hex}}       (since hashed manifests; absent in older folders)
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
SAMPLE_BLOCK = 1 << 16  # bytes per sampled block
# what to run to rebuild an artifact, by kind prefix (for messages)
REBUILD = {"passages": "rag corpus build ...", "index/": "rag index build ...", "counts": "rag counts build ...",
           "postings": "rag counts postings ...", "lexicon": "rag counts lexicon ...", "run/": "rag eval run ... --overwrite",
           "world": "rag bench --overwrite", "model/tiny-lm": "rag bench --overwrite"}


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


def sample_offsets(size: int) -> list[int]:
    """Where the sampled hash reads SAMPLE_BLOCK bytes: the start, every power of two from 64 KiB on, and the end.
    Fixed by the size alone, so build and load agree; ~20 blocks (1.3 MiB) for a 64 GiB file."""
    offsets = [0]
    k = SAMPLE_BLOCK
    while k < size:
        offsets.append(k)
        k <<= 1
    offsets.append(max(0, size - SAMPLE_BLOCK))
    return offsets


def sampled_hash(path: str | os.PathLike) -> str:
    """Cheap content check of a built file: its size and the blocks at sample_offsets (the whole file below 64 KiB)."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for off in sample_offsets(size):
            f.seek(off)
            h.update(f.read(SAMPLE_BLOCK))
    return h.hexdigest()[:32]


# resolved path -> (size, mtime_ns, sha256) of files hashed while they were written (HashingFile)
_STREAMED: dict[str, tuple[int, int, str]] = {}


class HashingFile:
    """A binary file opened for writing that hashes the bytes as they pass, so a manifest's sha256 costs no second
    read. For writers that stream through a file object (pyarrow's ParquetWriter, np.save, our text files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = open(self.path, "wb")
        self._h = hashlib.sha256()
        self._n = 0

    def write(self, data) -> int:
        self._h.update(data)
        self._n += len(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self._n

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False  # a seek would invalidate the running hash

    def readable(self) -> bool:
        return False

    def flush(self) -> None:
        self._f.flush()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        st = self.path.stat()
        if st.st_size == self._n:
            _STREAMED[str(self.path.resolve())] = (st.st_size, st.st_mtime_ns, self._h.hexdigest())

    def __enter__(self) -> "HashingFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_digest(path: str | os.PathLike) -> dict[str, str]:
    """{"sha256", "sample"} of a finished file. The sha256 comes from HashingFile when the file was streamed through
    one and is unchanged since; files written by libraries with no file-object hook (faiss.write_index, bm25s,
    np.memmap chunks of a resumable encode) are read once right after writing, while they are in the page cache."""
    path = Path(path)
    st = path.stat()
    got = _STREAMED.pop(str(path.resolve()), None)
    sha = got[2] if got and got[:2] == (st.st_size, st.st_mtime_ns) else file_sha256(path)
    return {"sha256": sha, "sample": sampled_hash(path)}


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
    data = text.encode("utf-8")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        st = path.stat()
        _STREAMED[str(path.resolve())] = (st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())
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


def load_npy(path: str | os.PathLike, mmap_mode: str | None = "r", kind: str | None = None):
    """np.load of an artifact's array; a damaged file (bad header, short data) is an ArtifactError naming it."""
    import numpy as np

    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the machine's error (permissions, disk): the CLI names it
        raise ArtifactError(f"{path}: cannot be read as a .npy array ({e}); the file is damaged: rebuild with: "
                            f"{rebuild_hint(kind)}") from e


def write_manifest(folder: str | os.PathLike, kind: str, format: int, libraries: tuple[str, ...] = (), **fields) -> dict:
    manifest = {
        "kind": kind,
        "format": format,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "libraries": library_versions(*libraries),
        **fields,
    }
    if isinstance(fields.get("files"), dict) and "hashes" not in fields:
        manifest["hashes"] = {name: file_digest(Path(folder) / name) for name, _ in file_entries(fields["files"])}
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    _STREAMED.pop(str((Path(folder) / MANIFEST).resolve()), None)
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
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({e}); rebuild the artifact") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: manifest is not a JSON object; rebuild the artifact")
    if kind is not None and not str(manifest.get("kind", "")).startswith(kind):
        raise ArtifactError(f"{path}: is a {manifest.get('kind')!r} artifact, expected {kind!r} (a wrong path, or "
                            f"an edited manifest); rebuild with: {rebuild_hint(kind)}")
    if format is not None and manifest.get("format") != format:
        raise ArtifactError(
            f"{folder}: format {manifest.get('format')} but this version of rag reads format {format}; rebuild it"
        )
    return manifest


def rebuild_hint(kind: str | None) -> str:
    kind = str(kind or "")
    return next((cmd for prefix, cmd in REBUILD.items() if kind.startswith(prefix)), "the command that built it")


def check_files(folder: str | os.PathLike, sizes: dict[str, int], hashes: dict[str, dict] | None = None,
                kind: str | None = None) -> None:
    """Refuse missing, truncated or damaged files: sizes, and the sampled hash where the manifest records hashes
    (older artifacts have none). `rag verify` checks the full hashes."""
    folder = Path(folder)
    fix = f"rebuild with: {rebuild_hint(kind)}"
    for name, size in sizes.items():
        p = folder / name
        if not p.exists():
            raise ArtifactError(f"{folder}: missing file {name}; {fix}")
        if p.stat().st_size != size:
            raise ArtifactError(f"{p} is {p.stat().st_size} bytes, the manifest says {size} (truncated or replaced); {fix}")
        want = (hashes or {}).get(name)
        if want and want.get("sample") and sampled_hash(p) != want["sample"]:
            raise ArtifactError(f"{p}: content differs from the hash recorded at build time (damaged in place); {fix}")


def file_entries(files: dict) -> list[tuple[str, int | None]]:
    """(file name, size or None) of a manifest's `files`: {file name: size} in builders, {role: file name} in
    world runs (no size recorded)."""
    return [(v, None) if isinstance(v, str) else (k, v) for k, v in files.items()]


def check_manifest_files(folder: str | os.PathLike, manifest: dict) -> None:
    """check_files with everything the manifest records."""
    sizes = {n: s for n, s in file_entries(manifest.get("files") or {}) if s is not None}
    check_files(folder, sizes, manifest.get("hashes"), manifest.get("kind"))


def verify_folder(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Full check of an artifact folder and of the artifacts nested in it: (problems, notes). Every file the
    manifest lists must exist with its recorded size and sha256."""
    folder = Path(folder)
    problems: list[str] = []
    notes: list[str] = []
    try:
        manifest = read_manifest(folder)
    except ArtifactError as e:
        return [str(e)], notes
    files = manifest.get("files")
    hashes = manifest.get("hashes")
    if manifest.get("members"):
        pass  # a hybrid: its members hold the files (`rag verify` checks them too)
    elif not isinstance(files, dict) or not files:
        notes.append(f"{folder}: its manifest lists no files ({manifest.get('kind')}); nothing to hash")
    elif not hashes:
        notes.append(f"{folder}: no hashes recorded (built before format 'hashed manifests' of rag "
                     f"{manifest.get('libraries', {}).get('rag', '?')}); sizes only")
    for name, size in file_entries(files if isinstance(files, dict) else {}):
        p = folder / name
        if not p.exists():
            problems.append(f"{p}: missing")
        elif size is not None and p.stat().st_size != size:
            problems.append(f"{p}: {p.stat().st_size} bytes, the manifest says {size}")
        elif hashes and name in hashes and file_sha256(p) != hashes[name]["sha256"]:
            problems.append(f"{p}: sha256 differs from the one recorded at build time")
    for sub in sorted(folder.iterdir()):  # nested artifacts (a world's model, a counts folder's postings)
        if sub.is_dir() and (sub / MANIFEST).exists():
            p, n = verify_folder(sub)
            problems += p
            notes += n
    return problems, notes


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


def export_files(src: str | os.PathLike, dest: str | os.PathLike, names: Sequence[str] = (),
                 patterns: Sequence[str] = ()) -> Path:
    """Copy the committable part of a run folder: the files `names` that exist, and every match of each glob
    `patterns` ("plots/*.png"), to the same relative place under `dest` (made as needed)."""
    import shutil

    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    found = [src / n for n in names if (src / n).exists()] + [p for pat in patterns for p in sorted(src.glob(pat))]
    for p in found:
        target = dest / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, target)
    return dest
