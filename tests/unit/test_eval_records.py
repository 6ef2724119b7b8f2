"""The append-only records file (torn lines, damage) and stage timing."""
from __future__ import annotations

import json

import pytest

from rag.errors import ArtifactError
from rag.evaluation.records import EvalRecord, RecordStore
from rag.evaluation.timing import StageTimer, TimedReader
from rag.readers.fake import FakeReader


def rec(qid, mode="closed", **kw):
    base = dict(qid=qid, mode=mode, question="q", answers=("a",), count=3, status="ok", count_method="entity",
                prediction="a", em=1.0, f1=1.0, contains=1.0, prompt_tokens=10, new_tokens=2)
    if mode != "closed":
        base.update(passages_dropped=0, passages_truncated=0, pids=("p#0",), retrieved=("p#0", "p#1"), first_hit=None,
                    depth=20)
    return EvalRecord(**{**base, **kw})


def test_append_and_load_round_trip(tmp_path):
    s = RecordStore(tmp_path / "r.jsonl")
    assert s.load() == {}
    assert s.append([rec("a"), rec("a", "rag:bm25"), rec("b", question="naïve ✓")]) == 3
    assert s.append([]) == 0
    got = s.load()
    assert list(got) == [("a", "closed"), ("a", "rag:bm25"), ("b", "closed")]
    assert got[("b", "closed")].question == "naïve ✓"
    assert got[("a", "rag:bm25")] == rec("a", "rag:bm25")  # every field survives the round trip


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
    line = lambda r: json.dumps(r.to_json())  # noqa: E731
    path.write_text(line(rec("a")) + "\nnot json\n" + line(rec("b")) + "\n")
    with pytest.raises(ArtifactError, match=r"r.jsonl:2: not a valid record"):
        RecordStore(path).load()
    path.write_text(line(rec("a", em=1.0)) + "\n" + line(rec("a", em=0.0)) + "\n")
    assert RecordStore(path).load()[("a", "closed")].em == 1.0


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


def test_record_json_keeps_the_on_disk_format(tmp_path):
    closed, rag = rec("a"), rec("a", "rag:bm25", first_hit=2)
    assert list(closed.to_json()) == ["qid", "mode", "question", "answers", "count", "status", "count_method",
                                      "prediction", "em", "f1", "contains", "prompt_tokens", "new_tokens"]
    assert list(rag.to_json())[13:] == ["passages_dropped", "passages_truncated", "pids", "retrieved", "first_hit", "depth"]
    assert EvalRecord.from_json(json.loads(json.dumps(rag.to_json()))) == rag
    assert rag.retriever == "bm25" and closed.retriever is None and rag.hit_at(2) and not rag.hit_at(1)
    assert rag.score("em") == 1.0
    with pytest.raises(KeyError):
        rag.score("first_hit")


def test_old_records_without_count_method_are_read_and_bad_keys_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    old = rec("a").to_json()
    del old["count_method"]  # runs made before counts recorded how a count was obtained
    path.write_text(json.dumps(old) + "\n" + json.dumps({**rec("b").to_json(), "colour": "red"}) + "\n")
    with pytest.raises(ArtifactError, match=r"r.jsonl:2: not a valid record \(unknown keys \['colour'\]\)"):
        RecordStore(path).load()
    path.write_text(json.dumps(old) + "\n" + json.dumps({"qid": "b", "mode": "closed"}) + "\n")
    with pytest.raises(ArtifactError, match=r"r.jsonl:2: .*missing keys"):
        RecordStore(path).load()
    path.write_text(json.dumps(old) + "\n")
    assert RecordStore(path).load()[("a", "closed")].count_method is None
