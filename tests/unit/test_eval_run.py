"""The evaluator end to end on a tiny hand-made world: fake reader, real BM25 over a few passages, hand counts.

Covers the runner (records, resume after an interruption without recomputing, refusals), the report
(per-bucket rows, n = 0 buckets, weighting), compare and the CLI through CliRunner.
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.artifacts import atomic_dir
from rag.cli import main
from rag.corpus.store import PassageStore, PassageWriter
from rag.errors import ArtifactError, BadInputError
from rag.evaluation.config import load_config
from rag.counts import write_counts
from rag.evaluation.records import RecordStore
from rag.evaluation.runner import run_eval
from rag.readers.fake import FakeReader
from rag.types import Passage

# (title, passage text, question, answer, count); count None = unlinked
WORLD = [
    ("Oslo", "Oslo is the capital and most populous city of Norway.", "what is the capital of norway", "Oslo", 2500),
    ("Canberra", "Canberra is the capital city of Australia.", "what is the capital city of australia", "Canberra", 1200),
    ("Mars", "Mars is the fourth planet from the Sun, the Red Planet.", "which planet is the fourth from the sun", "Mars", 400),
    ("Hamlet", "Hamlet is a tragedy written by William Shakespeare.", "which tragedy did william shakespeare write", "Hamlet", 150),
    ("Pluto", "Pluto is a dwarf planet in the Kuiper belt.", "which dwarf planet lies in the kuiper belt", "Pluto", 40),
    ("Danube", "The Danube is the second-longest river in Europe.", "which is the second-longest river in europe", "Danube", 12),
    ("Zagreb", "Zagreb is the capital and largest city of Croatia.", "what is the capital of croatia", "Zagreb", 5),
    ("Tbilisi", "Tbilisi is the capital of Georgia in the Caucasus.", "what is the capital of georgia in the caucasus", "Tbilisi", 1),
    ("Quokka", "The quokka is a small macropod found in Western Australia.", "which small macropod lives in western australia", "Quokka", 0),
    ("Okapi", "The okapi is a giraffid mammal native to the Congo.", "which giraffid mammal is native to the congo", "Okapi", 0),
    ("Lhasa", "Lhasa is the administrative capital of Tibet.", "what is the administrative capital of tibet", "Lhasa", None),
    ("Ulm", "Ulm is a city on the river Danube in Germany.", "which german city on the danube", "Ulm", None),
]
# the fake reader "knows" the popular facts closed-book (count >= 100), and gets a popular one wrong
KNOWN = {q: a for _, _, q, a, c in WORLD if c is not None and c >= 100}
KNOWN["what is the capital of norway"] = "Bergen"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from rag.retrievers.bm25 import BM25Retriever

    root = tmp_path_factory.mktemp("evalworld")
    with atomic_dir(root / "passages") as tmp:
        w = PassageWriter(tmp)
        w.add(Passage(f"{t}#0", t, t, x) for t, x, *_ in WORLD)
        w.close()
    BM25Retriever.build(PassageStore(root / "passages"), root / "bm25", progress=False)
    with open(root / "qa.jsonl", "w") as f:
        for _, _, q, a, _ in WORLD:
            f.write(json.dumps({"question": q, "answers": [a]}) + "\n")
    write_counts(root / "counts", [{"qid": f"qa-{i}", "question": w[2], "count": w[4]} for i, w in enumerate(WORLD)],
                 qa_path=root / "qa.jsonl")
    return root


def write_config(root: Path, out: Path, **extra) -> Path:
    cfg = {
        "name": "tiny",
        "qa": {"path": str(root / "qa.jsonl")},
        "counts": str(root / "counts"),
        "reader": {"model": "fake", "backend": "fake", "shots": 2, "options": {"known": KNOWN}},
        "retrievers": [{"name": "bm25", "index": str(root / "bm25")}],
        "k": 2,
        "recall_ks": [1, 5],
        "batch_size": 4,
        "n_boot": 300,
        "out": str(out),
        **extra,
    }
    path = out.parent / f"{out.name}.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


class CountingReader(FakeReader):
    """The fake reader that records every prompt's question, and can fail after `fail_after` batches."""

    def __init__(self, fail_after: int | None = None):
        super().__init__(known=KNOWN, name="fake")
        self.asked: list[tuple[str, bool]] = []  # (question, with passages)
        self.fail_after = fail_after
        self.batches = 0

    def generate_batch(self, prompts, max_new_tokens=16):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of a run
        self.batches += 1
        for p in prompts:
            lines = p.rstrip().split("\n")
            self.asked.append((lines[-2][3:], lines[-3].startswith("Passage: ")))
        return super().generate_batch(prompts, max_new_tokens)


