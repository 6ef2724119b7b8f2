"""Fault injection through the real CLI (issue 18, req. 6), a short version of eval/bench_reliability.py: kill -9 at
seeded random points of every build and of an eval run, a full disk (RLIMIT_FSIZE), damaged files, two writers.
No fault may end silent wrong or with data lost. About a minute on two cores."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from eval import faults as F  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    inp = tmp_path_factory.mktemp("faults")
    F.make_inputs(inp, n_docs=120)
    return inp, F.build_reference(inp)


def check(fault: F.Fault) -> None:
    assert fault.outcome in (F.REFUSED, F.RESUMED), fault


@pytest.mark.parametrize("kind", ["corpus", "bm25", "dense", "hybrid", "counts", "eval"])
def test_kill_9_then_rerun_gives_the_reference(inputs, tmp_path, kind):
    inp, seconds = inputs
    for seed in (11, 12):
        check(F.kill_fault(inp, tmp_path / str(seed), kind, seed, seconds[kind]))


@pytest.mark.parametrize("kind", ["corpus", "dense", "eval"])
def test_a_full_disk_is_one_line_and_the_rerun_finishes(inputs, tmp_path, kind):
    inp, _ = inputs
    f = F.disk_full_fault(inp, tmp_path, kind, 0, 8000)
    check(f)
    assert "every file fitted" not in f.detail, f  # the limit was hit


def test_every_damaged_file_is_refused_or_named_by_verify(inputs, tmp_path):
    inp, _ = inputs
    picked = [(a, n) for a, n in F.artifact_files(inp) if "/" not in n]  # nested lexicon/postings: the bench covers them
    for i, (art, name) in enumerate(picked):
        work = tmp_path / str(i)
        work.mkdir()
        check(F.corrupt_fault(inp, work, art, name, seed=i))


@pytest.mark.parametrize("kind", ["bm25", "eval"])
def test_two_writers_on_one_output(inputs, tmp_path, kind):
    inp, _ = inputs
    check(F.concurrent_fault(inp, tmp_path, kind, 5))
    shutil.rmtree(tmp_path, ignore_errors=True)
