"""Pinned output of an evaluation run: records.jsonl and summary.csv byte for byte.

The tiny world of test_eval_run (fake reader, real BM25, hand counts) is run end to end and its records and
summary are compared with the committed copies in tests/data/pins/, so a refactor of the pipeline, the record
types or the run folder (issue 15) that changes any answer, score, count or rate fails here. When a change is
*meant* to alter the output, regenerate the pins with `RAG_UPDATE_PINS=1 pytest tests/unit/test_eval_pin.py`
and say why in the commit.

The gold-answer log-probability (issue 20) was added after the pins were made: records now carry three more
keys, compared here after they are taken out (every other byte is still the pinned one).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)

PINS = Path(__file__).resolve().parents[1] / "data" / "pins" / "tiny-eval"
FILES = ("records.jsonl", "summary.csv")


def test_tiny_eval_output_is_pinned(world, tmp_path):  # noqa: F811
    cfg = load_config(write_config(world, tmp_path / "run"))
    run_eval(cfg, progress=False, reader=CountingReader())
    if os.environ.get("RAG_UPDATE_PINS"):
        PINS.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            data = (tmp_path / "run" / name).read_bytes()
            (PINS / name).write_bytes(without_gold(data) if name == "records.jsonl" else data)
    for name in FILES:
        got, want = (tmp_path / "run" / name).read_bytes(), (PINS / name).read_bytes()
        if name == "records.jsonl":
            got = without_gold(got)
        assert got == want, f"{name} differs from tests/data/pins/tiny-eval/{name} (see this test's docstring)"


GOLD = ("gold_answer", "gold_logprob", "gold_tokens")


def without_gold(data: bytes) -> bytes:
    lines = []
    for line in data.decode("utf-8").splitlines():
        rec = json.loads(line)
        assert all(k in rec for k in GOLD), f"a record without the gold log-probability: {line}"
        lines.append(json.dumps({k: v for k, v in rec.items() if k not in GOLD}, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")