def test_run_records_summary_and_buckets(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run"))
    reader = CountingReader()
    res = run_eval(cfg, progress=False, reader=reader)
    assert res.computed == {"closed": 12, "rag:bm25": 12} and res.reused == 0
    assert len(reader.asked) == 24 and len(set(reader.asked)) == 24  # each question once per mode
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert len(recs) == 24
    oslo = recs[("qa-0", "rag:bm25")]
    assert oslo.prediction == "Oslo" and oslo.em == 1.0 and oslo.first_hit == 1 and oslo.pids[0] == "Oslo#0"
    assert recs[("qa-0", "closed")].prediction == "Bergen" and recs[("qa-0", "closed")].em == 0.0
    assert recs[("qa-10", "closed")].count is None and recs[("qa-10", "closed")].status == "unlinked"
    assert recs[("qa-0", "closed")].pids is None and recs[("qa-0", "closed")].depth is None  # closed-book: no retrieval

    rows = list(csv.DictReader(open(tmp_path / "run" / "summary.csv")))
    get = {(r["bucket"], r["system"], r["measure"]): r for r in rows}
    # closed-book EM: >=1000 holds Oslo (wrong) and Canberra (known) -> 0.5; 100-999 both known -> 1.0
    assert float(get[(">=1000", "closed", "em")]["mean"]) == 0.5
    assert float(get[("100-999", "closed", "em")]["mean"]) == 1.0
    assert float(get[("0", "closed", "em")]["mean"]) == 0.0 and get[("0", "closed", "em")]["n"] == "2"
    assert float(get[("unlinked", "rag:bm25", "em")]["mean"]) == 1.0
    assert float(get[("0", "gain:bm25", "em")]["mean"]) == 1.0
    assert float(get[("all", "closed", "em")]["mean"]) == pytest.approx(3 / 12)
    assert get[("all", "closed", "em")]["population"] == "12"
    for r in rows:  # every rate has an interval that holds it
        if r["mean"]:
            assert float(r["lo"]) <= float(r["mean"]) + 1e-9 <= float(r["hi"]) + 2e-9
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "| >=1000 | 2 / 2 (100%) |" in md and "Adaptive retrieval" in md and "status: complete" in md
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["kind"] == "run/eval" and manifest["status"] == "complete"
    assert manifest["counts"]["fingerprint"] and manifest["indexes"]["bm25"]["fingerprint"] and manifest["seed"] == 0
    assert "git_commit" in manifest["code"] or "rag" in manifest["code"]
    timing = json.loads((tmp_path / "run" / "timing.json").read_text())
    stages = timing["sessions"][0]["stages"]
    assert {"retrieval", "prompting", "generation", "scoring"} <= set(stages)
    assert stages["generation"]["items"] == 24 and stages["retrieval"]["items"] == 12
    assert timing["sessions"][0]["peak_rss_mb"] > 0
    assert (tmp_path / "run" / "plots" / "accuracy.png").stat().st_size > 1000


def test_empty_bucket_is_listed_with_n_zero(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run", buckets=[0, 1, 10, 100, 1000, 100000]))
    run_eval(cfg, progress=False, reader=CountingReader())
    rows = list(csv.DictReader(open(tmp_path / "run" / "summary.csv")))
    empty = [r for r in rows if r["bucket"] == ">=100000"]
    assert empty and all(r["n"] == "0" and r["mean"] == "" for r in empty)
    assert "| >=100000 | 0 / 0 | n/a |" in (tmp_path / "run" / "summary.md").read_text()


def test_resume_after_interrupt_recomputes_nothing_finished(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run"))
    first = CountingReader(fail_after=3)  # batches: closed(4), rag(4), closed(4), then the 4th call fails
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, progress=False, reader=first)
    done = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert len(done) == 12
    timing = json.loads((tmp_path / "run" / "timing.json").read_text())
    assert timing["sessions"][0]["interrupted"] is True

    second = CountingReader()
    res = run_eval(cfg, progress=False, reader=second)
    assert res.reused == 12 and sum(res.computed.values()) == 12 and len(second.asked) == 12
    finished = {(r.question, not r.is_closed) for r in done.values()}
    assert not finished & set(second.asked)  # nothing finished was asked again
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert len(recs) == 24 and len((tmp_path / "run" / "records.jsonl").read_text().splitlines()) == 24
    third = CountingReader()
    res = run_eval(cfg, progress=False, reader=third)
    assert third.asked == [] and res.reused == 24
    assert len(json.loads((tmp_path / "run" / "timing.json").read_text())["sessions"]) == 3


def test_per_bucket_sample_and_extension(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run", per_bucket=1, seed=3))
    run_eval(cfg, progress=False, reader=CountingReader())
    sel = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert len(sel["qids"]) == 6 and sel["sample"]["0"] == {"population": 2, "sampled": 1, "fraction": 0.5}
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "| 0 | 1 / 2 (50%) |" in md and "1 per bucket, seed 3" in md
    # a larger sample reuses the finished questions (the sample is nested)
    reader = CountingReader()
    res = run_eval(replace(cfg, per_bucket=2), progress=False, reader=reader)
    assert res.reused == 12 and len(reader.asked) == 12


def test_compare_weights_all_rows_like_the_summary(world, tmp_path):
    from rag.evaluation.compare import compare_runs

    # buckets of 8, 2 (>= 1000) and 2 (unlinked) questions, one sampled from each (seed 0: "canberra", known)
    cfg = load_config(write_config(world, tmp_path / "run", per_bucket=1, seed=0, buckets=[0, 1000]))
    run_eval(cfg, progress=False, reader=FakeReader(known=KNOWN))
    summary = {(r["bucket"], r["system"], r["measure"]): r for r in csv.DictReader(open(tmp_path / "run" / "summary.csv"))}
    rows = compare_runs(tmp_path / "run", tmp_path / "run")
    checked = 0
    for r in rows:
        if r.bucket in ("all", "linked") and r.measure == "em":
            assert r.a.mean == pytest.approx(float(summary[(r.bucket, r.system, "em")]["mean"]), abs=1e-6), r
            assert r.diff.mean == 0.0 and r.paired == r.a.n
            checked += 1
    assert checked == 4  # closed and rag:bm25, linked and all
    closed = [r for r in rows if r.bucket == "all" and r.system == "closed" and r.measure == "em"][0]
    assert closed.a.n == 3 and closed.a.mean == pytest.approx(2 / 12)  # the plain mean would be 1 / 3


def test_a_retriever_added_later_computes_only_its_own_records(world, tmp_path):
    """The evidence runs' path: closed-book + BM25 first, the dense index added to the same folder later."""
    from rag.retrievers.bm25 import BM25Retriever

    cfg = load_config(write_config(world, tmp_path / "run"))
    run_eval(cfg, progress=False, reader=CountingReader(), report=False)
    BM25Retriever.build(PassageStore(world / "passages"), tmp_path / "bm25-b", progress=False, k1=1.5, b=0.9)
    later = replace(cfg, retrievers=[*cfg.retrievers, replace(cfg.retrievers[0], name="other", index=tmp_path / "bm25-b")])
    reader = CountingReader()
    res = run_eval(later, progress=False, reader=reader)
    assert res.computed == {"rag:other": 12} and res.reused == 24
    assert len(reader.asked) == 12 and all(with_passages for _, with_passages in reader.asked)
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert len(recs) == 36 and {m for _, m in recs} == {"closed", "rag:bm25", "rag:other"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(manifest["modes"]) == {"closed", "rag:bm25", "rag:other"} and set(manifest["indexes"]) == {"bm25", "other"}
    rows = {(r["bucket"], r["system"]) for r in csv.DictReader(open(tmp_path / "run" / "summary.csv"))}
    assert ("all", "rag:other") in rows and ("all", "retriever:other") in rows and ("all", "rag:bm25") in rows


def test_resume_refuses_changed_settings(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run"))
    run_eval(cfg, progress=False, reader=CountingReader(), report=False)
    with pytest.raises(BadInputError, match=r"different settings \(k\)"):
        run_eval(replace(cfg, k=3), progress=False, reader=CountingReader())
    run_eval(replace(cfg, k=3), overwrite=True, progress=False, reader=CountingReader(), report=False)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["identity"]["k"] == 3


def test_bad_inputs(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run"))
    with pytest.raises(ArtifactError, match="does not exist; build it first"):
        run_eval(replace(cfg, retrievers=[replace(cfg.retrievers[0], index=tmp_path / "nope")]), reader=CountingReader())
    with pytest.raises(ArtifactError, match="rag counts build"):
        run_eval(replace(cfg, counts=tmp_path / "nocounts"), reader=CountingReader())
    # counts made for another QA file: refused by the fingerprint in their manifest
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question": "what is the capital of norway", "answers": ["Oslo"]}) + "\n")
    write_counts(tmp_path / "othercounts", [{"qid": f"qa-{i}", "count": 1} for i in range(12)], qa_path=other)
    with pytest.raises(BadInputError, match="were made for QA file"):
        run_eval(replace(cfg, counts=tmp_path / "othercounts"), reader=CountingReader())
    # no QA fingerprint recorded, but the questions differ
    write_counts(tmp_path / "textcounts", [{"qid": f"qa-{i}", "question": f"q {i}", "count": 1} for i in range(12)])
    with pytest.raises(BadInputError, match="carry other questions"):
        run_eval(replace(cfg, counts=tmp_path / "textcounts"), reader=CountingReader())
    write_counts(tmp_path / "fewcounts", [{"qid": "qa-0", "count": 1}])
    with pytest.raises(BadInputError, match="lack 11 of the 12 questions"):
        run_eval(replace(cfg, counts=tmp_path / "fewcounts"), reader=CountingReader())
    assert not (tmp_path / "run").exists()  # nothing was started


def test_torn_last_line_is_discarded_on_resume(world, tmp_path):
    cfg = load_config(write_config(world, tmp_path / "run"))
    run_eval(cfg, progress=False, reader=CountingReader(), report=False)
    path = tmp_path / "run" / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a write cut by a kill
    reader = CountingReader()
    res = run_eval(cfg, progress=False, reader=reader)
    assert len(reader.asked) == 1 and res.reused == 23
    assert len(path.read_text().splitlines()) == 24 and len(RecordStore(path).load()) == 24


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_run_report_compare(world, tmp_path):
    conf = write_config(world, tmp_path / "a")
    r = run_cli("eval", "run", "--config", conf, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "# Evaluation `tiny`" in r.output and "RAG bm25" in r.output
    # flags override the config: another k, another folder
    r = run_cli("eval", "run", "--config", conf, "--no-progress", "-k", "1", "--out", tmp_path / "b", "--set", "reader.shots=1")
    assert r.exit_code == 0, r.output
    b = yaml_load(tmp_path / "b" / "config.yaml")
    assert b["k"] == 1 and b["reader"]["shots"] == 1 and b["out"] == str(tmp_path / "b")

    (tmp_path / "a" / "summary.md").unlink()
    r = run_cli("eval", "report", tmp_path / "a", "--edges", "0,10,1000", "--no-plots")
    assert r.exit_code == 0 and "| 10-999 |" in r.output and (tmp_path / "a" / "summary.md").exists()

    r = run_cli("eval", "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp.csv")
    assert r.exit_code == 0, r.output
    assert "| closed | em | all |" in r.output and "| retriever:bm25 | recall@1 |" in r.output
    rows = list(csv.DictReader(open(tmp_path / "cmp.csv")))
    same = [x for x in rows if x["system"] == "closed" and x["measure"] == "em" and x["bucket"] == "all"][0]
    assert float(same["diff"]) == 0.0 and same["paired"] == "12"  # the closed-book prompt has no k
    rec = [x for x in rows if x["system"] == "retriever:bm25" and x["measure"] == "recall@1" and x["bucket"] == "all"][0]
    assert float(rec["diff"]) == 0.0


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "reader.modle=x"], "config.reader: unknown key(s) 'modle'"),
        (["--set", "k=zero"], "config.k: expected int"),
        (["--per-bucket", "0"], "per_bucket must be positive"),
        (["--retriever", "dense"], "--retriever 'dense' is not in"),
        (["--per-bucket", "3", "--all"], "exclude each other"),
        (["--set", "nokey"], "expected KEY=VALUE"),
    ],
)
def test_cli_config_errors(world, tmp_path, args, message):
    conf = write_config(world, tmp_path / "run")
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(conf), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    if "unknown key" in message or "expected int" in message:
        assert str(conf) in r.output  # the error names the file


def test_reader_sees_only_the_selected_sentences(world, tmp_path, monkeypatch):
    cfg = load_config(write_config(world, tmp_path / "run", reader={
        "model": "fake", "backend": "fake", "shots": 2, "options": {"known": KNOWN}, "sentences": 1}))
    reader = CountingReader()
    run_eval(cfg, progress=False, reader=reader, report=False)
    rag_prompts = [p for batch in reader.calls for p in batch if p.count("Passage: ") > 2]
    assert len(rag_prompts) == 12
    # two demonstrations with their own (one-sentence) passage, then one sentence of the two passages retrieved
    assert all(p.count("Passage: ") == 3 for p in rag_prompts)
    demo_lines = [line for line in rag_prompts[0].split("\n") if line.startswith("Passage: ")][:2]
    assert all(line.count(". ") == 0 for line in demo_lines)
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    oslo = recs[("qa-0", "rag:bm25")]
    assert oslo.pids == ("Oslo#0",) and len(oslo.retrieved) == 2 and oslo.prediction == "Oslo"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["identity"]["reader"]["sentences"] == 1
    from rag.evaluation.report import render

    render(tmp_path / "run")
    assert "k = 2 passages retrieved, of which the reader is shown the 1 best-matching sentences" in (
        tmp_path / "run" / "summary.md").read_text()
    assert "compression" in json.loads((tmp_path / "run" / "timing.json").read_text())["sessions"][-1]["stages"]
    with pytest.raises(BadInputError, match=r"different settings \(reader.sentences\)"):
        run_eval(replace(cfg, reader=replace(cfg.reader, sentences=2)), progress=False, reader=CountingReader())
    # a retriever added later: the finished BM25 index is opened only for its corpus statistics
    from rag.retrievers.bm25 import BM25Retriever

    stats = []
    real = BM25Retriever.doc_freq
    monkeypatch.setattr(BM25Retriever, "doc_freq", lambda self: stats.append(self) or real(self))
    later = replace(cfg, retrievers=[*cfg.retrievers, replace(cfg.retrievers[0], name="other")])
    reader = CountingReader()
    assert run_eval(later, progress=False, reader=reader, report=False).computed == {"rag:other": 12}
    assert len(stats) == 1 and stats[0].engine.doc_freqs(["oslo"]) == [1]
    assert all(p.count("Passage: ") == 3 for batch in reader.calls for p in batch)
    assert RecordStore(tmp_path / "run" / "records.jsonl").load()[("qa-0", "rag:other")].pids == ("Oslo#0",)


def test_count_method_split_and_restriction(world, tmp_path):
    """Counts that say how each was obtained: the report splits every bucket by it; count_method restricts."""
    methods = ["entity", "surface"] * 5 + ["none", "none"]
    write_counts(tmp_path / "counts", [{"qid": f"qa-{i}", "question": w[2], "count": w[4], "method": m}
                                       for i, (w, m) in enumerate(zip(WORLD, methods))], qa_path=world / "qa.jsonl")
    cfg = load_config(write_config(world, tmp_path / "run", counts=str(tmp_path / "counts")))
    run_eval(cfg, progress=False, reader=CountingReader())
    recs = RecordStore(tmp_path / "run" / "records.jsonl").load()
    assert recs[("qa-1", "closed")].count_method == "surface" and recs[("qa-10", "closed")].count_method == "none"
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "## By how the count was obtained (em)" in md
    assert "| >=1000 | entity | 1 / 1 | 0.0 [0.0, 0.0] |" in md  # Oslo (answered Bergen)
    assert "| >=1000 | surface | 1 / 1 | 100.0 [100.0, 100.0] |" in md  # Canberra
    only = load_config(write_config(world, tmp_path / "surface", counts=str(tmp_path / "counts"), count_method="surface"))
    res = run_eval(only, progress=False, reader=CountingReader())
    assert res.computed == {"closed": 5, "rag:bm25": 5}
    assert {q for q, _ in RecordStore(tmp_path / "surface" / "records.jsonl").load()} == {f"qa-{i}" for i in (1, 3, 5, 7, 9)}
    sel = json.loads((tmp_path / "surface" / "selection.json").read_text())
    assert sel["population_methods"] == ["surface"] * 5
    with pytest.raises(BadInputError, match="different settings"):  # the restriction is part of the run's identity
        run_eval(load_config(write_config(world, tmp_path / "surface", counts=str(tmp_path / "counts"))), progress=False,
                 reader=CountingReader())
    with pytest.raises(BadInputError, match="count_method must be"):
        load_config(write_config(world, tmp_path / "bad", count_method="guess"))
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(write_config(world, tmp_path / "cli", counts=str(tmp_path / "counts"))),
                                  "--count-method", "entity", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert len(RecordStore(tmp_path / "cli" / "records.jsonl").load()) == 10


def test_model_server_transport_settings_do_not_block_resume(world, tmp_path):
    from rag.evaluation.run_folder import comparable, reader_identity

    def ident(**options):
        cfg = load_config(write_config(world, tmp_path / "x", reader={"model": "m", "backend": "openai", "options": options}))
        return comparable({"reader": reader_identity(cfg)})

    assert ident(base_url="http://a:1/v1", timeout=5, max_retries=1) == ident(base_url="http://b:2/v1", max_concurrency=2)
    assert ident(chat=True) != ident(chat=False)  # answers depend on it
    other = load_config(write_config(world, tmp_path / "y", reader={"model": "other", "backend": "openai"}))
    assert comparable({"reader": reader_identity(other)}) != ident()
