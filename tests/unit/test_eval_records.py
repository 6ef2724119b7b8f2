"""The append-only records file (torn lines, damage) and stage timing."""
from __future__ import annotations

import json

import pytest

from rag.errors import ArtifactError
from rag.evaluation.records import RecordStore
from rag.evaluation.timing import StageTimer, TimedReader
from rag.readers.fake import FakeReader


def rec(qid, mode="closed", **kw):
    return {"qid": qid, "mode": mode, "em": 1.0, **kw}


def test_append_and_load_round_trip(tmp_path):
    s = RecordStore(tmp_path / "r.jsonl")
    assert s.load() == {}
    assert s.append([rec("a"), rec("a", "rag:bm25"), rec("b", question="naïve ✓")]) == 3
    assert s.append([]) == 0
    got = s.load()
    assert list(got) == [("a", "closed"), ("a", "rag:bm25"), ("b", "closed")]
    assert got[("b", "closed")]["question"] == "naïve ✓"


def test_torn_last_line_is_cut_and_appends_continue(tmp_path):
    path = tmp_path / "r.jsonl"
    s = RecordStore(path)
    s.append([rec("a"), rec("b")])
    with open(path, "ab") as f:
        f.write(b'{"qid": "c", "mode": "clo')  # a kill in the middle of a write
    assert list(s.load()) == [("a", "closed"), ("b", "closed")]
    assert path.read_bytes().endswith(b"\n")  # repaired
    s.append([rec("c")])
    assert list(s.load()) == [("a", "closed"), ("b", "closed"), ("c", "closed")]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_damaged_middle_line_and_duplicates(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec("a")) + "\nnot json\n" + json.dumps(rec("b")) + "\n")
    with pytest.raises(ArtifactError, match=r"r.jsonl:2: not a valid record"):
        RecordStore(path).load()
    path.write_text(json.dumps(rec("a", em=1.0)) + "\n" + json.dumps(rec("a", em=0.0)) + "\n")
    assert RecordStore(path).load()[("a", "closed")]["em"] == 1.0


def test_stage_timer_sessions_accumulate(tmp_path):
    t = StageTimer()
    with t.stage("retrieval", items=5):
        sum(range(10000))
    reader = TimedReader(FakeReader(), t)
    reader.generate_batch(["Q: x\nA:", "Q: y\nA:"])
    assert reader.generation_seconds > 0 and t.stages["generation"].items == 2
    doc = t.write(tmp_path / "timing.json", {"interrupted": False})
    doc = StageTimer().write(tmp_path / "timing.json")
    assert len(doc["sessions"]) == 2 and doc["sessions"][0]["interrupted"] is False
    assert doc["total"]["stages"]["retrieval"]["items"] == 5 and doc["total"]["stages"]["retrieval"]["calls"] == 1
    assert doc["sessions"][0]["stages"]["retrieval"]["peak_rss_mb"] > 0
