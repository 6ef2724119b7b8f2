"""The smoke preset (configs/smoke-nq-open-wiki2021.yaml) with the fake reader, pinned byte for byte.

Its indexes are built here exactly as the preset's header says (2021 extract, BM25, NQ-open counts), then the
preset runs with `reader.backend=fake`: records.jsonl and summary.csv must equal tests/data/pins/smoke-fake/,
which were made by the code before issue 15's pipeline, record and sharding refactors. A change that is meant to
alter them (a linker rule, a counting fix) regenerates the pins with RAG_UPDATE_PINS=1 and says why in its commit.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "tests" / "data" / "pins" / "smoke-fake"
FILES = ("records.jsonl", "summary.csv")


def _ok(args: list[str]) -> None:
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output


def test_smoke_preset_with_the_fake_reader_is_pinned(shared_data, tmp_path):
    wiki, bm25, counts, nq = tmp_path / "wiki2021", tmp_path / "wiki2021-bm25", tmp_path / "counts", shared_data / "qa" / "nq-open.test.jsonl"
    _ok(["corpus", "build", str(shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz"), "--out", str(wiki)])
    _ok(["index", "build", "--passages", str(wiki), "--kind", "bm25", "--out", str(bm25)])
    _ok(["counts", "build", "--passages", str(wiki), "--qa", str(nq), "--out", str(counts)])
    run = tmp_path / "run"
    _ok(["eval", "run", "--config", str(ROOT / "configs" / "smoke-nq-open-wiki2021.yaml"), "--set", "reader.backend=fake",
         "--set", "reader.model=fake", "--set", f"counts={counts}", "--set", f"retrievers=[{{name: bm25, index: {bm25}}}]",
         "--set", f"qa.path={nq}", "--out", str(run), "--no-progress"])
    if os.environ.get("RAG_UPDATE_PINS"):
        for name in FILES:
            (PINS / name).write_bytes((run / name).read_bytes())
    for name in FILES:
        assert (run / name).read_bytes() == (PINS / name).read_bytes(), f"{name} differs from tests/data/pins/smoke-fake/{name}"
