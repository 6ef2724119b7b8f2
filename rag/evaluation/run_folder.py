"""A run folder read back: what the runner wrote (layout in rag.evaluation.runner), for reports and comparisons."""
from __future__ import annotations

import json
from pathlib import Path

from rag.artifacts import read_manifest
from rag.errors import ArtifactError
from rag.evaluation.config import EvalConfig, config_from_dict
from rag.evaluation.records import RECORDS, RecordStore

KIND = "run/eval"
FORMAT = 1


def load_run(folder: str | Path) -> tuple[dict, EvalConfig, dict, dict]:
    """(manifest, config, selection, records) of a run folder."""
    import yaml

    folder = Path(folder)
    manifest = read_manifest(folder, kind=KIND, format=FORMAT)
    try:
        cfg = config_from_dict(yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")), where=str(folder / "config.yaml"))
        selection = json.loads((folder / "selection.json").read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{folder}: missing {Path(e.filename).name}; this run folder is incomplete") from None
    records = RecordStore(folder / RECORDS).load(repair=False)
    return manifest, cfg, selection, records


def summary_text(folder: str | Path) -> str:
    """The Markdown summary a run wrote (for printing)."""
    path = Path(folder) / "summary.md"
    return path.read_text(encoding="utf-8") if path.exists() else ""
