"""Question frames induced from a QA set: subjects of template questions, and nothing for natural questions."""
from __future__ import annotations

from rag.entities.frames import Frames, subject_key

SUBJECTS = ["Luke Prokopec", "Lalian railway station", "1988 Toronto International Film Festival", "Pound (town), Wisconsin",
            "psychoanalytic theory", "Barnardo's", "Battle of Asiago", "Battle of Ongjin", "Battle of Arsuf",
            "The Golden Gate", "Kim Jong-pil", "Time to Come"] * 3
TEMPLATES = ["Where was {} born?", "Where is {} located?", "Who is {}'s child?", "What kind of work does {} do?",
             "Which country is {} located in?"]


def template_questions():
    return [(t.format(s), s) for t in TEMPLATES for s in SUBJECTS]


def test_subjects_of_template_questions():
    qs = template_questions()
    fr = Frames.induce([q for q, _ in qs], min_count=20)
    assert fr.applies and fr.share_framed > 0.9
    for q, s in qs:
        a, b = fr.subject(q)
        assert q[a:b] == s, (q, q[a:b])


def test_frames_are_lower_case_words_after_the_question_word():
    fr = Frames.induce([q for q, _ in template_questions()], min_count=20)
    prefixes = {" ".join(p) for p in fr.prefixes}
    assert "Where is" in prefixes and "Where is Battle of" not in prefixes  # "Battle" is capitalized: a subject word
    assert ("'s", "child", "?") in fr.suffixes  # the possessive belongs to the frame of "Who is [X]'s child?"
    d = fr.describe()
    assert d["applies"] and d["min_frequency"] == 20


NATURAL = ["What was Eddie Murphy's first movie?", "In which country is the Taj Mahal?", "Who wrote the novel Dracula?",
           "What is the Japanese share index called?", "Which English city is home to the Ashmolean?",
           "What was the name of the ship in Moby Dick?", "Who was the first man on the Moon?",
           "In which year did the Titanic sink?", "What is the capital of Peru?", "Who painted the Mona Lisa?",
           "What was Walter Matthau's first movie?", "Which planet is known as the Red Planet?",
           "How many strings does a violin have?", "Who is the patron saint of Ireland?"]


def test_natural_questions_get_no_frames():
    fr = Frames.induce(NATURAL, min_count=2)
    assert fr._subject("What was Eddie Murphy's first movie?") is not None  # a frame pair does occur ...
    assert not fr.applies and fr.share_framed < 0.5  # ... but the set does not look template-generated
    assert fr.subject("What was Eddie Murphy's first movie?") is None


def test_min_share_sets_the_frequency():
    fr = Frames.induce([q for q, _ in template_questions()], min_count=5, min_share=0.5)
    assert fr.min_freq == len(template_questions()) // 2
    assert not fr.applies  # no frame is shared by half of the questions


def test_subject_key():
    assert subject_key("The Golden Gate") == subject_key("Golden Gate") == "golden gate"
    assert subject_key("Crow Harbour, New Brunswick") == "crow harbour new brunswick"
    assert subject_key(None) == ""


def test_no_closing_frame_no_subject():
    """A template with a second slot and no closing frame ("... mentions [X] and says [Y]") gives no subject."""
    tails = [f"{a} {b}" for a in ("rain fell", "dogs bark", "it grew") for b in ("in spring", "at night", "today", "often")]
    qs = [f"which article mentions {s} and says {t}" for s, t in zip(SUBJECTS, tails * 3)]
    fr = Frames.induce(qs, min_count=20)
    assert not fr.applies and fr.subject(qs[0]) is None
