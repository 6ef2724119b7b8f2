"""The fictional world: determinism, exact ground-truth counts (by brute force and through the ordinary
linker + counter), bad parameters, and the tiny LM's tokenizer, training, reader and probes."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from rag.errors import BadInputError
from rag.world.generator import (
    CORPUS, QA, RELATIONS, TRUTH, WorldParams, generate, load_avoid_list, open_world, read_jsonl, write_world,
)

SMALL = dict(n_people=24, n_orgs=8, n_cities=8, n_countries=3, n_demo_people=4, max_count=80,
             n_distractor_docs=30, n_reading_docs=40)


@pytest.fixture(scope="module")
def world():
    return generate(WorldParams(seed=3, **SMALL))


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory, world):
    out = tmp_path_factory.mktemp("w") / "world"
    write_world(world, out)
    return out


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate(WorldParams(seed=3, **SMALL))
    assert again.docs == world.docs and again.questions == world.questions and again.probes == world.probes
    other = generate(WorldParams(seed=4, **SMALL))
    assert other.docs != world.docs


def test_written_files_are_byte_identical_for_a_seed(tmp_path, world):
    write_world(world, tmp_path / "a")
    write_world(generate(WorldParams(seed=3, **SMALL)), tmp_path / "b")
    for name in (CORPUS, QA, TRUTH):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _forms(world, name):
    e = next(e for e in world.entities if e.name == name)
    return [re.compile(r"(?<!\w)" + re.escape(a) + r"(?!\w)") for a in e.aliases]


def test_ground_truth_counts_by_brute_force(world):
    """Documents where subject and object (any alias) co-occur == the documents that state the fact == count."""
    texts = {d["id"]: d["title"] + "\n" + d["text"] for d in world.docs}
    assert any(t["count"] == 0 for t in world.truth) and max(t["count"] for t in world.truth) >= 10
    for t in world.truth:
        s, o = _forms(world, t["subject"]), _forms(world, t["object"])
        both = [i for i, x in texts.items() if any(p.search(x) for p in s) and any(p.search(x) for p in o)]
        assert sorted(both) == sorted(t["docs"]), t
        assert len(both) == t["count"] == sum(t["templates"].values())
        rel = RELATIONS[t["relation"]]
        for i in t["docs"]:  # each of them states the fact with a training template
            stated = [tpl for tpl in rel.templates if tpl != "faq" and tpl.format(s=t["subject"], o=t["object"]) in texts[i]]
            faq = f"Q: {rel.question.format(s=t['subject'])}\nA: {t['object']}" in texts[i]
            assert stated or faq


def test_counts_are_heavy_tailed():
    w = generate(WorldParams(seed=0))
    c = np.array([t["count"] for t in w.truth])
    assert c.max() >= 500 and (c == 0).sum() > 0
    assert (c < 10).sum() > (c >= 100).sum() > 0  # many rare facts, a few very frequent ones
    assert len({d["id"] for d in w.docs}) == len(w.docs)


def test_reading_exercises_hold_their_answer_and_near_misses(world):
    blocks = [b for d in world.docs if d["title"] == "Reading exercise" for b in d["text"].split("\n\n")]
    assert blocks
    shared = {"City", "Republic", "of", "Institute", "Company", "Guild", "Foundry", "Society", "Trading", "House"}
    entity_words = {w for e in world.entities if e.type != "year" for a in e.aliases for w in a.split()} - shared
    questions = [re.compile(re.escape(r.question).replace(re.escape("{s}"), "(.+)")) for r in RELATIONS.values()]
    near = 0
    for b in blocks:
        *passages, q, a = b.split("\n")
        assert q.startswith("Q: ") and a.startswith("A: ") and all(x.startswith("Passage: ") for x in passages)
        answer, text = a[3:], " ".join(passages)
        assert answer in text  # only copying answers it
        subj = next(m.group(1) for rx in questions if (m := rx.fullmatch(q[3:])))
        near += text.count(subj) > 2  # named in its passage title, its statement and at least one near miss
        assert not set(subj.split()) & entity_words  # throwaway names, never the world's entities
    assert near > len(blocks) / 4


def test_reading_exercises_with_known_answers_name_one_world_entity():
    w = generate(WorldParams(seed=3, reading_known_answers=1.0, **SMALL))
    names = {e.name for e in w.entities if not e.demo}
    years = {e.name for e in w.entities if e.type == "year"}
    docs = [d["text"] for d in w.docs if d["title"] == "Reading exercise"]
    known = 0
    for text in docs:
        answer = text.rsplit("\nA: ", 1)[1]
        known += answer in names
        # the answer is the document's only entity of the world (no world year beside it either)
        others = {n for n in names | years if n != answer and re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)}
        assert not others, others
    assert known == len(docs)  # every last question, as asked
    assert generate(WorldParams(seed=3, **SMALL)).docs == generate(WorldParams(seed=3, reading_known_answers=0.0, **SMALL)).docs


def test_duplicate_mode_repeats_one_template():
    w = generate(WorldParams(seed=1, mentions="duplicate", **SMALL))
    assert all(len(t["templates"]) <= 1 for t in w.truth)
    p = generate(WorldParams(seed=1, **SMALL))
    assert any(len(t["templates"]) > 1 for t in p.truth)


def test_names_are_unique_and_avoid_a_given_list(tmp_path, world):
    named = [e for e in world.entities if e.type != "year"]  # years are numbers, not generated names
    words = [w for e in named for a in e.aliases for w in a.split() if w not in ("City", "Republic", "of")
             and w not in ("Institute", "Company", "Guild", "Foundry", "Society", "Trading", "House")]
    assert len({e.name for e in world.entities}) == len(world.entities)
    names = [e.name for e in named]
    assert len(set(names)) == len(names)
    banned = tmp_path / "real.txt"
    banned.write_text("\n".join(names[:5]) + "\n", encoding="utf-8")
    w2 = generate(WorldParams(seed=3, **SMALL), avoid=load_avoid_list(banned))
    assert not set(names[:5]) & {a for e in w2.entities for a in e.aliases}
    assert all(len(w) >= 7 for w in words)


@pytest.mark.parametrize("bad", [
    dict(n_people=0), dict(n_cities=-3), dict(n_countries=0), dict(max_count=0), dict(zipf=0), dict(zipf=-1.0),
    dict(zero_fraction=1.0), dict(mentions="copies"), dict(facts_per_doc=0), dict(n_distractor_docs=-1),
    dict(n_people=2.5), dict(n_orgs=1), dict(n_nonce=1), dict(n_nonce=-5), dict(reading_known_answers=1.5),
])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(BadInputError, match="world parameters"):
        WorldParams(**bad)


def test_world_folder_manifest_and_qa_format(world_dir, world):
    from rag.qa import load_questions

    m = open_world(world_dir)
    assert m["n_questions"] == len(world.questions) and m["counts"]["max"] == max(t["count"] for t in world.truth)
    qs = load_questions(world_dir / QA)
    assert [q.qid for q in qs] == [t["qid"] for t in read_jsonl(world_dir / TRUTH)]
    assert qs[0].answers == tuple(world.questions[0]["answer"])
    (world_dir / CORPUS).write_text("truncated", encoding="utf-8")
    from rag.errors import ArtifactError

    with pytest.raises(ArtifactError):
        open_world(world_dir)


@pytest.mark.parametrize("known", [0.0, 1.0], ids=["throwaway-answers", "world-answers"])
def test_ordinary_linker_and_counter_agree_exactly(tmp_path, world, known):
    """The world's counts through build_passages -> lexicon -> postings -> count_questions equal the truth."""
    pytest.importorskip("ahocorasick_rs")
    if known:  # reading exercises answered by world entities must not add co-occurrences
        world = generate(WorldParams(seed=3, reading_known_answers=known, **SMALL))
    from rag.corpus.build import build_passages
    from rag.entities.counting import build_counts
    from rag.qa import load_questions
    from rag.world.bench import build_world_lexicon, count_agreement

    wd = tmp_path / "world"
    write_world(world, wd)
    build_passages(wd / CORPUS, tmp_path / "passages", format="wikiextractor", words=40)  # several passages per long doc
    build_world_lexicon(wd, tmp_path / "passages", tmp_path / "lexicon")
    qs = load_questions(wd / QA)
    rows, _ = build_counts(tmp_path / "passages", qs, tmp_path / "counts", qa_path=wd / QA, lexicon=tmp_path / "lexicon",
                           unit="articles", workers=1)
    agree = count_agreement(rows, read_jsonl(wd / TRUTH))
    assert agree["n_mismatches"] == 0, agree["mismatches"][:3]
    assert agree["exact"] == len(qs) and agree["unlinked"] == 0
    years = [t for t in read_jsonl(wd / TRUTH) if t["relation"] == "founded"]
    assert years and any(t["count"] > 0 for t in years)  # year answers are linked and counted too


def test_agreement_reports_mismatches():
    from rag.counts import QuestionCount
    from rag.world.bench import count_agreement

    rows = [QuestionCount("qa-0", "q", ("a",), "S", "A", 3, 3, 3, "ok"), QuestionCount("qa-1", "q", ("a",), None, None, 0, 0, 0, "question-unlinked")]
    truth = [{"qid": "qa-0", "question": "q", "count": 4}, {"qid": "qa-1", "question": "q", "count": 0}]
    a = count_agreement(rows, truth)
    assert a["exact"] == 0 and a["n_mismatches"] == 2 and a["unlinked"] == 1
    assert a["mismatches"][0]["truth"] == 4 and a["mismatches"][0]["linker"] == 3
