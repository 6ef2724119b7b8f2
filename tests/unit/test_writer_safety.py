"""One writer per artifact (rag.locks) and an --overwrite that replaces only what the command would have written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.artifacts import atomic_dir, write_manifest
from rag.cli import main
from rag.errors import ArtifactError, BadInputError
from rag.evaluation.config import load_config
from rag.evaluation.runner import run_eval
from rag.locks import LockedError, lock_path, writer_lock
from tests.unit.test_eval_run import CountingReader, world, write_config  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom rag.locks import writer_lock\nwith writer_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n    time.sleep(60)\n")


def hold(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path, caplog):
    target = tmp_path / "idx"
    proc = hold(target)
    try:
        with pytest.raises(LockedError, match=rf"pid {proc.pid} on .*: -c {target}\)"):
            with writer_lock(target):
                pass
        with pytest.raises(LockedError):  # every builder goes through the same lock
            with atomic_dir(target):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(target).exists()  # a kill -9 leaves the file, but the kernel released the lock
    with writer_lock(target):
        assert json.loads(lock_path(target).read_text())["pid"] == os.getpid()
    assert f"lock left by pid {proc.pid}" in caplog.text
    assert not lock_path(target).exists()  # removed by its holder when done


def test_overwrite_replaces_only_an_artifact_of_the_same_kind(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    with pytest.raises(ArtifactError, match="is a file"):
        with atomic_dir(f, overwrite=True, kind="index/bm25"):
            pass
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not an artifact folder .*notes.txt"):
        with atomic_dir(folder, overwrite=True, kind="index/bm25"):
            pass
    other = tmp_path / "passages"
    other.mkdir()
    write_manifest(other, kind="passages", format=1)
    with pytest.raises(ArtifactError, match="holds a 'passages' artifact, not a 'index/bm25' one"):
        with atomic_dir(other, overwrite=True, kind="index/bm25"):
            pass
    src = tmp_path / "src"
    src.mkdir()
    (src / "docs.jsonl").write_text("{}\n")
    with pytest.raises(ArtifactError, match="holds an input"):
        with atomic_dir(src, overwrite=True, inputs=[src / "docs.jsonl"]):
            pass
    assert f.read_text() == (folder / "notes.txt").read_text() == "keep me" and (other / "manifest.json").exists()
    assert (src / "docs.jsonl").exists()
    same = tmp_path / "old-index"
    same.mkdir()
    write_manifest(same, kind="index/bm25", format=1)
    with atomic_dir(same, overwrite=True, kind="index/bm25") as tmp:
        write_manifest(tmp, kind="index/bm25", format=2)
    assert json.loads((same / "manifest.json").read_text())["format"] == 2


def test_index_and_eval_overwrite_never_destroy_their_inputs(world, tmp_path):  # noqa: F811
    r = CliRunner().invoke(main, ["index", "build", "--passages", str(world / "passages"), "--kind", "bm25",
                                  "--out", str(world / "passages"), "--overwrite"])
    assert r.exit_code == 2 and "is an input of this command" in r.output, r.output
    assert (world / "passages" / "manifest.json").exists()
    cfg = load_config(write_config(world, world / "bm25"))  # an eval run whose --out is an index
    with pytest.raises(ArtifactError, match="holds a 'index/bm25' artifact, not a 'run/eval' one"):
        run_eval(cfg, overwrite=True, progress=False, reader=CountingReader())
    assert (world / "bm25" / "manifest.json").exists()


def test_two_runs_on_one_folder_the_second_is_refused(world, tmp_path):  # noqa: F811
    cfg = load_config(write_config(world, tmp_path / "run"))
    proc = hold(tmp_path / "run")
    try:
        for overwrite in (False, True):
            with pytest.raises(LockedError, match=f"pid {proc.pid}"):
                run_eval(cfg, overwrite=overwrite, progress=False, reader=CountingReader())
    finally:
        proc.kill()
        proc.wait()
    res = run_eval(cfg, progress=False, reader=CountingReader())
    assert sum(res.computed.values()) == 24


def test_run_names_stay_inside_the_runs_folder(world, tmp_path):  # noqa: F811
    for name in ("../../x", "a/b", ".."):
        with pytest.raises(BadInputError, match="plain folder name"):
            load_config(write_config(world, tmp_path / "run", name=name))


def test_a_lock_file_of_a_dead_process_does_not_block(tmp_path):
    target = tmp_path / "t"
    lock_path(target).write_text(json.dumps({"pid": 999999, "command": "rag eval run (killed)"}))
    start = time.monotonic()
    with writer_lock(target):
        pass
    assert time.monotonic() - start < 5


def test_environment_errors_are_one_line_messages(tmp_path):
    import errno

    from rag.cli import environment_message

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))
    assert environment_message(full).startswith(f"no space left on the device ({tmp_path / 'x.parquet'}); free some space")
    assert "permission denied" in environment_message(PermissionError(errno.EACCES, "Permission denied", "/root/x"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root writes anywhere: simulate with a path under a file instead
            out = tmp_path / "file.txt"
            out.write_text("x")
            target = out / "corpus"
        else:
            target = ro / "corpus"
        src = tmp_path / "docs.jsonl"
        src.write_text('{"id": "1", "title": "T", "text": "some words here"}\n')
        r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(target)])
        assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
        r = CliRunner().invoke(main, ["-v", "corpus", "build", str(src), "--out", str(target)])
        assert r.exit_code == 2
    finally:
        ro.chmod(0o700)


def test_an_index_finds_its_store_from_any_directory_and_after_moving_both(world, tmp_path, monkeypatch):  # noqa: F811
    import shutil

    from rag.retrievers import load_index

    home = tmp_path / "proj"
    shutil.copytree(world / "passages", home / "indexes" / "p")
    monkeypatch.chdir(home)
    r = CliRunner().invoke(main, ["index", "build", "--passages", "indexes/p", "--kind", "bm25", "--out", "indexes/i"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((home / "indexes" / "i" / "manifest.json").read_text())
    assert manifest["passages"]["path"] == "indexes/p" and manifest["passages"]["relpath"] == "../p"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_index(home / "indexes" / "i").search("capital of norway", 1)[0].pid == "Oslo#0"
    moved = tmp_path / "moved"
    shutil.move(str(home / "indexes"), str(moved))  # index and store moved together
    r = CliRunner().invoke(main, ["search", "capital of norway", "--index", str(moved / "i"), "-k", "1", "--json"])
    assert r.exit_code == 0 and "Oslo#0" in r.output, r.output


def test_an_edited_bm25_manifest_is_refused(world, tmp_path):  # noqa: F811
    import shutil

    from rag.retrievers import load_index

    index = tmp_path / "i"
    shutil.copytree(world / "bm25", index)
    manifest = json.loads((index / "manifest.json").read_text())
    for edit in ({"parameters": {**manifest["parameters"], "k1": 2.0}},
                 {"tokenizer": {**manifest["tokenizer"], "stemmer": "german"}}):
        (index / "manifest.json").write_text(json.dumps({**manifest, **edit}))
        with pytest.raises(ArtifactError, match="the manifest was edited|differ from the saved engine"):
            load_index(index)
    (index / "manifest.json").write_text(json.dumps(manifest))
    (index / "settings.json").write_text("{not json" + " " * (len((index / "settings.json").read_text()) - 9))
    with pytest.raises(ArtifactError, match=r"settings.json: (damaged|content differs)"):
        load_index(index)


def test_spotlight_says_where_text_goes_and_has_no_remote_default(caplog):
    import inspect

    from rag.entities.linkers import SpotlightLinker

    assert "localhost" in inspect.signature(SpotlightLinker).parameters["url"].default
    SpotlightLinker("http://localhost:2222/rest/annotate")
    assert "sends every text" not in caplog.text
    SpotlightLinker("https://api.dbpedia-spotlight.org/en/annotate")
    assert "sends every text it links (corpus passages, questions) to api.dbpedia-spotlight.org" in caplog.text


def test_bad_records_are_named_once_each_and_summarized(tmp_path, caplog):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "1", "title": "T", "text": "a b c"}\n{"id": 2, x}\n{"id": 3, y}\n')
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(tmp_path / "c"), "--skip-bad"])
    assert r.exit_code == 0 and "2 bad records skipped" in r.output, r.output
    assert "WARNING" not in caplog.text  # no warning per skipped line
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and f"{src}:2: not valid JSON" in r.output and "at at" not in r.output


def test_ctrl_c_says_how_to_continue(world, tmp_path, monkeypatch):  # noqa: F811
    import rag.evaluation.runner as runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_run_pending", interrupted)
    cfg = write_config(world, tmp_path / "run")
    r = CliRunner().invoke(main, ["eval", "run", "--config", str(cfg), "--no-progress"])
    assert r.exit_code == 130 and "interrupted. Nothing half-written is kept; run the same command again" in r.output


def test_corpus_build_overwrite_never_deletes_sources_or_other_files(tmp_path):
    src_dir = tmp_path / "data"
    src_dir.mkdir()
    src = src_dir / "docs.jsonl"
    src.write_text('{"id": "1", "title": "T", "text": "some words here"}\n')
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(src_dir), "--overwrite"])
    assert r.exit_code == 2 and "holds an input of this command" in r.output and src.exists(), r.output
    other = tmp_path / "folder"
    other.mkdir()
    (other / "unrelated.txt").write_text("mine")
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(other), "--overwrite"])
    assert r.exit_code == 2 and "not an artifact folder" in r.output and (other / "unrelated.txt").exists()
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(tmp_path / "p")])
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["corpus", "build", str(src), "--out", str(tmp_path / "p"), "--overwrite"])
    assert r.exit_code == 0, r.output  # an artifact of the same kind is replaced
