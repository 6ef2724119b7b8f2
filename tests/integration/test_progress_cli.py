"""Long commands on a real slice (1,500 articles of the 2021 extract, 60 NQ-open questions): a bar with rate and ETA
on a terminal (a pseudo-terminal here), one started and one done line per stage when stderr is not a terminal; and
Ctrl-C anywhere (a KeyboardInterrupt raised inside a stage, and a real SIGINT) exits 130 with the command line that
continues the work, leaves nothing half-written at --out, and the same command then completes.
"""
from __future__ import annotations

import fcntl
import json
import lzma
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke-nq-open-wiki2021.yaml"
RESUME = "interrupted. Nothing half-written is kept; run the same command again to continue"


def ok(*args: str) -> str:
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("progress")
    with lzma.open(shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz", "rt", encoding="utf-8") as f:
        (root / "wiki.jsonl").write_text("".join(next(f) for _ in range(1500)), encoding="utf-8")
    with open(shared_data / "qa" / "nq-open.test.jsonl", encoding="utf-8") as f:
        (root / "qa.jsonl").write_text("".join(next(f) for _ in range(60)), encoding="utf-8")
    d = {"root": root, "src": root / "wiki.jsonl", "qa": root / "qa.jsonl", "wiki": root / "wiki", "bm25": root / "bm25",
         "dense": root / "dense", "lexicon": root / "lexicon", "counts": root / "counts"}
    ok("corpus", "build", d["src"], "--out", d["wiki"])
    ok("index", "build", "--passages", d["wiki"], "--kind", "bm25", "--out", d["bm25"])
    ok("index", "build", "--passages", d["wiki"], "--kind", "dense", "--encoder", "hash:64", "--out", d["dense"])
    ok("counts", "lexicon", "--passages", d["wiki"], "--qa", d["qa"], "--out", d["lexicon"])
    ok("counts", "build", "--passages", d["wiki"], "--qa", d["qa"], "--lexicon", d["lexicon"], "--out", d["counts"])
    return d


def eval_args(d: dict, out: Path) -> list:
    return ["eval", "run", "--config", SMOKE, "--set", "reader.backend=fake", "--set", "reader.model=fake",
            "--set", f"counts={d['counts']}", "--set", f"retrievers=[{{name: bm25, index: {d['bm25']}}}]",
            "--set", f"qa.path={d['qa']}", "--per-bucket", "10", "--set", "batch_size=4", "--out", out]


# (command, the stages it logs) for each long command; OUT is its output folder
def commands(d: dict, out: Path) -> dict[str, tuple[list, list[str]]]:
    return {
        "corpus build": (["corpus", "build", d["src"], "--out", out], ["reading 1 source"]),
        "index build bm25": (["index", "build", "--passages", d["wiki"], "--kind", "bm25", "--out", out],
                             ["index build (bm25)", "tokenize", "bm25s index"]),
        "index build dense": (["index", "build", "--passages", d["wiki"], "--kind", "dense", "--encoder", "hash:64",
                               "--out", out], ["index build (dense)"]),
        "index build hybrid": (["index", "build", "--passages", d["wiki"], "--kind", "hybrid", "--members",
                                f"{d['bm25']},{d['dense']}", "--out", out], ["index build (hybrid)"]),
        "counts lexicon": (["counts", "lexicon", "--passages", d["wiki"], "--qa", d["qa"], "--out", out], ["lexicon"]),
        "counts postings": (["counts", "postings", "--passages", d["wiki"], "--lexicon", d["lexicon"], "--out", out],
                            ["postings"]),
        "counts build": (["counts", "build", "--passages", d["wiki"], "--qa", d["qa"], "--out", out],
                         ["lexicon", "postings", "counting"]),
        "eval run": (eval_args(d, out), ["load", "eval smoke-nq-open-wiki2021", "report"]),
    }


def rag(args: list, tty: bool = False, cwd: Path | None = None) -> tuple[int, str]:
    """`python cli.py ARGS` in a child process; its stderr is a pipe, or a 120-column pseudo-terminal."""
    cmd = [sys.executable, str(ROOT / "cli.py"), *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not tty:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
        return p.returncode, p.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=300), out.decode("utf-8", "replace")


NAMES = list(commands({k: Path(k) for k in ("src", "qa", "wiki", "bm25", "dense", "lexicon", "counts")}, Path("out")))


@pytest.mark.parametrize("name", NAMES)
def test_one_line_per_stage_without_a_terminal_and_a_bar_on_one(data, tmp_path, name):
    args, stages = commands(data, tmp_path / "piped")[name]
    code, err = rag(args)
    assert code == 0, err
    assert "\r" not in err, f"a bar was drawn into a pipe:\n{err}"
    for s in stages:
        assert re.search(rf"^INFO rag\.progress: {re.escape(s)}: started", err, re.M), err
        assert re.search(rf"^INFO rag\.progress: {re.escape(s)}: done(,| in) .*\d s", err, re.M), err

    args, _ = commands(data, tmp_path / "tty")[name]
    code, err = rag(args, tty=True)
    assert code == 0, err
    if name not in ("index build hybrid", "counts lexicon"):  # these two have nothing to count: stage lines only
        # tqdm's "n/total [elapsed<remaining, rate]": a rate and an ETA
        assert re.search(r"\d\S*/\d\S* \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?\w*/s", err), err


def _raise_on_call(n: int):
    """A replacement for a method that raises KeyboardInterrupt on its n-th call (as Ctrl-C there would)."""
    calls = []

    def install(monkeypatch, owner, name):
        real = getattr(owner, name)

        def wrapped(*a, **k):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(owner, name, wrapped)

    return install


def interrupted(args: list) -> str:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 130, r.output
    assert RESUME in r.output and "\n  rag " in r.output, r.output
    return r.output


def test_ctrl_c_in_a_corpus_build_leaves_nothing_and_the_rerun_completes(data, tmp_path, monkeypatch):
    from rag.corpus.store import PassageStore
    from rag.progress import LineBar

    out = tmp_path / "wiki"
    with monkeypatch.context() as m:
        _raise_on_call(200)(m, LineBar, "update")  # 200 documents in
        interrupted(["corpus", "build", data["src"], "--out", out])
    assert not out.exists()
    ok("corpus", "build", data["src"], "--out", out)
    assert PassageStore(out).fingerprint == PassageStore(data["wiki"]).fingerprint


def test_ctrl_c_in_index_builds_leaves_nothing_and_the_dense_rerun_resumes(data, tmp_path, monkeypatch):
    from rag.encoders import HashEncoder
    from rag.progress import LineBar
    from rag.retrievers import load_index

    out = tmp_path / "bm25"
    with monkeypatch.context() as m:
        _raise_on_call(1)(m, LineBar, "update")  # the first tokenized batch
        interrupted(["index", "build", "--passages", data["wiki"], "--kind", "bm25", "--out", out])
    assert not out.exists()
    ok("index", "build", "--passages", data["wiki"], "--kind", "bm25", "--out", out)

    out, rows = tmp_path / "dense", []
    dense = ["index", "build", "--passages", data["wiki"], "--kind", "dense", "--encoder", "hash:64", "--chunk-size", "1000",
             "--out", out]
    with monkeypatch.context() as m:
        _raise_on_call(3)(m, HashEncoder, "encode_batch")  # two chunks of 1,000 passages are finished
        interrupted(dense)
    assert not out.exists()
    real = HashEncoder.encode_batch
    with monkeypatch.context() as m:
        m.setattr(HashEncoder, "encode_batch", lambda self, texts: rows.append(len(texts)) or real(self, texts))
        ok(*dense)
    n = len(load_index(out).store)
    assert 0 < sum(rows) <= n - 2000, "the rerun encoded the finished chunks again"
    q = ["who founded the city", "a river in ontario"]
    got, want = load_index(out).search_batch(q, 5), load_index(data["dense"]).search_batch(q, 5)
    assert [[h.pid for h in hs] for hs in got] == [[h.pid for h in hs] for hs in want]


def test_ctrl_c_in_a_counts_build_keeps_finished_steps_and_the_rerun_reuses_them(data, tmp_path, monkeypatch, caplog):
    import rag.entities.counting as counting

    out = tmp_path / "counts"
    args = ["counts", "build", "--passages", data["wiki"], "--qa", data["qa"], "--out", out]
    with monkeypatch.context() as m:
        _raise_on_call(1)(m, counting, "count_questions")  # after the lexicon and the postings
        interrupted(args)
    assert not out.exists()
    parts = out.with_name("counts.parts")
    assert (parts / "lexicon" / "manifest.json").exists() and (parts / "postings" / "manifest.json").exists()
    caplog.set_level("INFO", logger="rag.entities.counting")
    ok(*args)
    assert "reusing the lexicon" in caplog.text and "reusing the postings" in caplog.text
    assert not parts.exists()
    assert (out / "counts.parquet").read_bytes() == (data["counts"] / "counts.parquet").read_bytes()


def test_ctrl_c_in_an_eval_run_keeps_whole_records_and_the_rerun_completes(data, tmp_path, monkeypatch):
    from rag.readers.fake import FakeReader

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _raise_on_call(3)(m, FakeReader, "generate_batch")  # batches of 4 questions: some records are written
        interrupted(eval_args(data, out))
    lines = (out / "records.jsonl").read_text().splitlines()
    assert lines and all(json.loads(x) for x in lines)  # whole records only
    r = CliRunner().invoke(main, [str(a) for a in eval_args(data, out)], catch_exceptions=False)
    assert r.exit_code == 0 and f"reused {len(lines)} records" in r.output, r.output
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_sigint_to_a_corpus_build_prints_how_to_resume_and_leaves_nothing(shared_data, tmp_path):
    """A real Ctrl-C (SIGINT) while the whole 2021 extract is being read."""
    out = tmp_path / "wiki2021"
    cmd = [sys.executable, str(ROOT / "cli.py"), "corpus", "build",
           str(shared_data / "wiki" / "enwiki-2021-ids56.5M-57.0M.jsonl.xz"), "--out", str(out)]
    # a shell's background job starts with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # the child gets the default disposition back, as a terminal's foreground process has it
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = p.stderr.readline()  # the stage's started line: reading has begun
    assert "reading 1 source: started" in first, first
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    err = first + p.stderr.read()
    assert p.wait(timeout=60) == 130, err
    assert "reading 1 source: interrupted after" in err and RESUME in err and f"rag corpus build {cmd[4]} --out {out}" in err
    assert not out.exists() and not out.with_name("wiki2021.partial").exists()
