"""External qrels counts + Spearman, and the `rag link` / `rag counts` commands on the tiny corpus."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.counts import OK, QuestionCount, load_counts
from rag.entities.external import compare, load_external, normalize_question, read_qrels
from rag.errors import BadInputError
from tests.unit.entities_helpers import QUESTIONS, tiny_store, write_store  # noqa: F401 (fixture)


def _qrels(tmp_path):
    d = tmp_path / "ext"
    d.mkdir()
    (d / "qrels.x.txt").write_text("0 Q0 a 1\n0 Q0 b 1\n0 Q0 b 1\n1 Q0 c 1\n1 Q0 d 0\n3 Q0 e 1\n3 Q0 f 1\n3 Q0 g 1\n", encoding="utf-8")
    (d / "topics.x.supported.tsv").write_text("0\tWhere was Mozart born?\n1\twhere did beethoven move to\n3\twhat is the capital of austria\n", encoding="utf-8")
    (d / "topics.x.unsupported.tsv").write_text("2\twho wrote the divine comedy\n", encoding="utf-8")
    return d


def test_load_external_folder(tmp_path):
    ext = {e.qid: e for e in load_external(_qrels(tmp_path))}
    assert {q: e.count for q, e in ext.items()} == {"0": 2, "1": 1, "2": 0, "3": 3}  # duplicates and rel 0 not counted
    assert ext["2"].question == "who wrote the divine comedy"
    assert normalize_question("Where was Mozart born?") == "where was mozart born"


def test_bad_qrels(tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("0 Q0 a 1\n0 a 1\n", encoding="utf-8")
    with pytest.raises(BadInputError, match=r"q.txt:2"):
        read_qrels(p)
    p.write_text("0 Q0 a yes\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="not an integer"):
        read_qrels(p)
    with pytest.raises(BadInputError, match="does not exist"):
        load_external(tmp_path / "missing.txt")


def test_compare_spearman(tmp_path):
    from scipy.stats import spearmanr

    ext = load_external(_qrels(tmp_path))
    rows = [
        QuestionCount("nq-0", "where was mozart born", (), "M", "S", 5, 1, 1, OK),
        QuestionCount("nq-1", "Where did Beethoven move to?", (), "B", "V", 1, 1, 1, OK),
        QuestionCount("nq-2", "who wrote the divine comedy", (), "D", "C", 0, 1, 1, OK),
        QuestionCount("nq-3", "what is the capital of austria", (), None, None, 0, 0, 0, "question-unlinked"),
        QuestionCount("nq-9", "not in the external set", (), "X", "Y", 9, 1, 1, OK),
    ]
    c = compare(rows, ext)
    assert c.n_shared == 3 and c.n_shared_all == 4
    assert c.spearman == pytest.approx(spearmanr([5, 1, 0], [2, 1, 0])[0])
    assert c.spearman_all == pytest.approx(spearmanr([5, 1, 0, 0], [2, 1, 0, 3])[0])
    by_id = compare(rows, ext, match_by="id")
    assert by_id.n_shared_all == 4 and by_id.spearman == pytest.approx(c.spearman)
    with pytest.raises(BadInputError, match="only 0 questions"):
        compare([QuestionCount("z", "zzz", (), None, None, 0, 0, 0, "both-unlinked")], ext)


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("qa") / "tiny.jsonl"
    p.write_text("".join(json.dumps({"question": q.question, "answer": list(q.answers) or ["42"]}) + "\n" for q in QUESTIONS), encoding="utf-8")
    return p


def test_cli_counts_build_show_compare_link(tiny_store, qa_file, tmp_path):
    r = CliRunner()
    out = tmp_path / "counts"
    res = r.invoke(main, ["counts", "build", "--passages", str(tiny_store), "--qa", str(qa_file), "--out", str(out), "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "questions per log10 bucket" in res.output and "question-unlinked" in res.output
    rows, manifest = load_counts(out)
    assert len(rows) == len(QUESTIONS) and (out / "lexicon" / "manifest.json").exists() and (out / "postings" / "manifest.json").exists()
    assert manifest["linker"]["name"] == "lexicon" and manifest["passages"]["n_passages"] > 0
    assert next(r_ for r_ in rows if r_.question == "where was mozart born").count == 2

    res = r.invoke(main, ["counts", "show", str(out), "--examples", "2"])
    assert res.exit_code == 0 and "unlinked" in res.output and "[ok]" in res.output
    res = r.invoke(main, ["counts", "show", str(out), "--json"])
    assert json.loads(res.output)["n_questions"] == len(QUESTIONS)

    # reuse: same lexicon and postings, now with --exclude-countries
    res = r.invoke(main, ["counts", "build", "--passages", str(tiny_store), "--qa", str(qa_file), "--out", str(tmp_path / "c2"),
                          "--lexicon", str(out / "lexicon"), "--postings", str(out / "postings"), "--exclude-countries"])
    assert res.exit_code == 0, res.output
    # refuse: postings made by another linker configuration
    res = r.invoke(main, ["counts", "build", "--passages", str(tiny_store), "--qa", str(qa_file), "--out", str(tmp_path / "c3"),
                          "--lexicon", str(out / "lexicon"), "--postings", str(out / "postings"), "--threshold", "0.9"])
    assert res.exit_code == 2 and "were linked with" in res.output
    # refuse: postings of another corpus
    other = write_store(tmp_path / "other", docs={"1": ("Vienna", ["Vienna and Salzburg."])})
    res = r.invoke(main, ["counts", "build", "--passages", str(other), "--qa", str(qa_file), "--out", str(tmp_path / "c4"),
                          "--lexicon", str(out / "lexicon"), "--postings", str(out / "postings")])
    assert res.exit_code == 2 and "rebuild them over these passages" in res.output
    # refuse: missing lexicon / postings
    res = r.invoke(main, ["counts", "build", "--passages", str(tiny_store), "--qa", str(qa_file), "--out", str(tmp_path / "c5"),
                          "--lexicon", str(tmp_path / "nolex")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = r.invoke(main, ["counts", "build", "--passages", str(tiny_store), "--qa", str(qa_file), "--out", str(tmp_path / "c6"),
                          "--lexicon", str(out / "lexicon"), "--postings", str(tmp_path / "nopost")])
    assert res.exit_code == 2 and "do not exist" in res.output
    assert not (tmp_path / "c6").exists()

    ext = _qrels(tmp_path)
    res = r.invoke(main, ["counts", "compare", str(out), "--external", str(ext), "--out", str(tmp_path / "cmp.json")])
    assert res.exit_code == 0, res.output
    assert "Spearman rho" in res.output and json.loads((tmp_path / "cmp.json").read_text())["n_shared_all"] == 4

    res = r.invoke(main, ["link", "--lexicon", str(out / "lexicon"), "Mozart was born in Salzburg.", "where is vienna"])
    assert res.exit_code == 0, res.output
    assert "-> Wolfgang Amadeus Mozart" in res.output and "-> Salzburg" in res.output and "-> Vienna" in res.output
    res = r.invoke(main, ["link", "--lexicon", str(out / "lexicon"), "--json", "Mozart"])
    assert json.loads(res.output.splitlines()[0])["entity"] == "Wolfgang Amadeus Mozart"
    res = r.invoke(main, ["link", "Mozart"])
    assert res.exit_code == 2 and "--lexicon" in res.output


def test_cli_lexicon_and_postings_steps(tiny_store, qa_file, tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["counts", "lexicon", "--out", str(tmp_path / "lex"), "--passages", str(tiny_store), "--qa", str(qa_file)])
    assert res.exit_code == 0, res.output and "forms" in res.output
    res = r.invoke(main, ["counts", "postings", "--passages", str(tiny_store), "--lexicon", str(tmp_path / "lex"),
                          "--out", str(tmp_path / "post"), "--docs", "passages", "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "passages/s" in res.output
    res = r.invoke(main, ["counts", "lexicon", "--out", str(tmp_path / "lex2")])
    assert res.exit_code == 2 and "at least one source" in res.output
    for cmd in (["counts", "--help"], ["counts", "build", "--help"], ["link", "--help"]):
        res = r.invoke(main, cmd)
        assert res.exit_code == 0 and "Usage" in res.output


def test_interrupted_counts_build_reuses_finished_parts(tiny_store, tmp_path, monkeypatch):
    import rag.entities.lexicon_build as lexicon_mod
    import rag.entities.postings as postings_mod
    from rag.entities.counting import build_counts
    from rag.types import Question

    qs = [Question(f"q-{i}", q, (a,)) for i, (q, a) in enumerate([("where was mozart born", "Salzburg"),
                                                                ("what is the capital of austria", "Vienna")])]
    want, _ = build_counts(tiny_store, qs, tmp_path / "fresh", workers=1)

    calls = {"lexicon": 0, "postings": 0}
    real = {"lexicon": lexicon_mod.build_lexicon, "postings": postings_mod.build_postings}
    fail_postings = [True]

    def lexicon(*a, **k):
        calls["lexicon"] += 1
        return real["lexicon"](*a, **k)

    def postings(*a, **k):
        calls["postings"] += 1
        if fail_postings[0]:
            raise KeyboardInterrupt  # Ctrl-C while the corpus is being linked
        return real["postings"](*a, **k)

    monkeypatch.setattr(lexicon_mod, "build_lexicon", lexicon)
    monkeypatch.setattr(postings_mod, "build_postings", postings)
    out, parts = tmp_path / "counts", tmp_path / "counts.parts"
    with pytest.raises(KeyboardInterrupt):
        build_counts(tiny_store, qs, out, workers=1)
    assert (parts / "lexicon" / "manifest.json").exists() and not out.exists() and calls == {"lexicon": 1, "postings": 1}

    # the rerun reuses the finished lexicon and builds only the postings
    fail_postings[0] = False
    got, _ = build_counts(tiny_store, qs, out, workers=1)
    assert calls == {"lexicon": 1, "postings": 2}
    assert [(r.qid, r.count) for r in got] == [(r.qid, r.count) for r in want]
    assert not parts.exists() and (out / "lexicon" / "manifest.json").exists()

    # parts left by a build over other questions are not reused (the lexicon holds the questions' forms)
    fail_postings[0] = True
    with pytest.raises(KeyboardInterrupt):
        build_counts(tiny_store, qs, tmp_path / "c2", workers=1)
    fail_postings[0] = False
    build_counts(tiny_store, qs[:1], tmp_path / "c2", workers=1)
    assert calls == {"lexicon": 3, "postings": 4}
