"""The evaluator over a real corpus slice: passages and BM25 over the first 1,000 articles of the 2021 extract,
questions derived from those articles, counts from the real counting pipeline (rag.entities.counting), the
fake reader. The CLI end to end, and a run killed with SIGKILL in a real subprocess, then resumed."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rag.cli import main
from rag.evaluation.records import RecordStore

pytestmark = pytest.mark.integration
EXTRACT = "wiki/enwiki-2021-ids56.5M-57.0M.jsonl.xz"


def derive_questions(store) -> list[dict]:
    """For each article T that names another article U of the slice: "which article mentions U and says <words>",
    answer T. The counting pipeline links U in the question and T in the answer (co-occurring in T's article)."""
    t = store.table.select(["title", "text"]).to_pydict()
    docs: dict[str, list[str]] = {}
    for title, text in zip(t["title"], t["text"]):
        docs.setdefault(title, []).append(text)
    titles = [x for x in docs if len(x.split()) >= 2]
    out, seen = [], set()
    for title, texts in docs.items():
        full = " ".join(texts)
        other = next((u for u in titles if u != title and u in full), None)
        if other is None:
            continue
        own = set(title.lower().split())
        words = [w for w in texts[0].split() if w.lower().strip(",.()") not in own][3:13]
        question = f"which article mentions {other} and says {' '.join(words)}"
        if question not in seen:  # questions are told apart by their text in the resume test
            seen.add(question)
            out.append({"question": question, "answers": [title]})
    return out


@pytest.fixture(scope="module")
def world(shared_data, tmp_path_factory) -> Path:
    from rag.corpus.build import build_passages
    from rag.corpus.store import PassageStore
    from rag.entities.counting import build_counts
    from rag.qa import load_questions
    from rag.retrievers import INDEXES

    root = tmp_path_factory.mktemp("evalreal")
    build_passages(shared_data / EXTRACT, root / "passages", limit_docs=1000)
    store = PassageStore(root / "passages")
    INDEXES.get("bm25").build(store, root / "bm25", progress=False)
    with open(root / "qa.jsonl", "w", encoding="utf-8") as f:
        for q in derive_questions(store):
            f.write(json.dumps(q) + "\n")
    build_counts(root / "passages", load_questions(root / "qa.jsonl"), root / "counts", qa_path=root / "qa.jsonl")
    return root


def config(root: Path, out: Path, **extra) -> Path:
    cfg = {
        "name": "real-slice",
        "qa": {"path": str(root / "qa.jsonl")},
        "counts": str(root / "counts"),
        "reader": {"model": "fake", "backend": "fake", "shots": 3},
        "retrievers": [{"name": "bm25", "index": str(root / "bm25")}],
        "k": 3,
        "batch_size": 4,
        "n_boot": 500,
        "out": str(out),
        **extra,
    }
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def table(path: Path) -> dict:
    return {(r["bucket"], r["system"], r["measure"]): r for r in csv.DictReader(open(path))}


def test_cli_end_to_end(world, tmp_path):
    n = len((world / "qa.jsonl").read_text().splitlines())
    assert n >= 20
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(config(world, tmp_path / "run")), "--no-progress"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    recs = RecordStore(run / "records.jsonl").load()
    assert len(recs) == 2 * n
    rag = [v for (q, m), v in recs.items() if m == "rag:bm25"]
    # the fake reader answers with the top passage's title: EM is exactly "the gold article ranked first"
    assert all(v.em == float(v.prediction == v.answers[0]) for v in rag)
    assert all(len(v.retrieved) == 3 and v.depth == 100 for v in rag)
    got = table(run / "summary.csv")
    # the counts pipeline put questions in several buckets; buckets without questions are listed with n = 0
    ns = {b: int(got[(b, "closed", "em")]["n"]) for b in ("0", "1-9", "10-99", ">=1000", "unlinked")}
    assert sum(ns.values()) == n and ns["1-9"] > 0 and ns[">=1000"] == 0 and got[(">=1000", "closed", "em")]["mean"] == ""
    assert int(got[("all", "closed", "em")]["n"]) == n
    recall = [float(got[("all", "retriever:bm25", f"recall@{k}")]["mean"]) for k in (1, 5, 20, 100)]
    assert recall == sorted(recall) and recall[-1] > 0.5
    assert float(got[("all", "rag:bm25", "em")]["mean"]) > float(got[("all", "closed", "em")]["mean"]) == 0.0
    assert (run / "plots" / "accuracy.png").exists() and (run / "plots" / "recall.png").exists()
    timing = json.loads((run / "timing.json").read_text())["total"]["stages"]
    assert timing["retrieval"]["items"] == n and timing["generation"]["items"] == 2 * n
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counts"]["kind"] == "counts" and manifest["qa"]["n_questions"] == n

    r = CliRunner().invoke(main, ["eval", "compare", str(run), str(run)], catch_exceptions=False)
    assert r.exit_code == 0 and "+0.0 [+0.0, +0.0]" in r.output


def test_counts_for_another_qa_set_are_refused(world, tmp_path):
    other = tmp_path / "other.jsonl"
    lines = (world / "qa.jsonl").read_text().splitlines()
    other.write_text("\n".join(reversed(lines)) + "\n")  # the same questions, other ids
    cfg = config(world, tmp_path / "run")
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--set", f"qa.path={other}"])
    assert r.exit_code == 2 and "were made for QA file" in r.output, r.output


# A child process: the fake reader, slowed down, logging every prompt it is sent (with fsync) before answering.
CHILD = r"""
import json, os, sys, time
from rag.readers.base import READERS
from rag.readers.fake import FakeReader

LOG = sys.argv[1]

@READERS.register("slow-fake")
class Slow(FakeReader):
    @classmethod
    def load(cls, model="fake", **options):
        return cls(name=model)

    def generate_batch(self, prompts, max_new_tokens=16):
        with open(LOG, "a") as f:
            for p in prompts:
                lines = p.rstrip().split("\n")
                f.write(json.dumps([os.getpid(), lines[-2][3:], lines[-3].startswith("Passage: ")]) + "\n")
            f.flush()
            os.fsync(f.fileno())
        time.sleep(0.04 * len(prompts))
        return super().generate_batch(prompts, max_new_tokens)

from rag.cli import main
main(["eval", "run", "--config", sys.argv[2], "--no-progress"])
"""


@pytest.mark.slow
def test_resume_after_sigkill(world, tmp_path):
    cfg = config(world, tmp_path / "run", reader={"model": "fake", "backend": "slow-fake", "shots": 2})
    log = tmp_path / "prompts.log"
    records = tmp_path / "run" / "records.jsonl"
    cmd = [sys.executable, "-c", CHILD, str(log), str(cfg)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if records.exists() and len(records.read_bytes().splitlines()) >= 20:
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done_before = RecordStore(records).load(repair=False)
    n = len((world / "qa.jsonl").read_text().splitlines())
    assert 20 <= len(done_before) < 2 * n  # killed mid-way

    second = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    asked = [json.loads(line) for line in log.read_text().splitlines()]
    first_pid = asked[0][0]
    resumed = [(q, with_passages) for pid, q, with_passages in asked if pid != first_pid]
    finished = {(v.question, not v.is_closed) for v in done_before.values()}
    assert resumed and not finished & set(resumed)  # nothing finished before the kill was asked again
    assert len(resumed) == len(set(resumed)) == 2 * n - len(done_before)
    lines = records.read_text().splitlines()
    keys = [(json.loads(x)["qid"], json.loads(x)["mode"]) for x in lines]
    assert len(keys) == len(set(keys)) == 2 * n  # no duplicate, none missing
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    sessions = json.loads((tmp_path / "run" / "timing.json").read_text())["sessions"]
    assert len(sessions) == 1 and sessions[0]["questions_run"] < n  # the killed session left no timing
