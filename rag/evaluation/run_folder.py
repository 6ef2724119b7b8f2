"""The run folder: what an evaluation writes, its resume identity, and the `Run` read back for reports.

Layout (cfg.run_dir):
    config.yaml      the resolved configuration (preset + overrides)
    manifest.json    kind "run/eval": code version, reader, index / counts / QA fingerprints, seed, identity, modes
    selection.json   the evaluated question ids, and per bucket population and sample size (Selection)
    records.jsonl    one EvalRecord per (question, mode) (rag.evaluation.records)
    timing.json      wall time and peak memory by stage, per session (rag.evaluation.timing)
    summary.csv, summary.md, attribution.csv, adaptive.json, plots/*.png   written by rag.evaluation.report
    controls.json    the controls for what a count measures (rag.evaluation.controls), also written by the report
    blind.json       with controls.subject_blind: which questions were blinded (rag.evaluation.blind)
    report.html      with `rag eval report --html` (rag.evaluation.report_html)

Resume identity: everything that changes a record (QA file, counts, reader settings that change answers, k,
depth, count method; per mode the index and its search options). A folder holding a run with another identity
is refused; the sample size and the list of retrievers may change between sessions (a larger per-bucket sample
is a superset of a smaller one, and a new retriever only adds its own records). A model server's transport
settings are recorded but are not identity.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rag.artifacts import MANIFEST, check_replaceable, file_sizes, quick_fingerprint, read_manifest, write_json_atomic, write_manifest
from rag.errors import ArtifactError, BadInputError
from rag.evaluation.config import EvalConfig, config_from_dict, to_dict
from rag.evaluation.records import CLOSED, RECORDS, EvalRecord, Key, RecordStore, rag_mode

KIND = "run/eval"
FORMAT = 1
CONFIG = "config.yaml"
SELECTION = "selection.json"

# reader settings that change speed but not answers: left out of the identity, so a resumed run may change them
SPEED_OPTIONS = ("batch_size", "device", "n_threads")
# a model server's transport settings (where it is, how hard to retry)
TRANSPORT_OPTIONS = ("base_url", "api_key_env", "max_concurrency", "timeout", "max_retries", "backoff")


@dataclass(frozen=True)
class Selection:
    """selection.json: which questions a run evaluates, and the population they were drawn from."""

    seed: int
    per_bucket: int | None
    limit: int | None
    buckets: tuple[int, ...]  # the sampling buckets' lower edges
    sample: dict[str, dict]  # bucket -> {population, sampled, fraction}
    qids: tuple[str, ...]  # evaluated, in QA-file order
    # every population question's count (None: unlinked) and count method, so a report can re-bucket the
    # population with other edges and split it by method; None in selection files older than these fields
    population_counts: tuple[int | None, ...] | None = None
    population_methods: tuple[str, ...] | None = None
    plan: dict | None = None  # a budgeted run's plan (rag.evaluation.budget.Plan.as_dict); per_bucket is then None

    def to_json(self) -> dict:
        out = {"seed": self.seed, "per_bucket": self.per_bucket, "limit": self.limit, "buckets": list(self.buckets),
               "sample": self.sample, "qids": list(self.qids)}
        if self.population_counts is not None:
            out["population_counts"] = list(self.population_counts)
        if self.population_methods is not None:
            out["population_methods"] = list(self.population_methods)
        if self.plan is not None:
            out["plan"] = self.plan
        return out

    @classmethod
    def from_json(cls, obj: dict, cfg: EvalConfig) -> "Selection":
        def seq(key):
            v = obj.get(key)
            return None if v is None else tuple(v)

        return cls(seed=obj.get("seed", cfg.seed), per_bucket=obj.get("per_bucket"), limit=obj.get("limit"),
                   buckets=tuple(obj.get("buckets", cfg.buckets)), sample=obj.get("sample", {}), qids=tuple(obj["qids"]),
                   population_counts=seq("population_counts"), population_methods=seq("population_methods"),
                   plan=obj.get("plan"))

    def populations(self, edges) -> dict[str, int]:
        """Bucket label -> population questions in it, for `edges` (a Buckets); older files: the sampling table."""
        if self.population_counts is None:
            return {b: s["population"] for b, s in self.sample.items()}
        out: dict[str, int] = {}
        for b in edges.assign(list(self.population_counts)):
            out[b] = out.get(b, 0) + 1
        return out


@dataclass
class Run:
    """A run folder read back: its manifest, config, selection and records (no model needed)."""

    folder: Path
    manifest: dict
    config: EvalConfig
    selection: Selection
    records: dict[Key, EvalRecord] = field(default_factory=dict)

    @property
    def retrievers(self) -> list[str]:
        """The config's retrievers, then any other the run's records were made with (in name order)."""
        names = [r.name for r in self.config.retrievers]
        extra = sorted(m.split(":", 1)[1] for m in self.manifest.get("modes", {}) if m.startswith("rag:"))
        return names + [n for n in extra if n not in names]

    @property
    def modes(self) -> list[str]:
        return [CLOSED, *(rag_mode(r) for r in self.retrievers)]

    def by_mode(self, modes: list[str] | None = None) -> dict[str, dict[str, EvalRecord]]:
        """mode -> qid -> record, for the selected questions (every mode asked for is present, maybe empty)."""
        chosen = set(self.selection.qids)
        out: dict[str, dict[str, EvalRecord]] = {m: {} for m in (modes or self.modes)}
        for (qid, mode), rec in self.records.items():
            if qid in chosen and mode in out:
                out[mode][qid] = rec
        return out

    def __iter__(self) -> Iterator[EvalRecord]:
        return iter(self.records.values())


def _read_part(folder: Path, name: str, parse):
    """parse(text of folder/name); a missing or damaged file is an ArtifactError naming it."""
    import yaml

    path = folder / name
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: missing {name}; this run folder is incomplete") from None
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, TypeError, AttributeError, KeyError) as e:
        if isinstance(e, BadInputError):
            raise
        raise ArtifactError(f"{path}: damaged ({type(e).__name__}: {str(e).splitlines()[0][:200]}); `rag verify "
                            f"{folder}` lists what differs from the finished run; rerun the evaluation "
                            f"(rag eval run ... --overwrite)") from None


def load_run(folder: str | Path) -> Run:
    """Read a run folder (refused when it is not one, or is incomplete)."""
    import yaml

    folder = Path(folder)
    manifest = read_manifest(folder, kind=KIND, format=FORMAT)
    cfg = _read_part(folder, CONFIG, lambda text: config_from_dict(yaml.safe_load(text), where=str(folder / CONFIG)))
    selection = _read_part(folder, SELECTION, lambda text: Selection.from_json(json.loads(text), cfg))
    records = RecordStore(folder / RECORDS).load(repair=False)
    return Run(folder, manifest, cfg, selection, records)


def summary_text(folder: str | Path) -> str:
    """The Markdown summary a run wrote (for printing)."""
    path = Path(folder) / "summary.md"
    return path.read_text(encoding="utf-8") if path.exists() else ""


# --- identity --------------------------------------------------------------------------------------------------


def code_version() -> dict:
    """The git commit of the rag source tree (and whether it had uncommitted changes), else the package version."""
    from rag.artifacts import library_versions

    root = Path(__file__).resolve().parents[2]
    out = {"rag": library_versions()["rag"]}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "rag"],
                capture_output=True, text=True, timeout=10,
            )
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):  # pragma: no cover - no git on the machine
        pass
    return out


def index_fingerprint(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()[:32]


def reader_identity(cfg: EvalConfig) -> dict:
    """The reader settings that change answers, with the model file's and demonstration pool's fingerprints."""
    from rag.qa import qa_fingerprint

    r = to_dict(cfg)["reader"]
    for k in SPEED_OPTIONS:
        r.pop(k, None)
    model = Path(cfg.reader.model) if cfg.reader.model else None
    if model is not None and model.is_file():
        r["model_fingerprint"] = quick_fingerprint(model)
    if cfg.reader.demos is not None:
        r["demos_fingerprint"] = qa_fingerprint(Path(cfg.reader.demos))
        r["demos_seed"] = cfg.seed
    return r


def run_identity(cfg: EvalConfig, qa_fingerprint: str, counts_fingerprint: str, regex: bool) -> dict:
    identity = {
        "qa": {"fingerprint": qa_fingerprint, "format": cfg.qa.format},
        "counts": counts_fingerprint,
        "reader": reader_identity(cfg),
        "k": cfg.k,
        "depth": cfg.depth,
    }
    if cfg.count_method is not None:  # recorded only when set, so earlier runs still resume
        identity["count_method"] = cfg.count_method
    if regex:  # regex golds score differently; recorded only then, so runs made before the setting existed resume
        identity["qa"]["match_type"] = "regex"
    return identity


def mode_identities(cfg: EvalConfig) -> dict[str, dict]:
    """mode -> what its records depend on beyond the run identity (a retriever's index and search options)."""
    modes = {CLOSED: {}}
    for r in cfg.retrievers:
        modes[rag_mode(r.name)] = {"index": index_fingerprint(Path(r.index)), "search": dict(r.search)}
    if cfg.controls.subject_blind:
        from rag.evaluation import blind

        modes[blind.BLIND] = blind.identity(cfg.controls.placeholder)
    return modes


def comparable(identity: dict) -> dict:
    """A run identity without a model server's transport settings, which may change between sessions of one run."""
    opts = identity.get("reader", {}).get("options")
    if not opts:
        return identity
    reader = {**identity["reader"], "options": {k: v for k, v in opts.items() if k not in TRANSPORT_OPTIONS}}
    return {**identity, "reader": reader}


def diff_keys(a, b, prefix: str = "") -> list[str]:
    """Dotted keys where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# --- writing ---------------------------------------------------------------------------------------------------


def _only_start_files(folder: Path) -> bool:
    """Whether `folder` holds nothing but what a run writes before its manifest (and their temporary files)."""
    if not folder.is_dir():
        return False
    names = [p.name for p in folder.iterdir()]
    return bool(names) and all(n in (CONFIG, SELECTION, "timing.json") or _is_temporary(n) for n in names)


def _is_temporary(name: str) -> bool:
    """A file being written under a temporary name (write_text_atomic, write_config): `.NAME.tmp` or `.NAME.tmp-PID`."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name)


class RunFolder:
    """A run folder being written: created, or reopened after its identity is checked against the old manifest."""

    def __init__(self, path: Path, old_manifest: dict):
        self.path = Path(path)
        self.old = old_manifest  # {} for a new folder
        self.store = RecordStore(self.path / RECORDS)

    @classmethod
    def open(cls, path: Path, identity: dict, modes: dict[str, dict], overwrite: bool = False) -> "RunFolder":
        """Create `path`, or reopen it when it holds the same run; refuse a folder holding anything else."""
        out = Path(path)
        if out.exists() and overwrite:
            if out.is_dir() and not (out / MANIFEST).exists() and ((out / RECORDS).exists() or not any(out.iterdir())):
                shutil.rmtree(out)  # a run interrupted before its manifest was written, or an empty folder
            else:
                check_replaceable(out, KIND)  # only a run folder is replaced, never an index or other artifact
                shutil.rmtree(out)
        if out.is_dir():  # we hold the run's lock: temporary files are what a killed session was writing
            for t in [t for t in out.iterdir() if t.is_file() and _is_temporary(t.name)]:
                t.unlink()
        if out.exists() and not (out / MANIFEST).exists() and _only_start_files(out):
            # killed while writing config.yaml / selection.json, before its manifest: no record was written yet
            shutil.rmtree(out)
        if out.exists() and any(out.iterdir()):
            if not (out / MANIFEST).exists():
                if (out / RECORDS).exists():
                    raise ArtifactError(f"{out} has records but no {MANIFEST}; pass --overwrite to start afresh")
                raise BadInputError(f"{out} exists and is not a run folder; choose another --out")
            old = read_manifest(out, kind=KIND, format=FORMAT)
            diff = diff_keys(comparable(old.get("identity", {})), comparable(identity))
            for mode, ident in modes.items():
                if mode in old.get("modes", {}):
                    diff += [f"{mode}.{d}" for d in diff_keys(old["modes"][mode], ident)]
            if diff:
                raise BadInputError(
                    f"{out} holds a run with different settings ({', '.join(diff)}); resuming would mix results. "
                    f"Pass --overwrite to start afresh, or --out NEW_FOLDER"
                )
            return cls(out, old)
        out.mkdir(parents=True, exist_ok=True)
        return cls(out, {})

    def write_config(self, cfg: EvalConfig) -> None:
        import yaml

        tmp = self.path / f".{CONFIG}.tmp"
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
        tmp.replace(self.path / CONFIG)

    def write_selection(self, selection: Selection) -> None:
        write_json_atomic(self.path / SELECTION, selection.to_json())

    def write_manifest(self, *, cfg: EvalConfig, identity: dict, modes: dict[str, dict], index_manifests: dict[str, dict],
                       counts: dict, n_population: int, n_selected: int, reader_info: dict | None = None,
                       status: str = "running", backend_choice: dict | None = None,
                       store_mismatches: list[str] = ()) -> None:
        """manifest.json: this session's modes and indexes merged over the old manifest's (a run may drop a
        retriever in one session and keep its records)."""
        old = self.old
        info = reader_info or old.get("reader_info") or {}
        indexes = {**old.get("indexes", {})}
        for r in cfg.retrievers:
            m = index_manifests[r.name]
            indexes[r.name] = {"path": str(r.index), "kind": m.get("kind"), "fingerprint": modes[rag_mode(r.name)]["index"],
                               "passages": m.get("passages")}
        # once a session is over, the files `rag verify` checks (records.jsonl grows while a run goes on and across
        # sessions, so write_manifest hashes it here, after the fact, not as it is written)
        kept = [n for n in (CONFIG, SELECTION, RECORDS) if status != "running" and (self.path / n).exists()]
        write_manifest(
            self.path,
            kind=KIND,
            format=FORMAT,
            libraries=("numpy", "pyarrow"),
            name=cfg.name,
            status=status,
            code=code_version(),
            seed=cfg.seed,
            qa={"path": str(cfg.qa.path), "fingerprint": identity["qa"]["fingerprint"], "n_questions": n_population},
            counts=counts,
            reader={**identity["reader"], **info},
            reader_info=info,
            indexes=indexes,
            identity=identity,
            modes={**old.get("modes", {}), **modes},
            n_selected=n_selected,
            **({"backend_choice": backend_choice} if backend_choice else {}),
            **({"store_mismatches": list(store_mismatches)} if store_mismatches else {}),
            **({"files": file_sizes(self.path, kept)} if kept else {}),
        )

