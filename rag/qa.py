"""Question-answering datasets: loaders for the public formats, and downloaders with checksums.

Formats (a key of FORMATS; `load_questions` guesses it from the path when not given):
    nq-open          JSONL, one `{"question": str, "answer": [str]}` per line (NQ-open, EfficientQA)
    dpr-tsv          TSV `question \\t ['a', 'b']`, the answer list a Python literal; rows may wrap a field
                     in CSV quotes with doubled "" (TriviaQA), so rows are read with the csv module
    entityquestions  JSON list of `{"question", "answers": [str]}` per relation file `P<id>.test.json`,
                     or a folder of them (every relation, sorted by file name)
    curatedtrec      JSONL `{"question": str, "answer": [pattern]}` (DrQA's CuratedTrec-test.txt): the answers
                     are regular expressions
    jsonl            generic JSONL with configurable field names (`question_field`, `answers_field`, `id_field`)

Match type (how golds are compared; `load_questions(match_type=...)`): "string" (answer strings) or "regex"
(answer patterns, rag.metrics' regex mode). Default: regex for the curatedtrec format and for any file whose
name holds "curatedtrec" (DPR's curatedtrec-test.csv is a dpr-tsv file of patterns), string otherwise.
Regex questions carry meta["match_type"] = "regex" and meta["answer_aliases"], the literal strings their
patterns stand for (rag.regex_golds; what entity linking reads instead of the patterns).

Question ids are stable across runs:
    f"{dataset}-{n}"  n = the 0-based record number in the file (blank lines are not records), the same
                      numbering NanoKnow uses for NQ-open; dataset = the file name without its last suffix
                      (e.g. "nq-open.test"), or the `dataset` argument
    EntityQuestions   f"{dataset}-{relation}-{n}" with dataset "entityquestions" (file or folder alike)
    generic JSONL     the `id_field` value when given
`Question.meta` holds "dataset", "index" (n), for EntityQuestions "relation" (e.g. "P17"), and for regex
golds "match_type" and "answer_aliases".
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from rag.artifacts import file_sha256, quick_fingerprint
from rag.errors import BadInputError
from rag.jsonl import json_objects
from rag.regex_golds import REGEX, literal_answers
from rag.registry import Registry
from rag.types import Question

log = logging.getLogger(__name__)

# format name -> loader(path, dataset, **options) -> Iterator[Question]
FORMATS = Registry("QA format")

_RELATION = re.compile(r"^(P\d+)\.[\w.-]*json$")
MATCH_TYPES = ("string", "regex")


def _answers(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise BadInputError(f"{where}: answers must be a list of strings, got {value!r}")
    return tuple(value)


def _question(text, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(f"{where}: missing or empty question")
    return text.strip()


@FORMATS.register("jsonl")
def load_jsonl(
    path: Path,
    dataset: str,
    question_field: str = "question",
    answers_field: str = "answers",
    id_field: str | None = None,
) -> Iterator[Question]:
    for n, line_no, obj in json_objects(path):
        where = f"{path}:{line_no}"
        if question_field not in obj:
            raise BadInputError(f"{where}: no {question_field!r} field (fields: {', '.join(sorted(obj))})")
        if answers_field not in obj:
            raise BadInputError(f"{where}: no {answers_field!r} field (fields: {', '.join(sorted(obj))})")
        qid = f"{dataset}-{n}"
        if id_field is not None:
            if id_field not in obj:
                raise BadInputError(f"{where}: no {id_field!r} field")
            qid = str(obj[id_field])
        yield Question(
            qid,
            _question(obj[question_field], where),
            _answers(obj[answers_field], where),
            {"dataset": dataset, "index": n},
        )


@FORMATS.register("nq-open")
def load_nq_open(path: Path, dataset: str) -> Iterator[Question]:
    return load_jsonl(path, dataset, question_field="question", answers_field="answer")


@FORMATS.register("curatedtrec")
def load_curatedtrec(path: Path, dataset: str) -> Iterator[Question]:
    # the shape of NQ-open; that the answers are patterns is the match type's business (default_match_type)
    return load_jsonl(path, dataset, question_field="question", answers_field="answer")


@FORMATS.register("dpr-tsv")
def load_dpr_tsv(path: Path, dataset: str) -> Iterator[Question]:
    with open(path, encoding="utf-8", newline="") as f:
        # csv undoes the CSV quoting some rows carry; a quoted field may span lines, so count records
        reader = csv.reader(f, delimiter="\t")
        n = 0
        while True:
            line_no = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise BadInputError(f"{path}:{line_no}: malformed TSV row ({e})") from None
            where = f"{path}:{line_no}"
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2:
                raise BadInputError(f"{where}: expected 2 tab-separated fields (question, answer list), got {len(row)}")
            try:
                answers = ast.literal_eval(row[1])
            except (ValueError, SyntaxError) as e:
                raise BadInputError(f"{where}: the answers field is not a Python list literal ({e}): {row[1][:80]!r}") from None
            yield Question(f"{dataset}-{n}", _question(row[0], where), _answers(answers, where), {"dataset": dataset, "index": n})
            n += 1


def _relation_files(path: Path) -> list[tuple[str, Path]]:
    files = [path] if path.is_file() else sorted(path.iterdir())
    out = []
    for p in files:
        m = _RELATION.match(p.name)
        if m:
            out.append((m.group(1), p))
        elif path.is_file():
            raise BadInputError(f"{p}: an EntityQuestions file must be named P<relation id>.<split>.json (e.g. P17.test.json)")
    if not out:
        raise BadInputError(f"{path}: no EntityQuestions relation files (P<id>.<split>.json) in this folder")
    # numeric relation order, so P17 comes before P106
    return sorted(out, key=lambda t: (int(t[0][1:]), t[1].name))


@FORMATS.register("entityquestions")
def load_entityquestions(path: Path, dataset: str) -> Iterator[Question]:
    for relation, p in _relation_files(path):
        try:
            records = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BadInputError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(records, list):
            raise BadInputError(f"{p}: expected a JSON list of {{question, answers}} objects")
        for n, rec in enumerate(records):
            where = f"{p}: record {n}"
            if not isinstance(rec, dict):
                raise BadInputError(f"{where}: expected an object, got {type(rec).__name__}")
            yield Question(
                f"{dataset}-{relation}-{n}",
                _question(rec.get("question"), where),
                _answers(rec.get("answers"), where),
                {"dataset": dataset, "index": n, "relation": relation},
            )


def _is_curatedtrec(path: Path) -> bool:
    return "curatedtrec" in path.name.lower().replace("_", "").replace("-", "")


def _first_char(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return line.strip()[0]
    return ""


def guess_format(path: Path) -> str:
    if path.is_dir() or _RELATION.match(path.name):
        return "entityquestions"
    if _is_curatedtrec(path):
        # DrQA's CuratedTrec-test.txt holds JSON lines, DPR's curatedtrec-test.csv TSV rows
        return "curatedtrec" if _first_char(path) == "{" else "dpr-tsv"
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".txt", ".csv"):
        return "dpr-tsv"
    if suffix == ".jsonl":
        # peek at the first record: NQ-open uses "answer", generic files "answers"
        for _, _, obj in json_objects(path):
            return "nq-open" if "answer" in obj and "answers" not in obj else "jsonl"
        raise BadInputError(f"{path}: the file has no records")
    raise BadInputError(
        f"{path}: cannot tell the QA format from the name; pass one of: {', '.join(sorted(FORMATS))}"
    )


def default_match_type(path: str | os.PathLike, format: str | None = None) -> str:
    """The match type a QA file's golds get unless told: regex for the curatedtrec format or a file named
    *curatedtrec* (case, "-" and "_" ignored), else string."""
    return "regex" if format == "curatedtrec" or _is_curatedtrec(Path(path)) else "string"


def dataset_name(path: Path, format: str) -> str:
    if format == "entityquestions":
        return "entityquestions"
    return path.name.rsplit(".", 1)[0] if "." in path.name else path.name


def load_questions(
    path: str | os.PathLike,
    format: str | None = None,
    limit: int | None = None,
    dataset: str | None = None,
    match_type: str | None = None,
    **options,
) -> list[Question]:
    """Read a QA file (or an EntityQuestions folder) into Questions, in file order.

    `match_type` "string" or "regex" (None: default_match_type); regex questions get meta["match_type"] and
    meta["answer_aliases"]. `options` go to the format's loader (for "jsonl": question_field, answers_field, id_field).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"QA file {path} does not exist")
    if limit is not None and limit < 0:
        raise BadInputError(f"limit must be >= 0, got {limit}")
    if match_type is not None and match_type not in MATCH_TYPES:
        raise BadInputError(f"match_type must be one of {', '.join(MATCH_TYPES)}, got {match_type!r}")
    format = format or guess_format(path)
    loader: Callable[..., Iterator[Question]] = FORMATS.get(format)
    dataset = dataset or dataset_name(path, format)
    regex = (match_type or default_match_type(path, format)) == "regex"
    out: list[Question] = []
    if limit == 0:
        return out
    for q in loader(path, dataset, **options):
        if regex:
            q.meta.update(match_type=REGEX, answer_aliases=literal_answers(q.answers))
        out.append(q)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise BadInputError(f"{path}: no questions found")
    return out


def _folder_fingerprint(path: Path) -> str:
    """A QA folder (EntityQuestions: one file per relation): its files' names and quick fingerprints."""
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(quick_fingerprint(p).encode())
    return h.hexdigest()


def qa_fingerprint(path: Path) -> str:
    """The fingerprint a run or counts manifest records for its QA input (file or folder)."""
    return _folder_fingerprint(path)[:32] if path.is_dir() else file_sha256(path)[:32]


def qa_fingerprints(path: Path) -> set[str]:
    """Every fingerprint spelling a counts builder may have recorded for the QA input (full or cut sha256,
    quick fingerprint)."""
    if path.is_dir():
        full = _folder_fingerprint(path)
        return {full, full[:32]}
    sha = file_sha256(path)
    q = quick_fingerprint(path)
    return {sha, sha[:32], sha[:16], q, q[:16]}


# --- downloads -----------------------------------------------------------------------------------------

_NQ = "https://raw.githubusercontent.com/google-research-datasets/natural-questions/master/nq_open"
_ANSERINI = "https://raw.githubusercontent.com/castorini/anserini-tools/master/topics-and-qrels"


@dataclass(frozen=True)
class Source:
    """A public QA file. `files` maps each file we keep -> its expected sha256 (None: not checked).

    The expected hashes are those of the copies used to develop and test this project (../shared/data);
    a mismatch means the upstream file changed or the download was damaged.
    """

    url: str
    files: dict[str, str | None]
    format: str
    archive_member_dir: str | None = None  # for zip archives: the folder inside holding `files`


SOURCES: dict[str, Source] = {
    "nq-open": Source(
        f"{_NQ}/NQ-open.dev.jsonl",
        {"nq-open.test.jsonl": "f15567f38099f3615f5b8a685c0aef449c11ad90d3da3735e8d1b98115b40616"},
        "nq-open",
    ),
    "nq-open-efficientqa-dev": Source(
        f"{_NQ}/NQ-open.efficientqa.dev.1.1.jsonl",
        {"nq-open.efficientqa-dev.jsonl": "0ad45e2fa9fd32d10b3cf08c63e6d22f97ba1a0ce44ea98040f4c18bce7e268d"},
        "nq-open",
    ),
    "nq-dpr": Source(
        f"{_ANSERINI}/topics.dpr.nq.test.txt",
        {"nq.test.dpr-topics.tsv": "480cfe1d5b81bedd879ffe7c6a9ec294d317811e71c44daabfe242ca9d719d46"},
        "dpr-tsv",
    ),
    "triviaqa-dpr": Source(
        f"{_ANSERINI}/topics.dpr.trivia.test.txt",
        {"triviaqa.test.dpr-topics.tsv": "041ed9ddd2977c7fe452d290cf60e1f7e0a803977b0f912e234d218261c10e57"},
        "dpr-tsv",
    ),
    "entityquestions": Source(
        "https://nlp.cs.princeton.edu/projects/entity-questions/dataset.zip",
        {
            "P106.test.json": "bec62f5a59315413d1879cc06c0b71609b0f5d6ea0d848a4e06b5cf1fdf8561e",
            "P112.test.json": "dc7cb3a7bba554613af54680905ffb57c493f804b29b48f9da888e7507372d42",
            "P127.test.json": "bfc902208e52d3c2edbde9412f6711a0e45eb81ceaa055fb0deb4e28dfa43c00",
            "P131.test.json": "b82699adf0b94551caa9df73882ccd2e61be2cbaa0dff3dcaa5b3925103321de",
            "P136.test.json": "f21abd0338f033d4e4ce7f2b093512861c0077a782f99d1b91516db257d182ac",
            "P159.test.json": "93265917282f82466615e3e308492c4a14c44282578e422c33bb5965c94f09e6",
            "P17.test.json": "78c6ec6e958441dedbcb2e4487a0fb349d5492ee3357cb502738c2c914139618",
            "P175.test.json": "6d067c807fb906d81408826a37d2dac2b0b9d8d15f8817357e575262fde22ed7",
            "P176.test.json": "857db6eab852eb58b6cea9e2148538267f2586fcb1e462ba2888821a5228ed47",
            "P19.test.json": "66eb154d9adb6c9e5b0b4859868c39c23939d12deec2bcc748e40528a092830b",
            "P264.test.json": "532c5f8ee4f45f7dc828469ac29627114d27e7e5a4db6923ea43aa8098779892",
            "P276.test.json": "8c09b685d35cc1ca5a07176445d9b229bd19d420e83969a4f1c4730495a804f0",
            "P36.test.json": "49a960d0528f6c92c5b8b2835d287af3ad81aad1e0f816f2161cbaa4583d7e29",
            "P40.test.json": "205bb42172fba7917b301783eb0a3763667a43f647b0ddf2c380821ac658b166",
            "P407.test.json": "945b0bb34fc82db95c416dde9806bab181a6e14b02962a7b2b7b1197c700614c",
            "P495.test.json": "c815d2ed5242f421efc25b93828478ac0dc9346c752ee7975a35f686c875e3e2",
            "P50.test.json": "1395cfb25fffbe24bb786e24577b6c183e2a25f7ab3d7a6ba0a3e441d8ed7fd5",
            "P69.test.json": "2512f63a703cd83134402f52175a5c9d19d6ca81fd6014a881b90bcdff12f32b",
        },
        "entityquestions",
        archive_member_dir="dataset/test",
    ),
}


def _fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream `url` into `dest` (the caller makes the write atomic)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
    except (urllib.error.URLError, OSError) as e:
        raise BadInputError(
            f"could not download {url} ({e}); download it by other means and pass --from PATH"
        ) from e


def _check_hash(path: Path, expected: str | None, what: str) -> None:
    if expected is None:
        return
    got = file_sha256(path)
    if got != expected:
        raise BadInputError(
            f"{what}: sha256 {got} does not match the expected {expected}; the file is damaged or a different "
            f"version (pass --no-verify to accept it anyway)"
        )


def download(name: str, out: str | os.PathLike, src: str | os.PathLike | None = None, verify: bool = True) -> Path:
    """Fetch dataset `name` (a key of SOURCES) into folder `out`, or copy it from `src` (a file, folder or zip).

    Every kept file is checked against its sha256 before it is moved into `out`; returns the path to
    pass to `load_questions` (the file, or for EntityQuestions the folder).
    """
    if name not in SOURCES:
        raise BadInputError(f"unknown QA dataset {name!r}; choose one of: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        tmp = Path(tmp)
        staged = tmp / "staged"
        staged.mkdir()
        if src is None:
            raw = tmp / Path(source.url).name
            log.info("downloading %s", source.url)
            _fetch(source.url, raw)
        else:
            raw = Path(src)
            if not raw.exists():
                raise BadInputError(f"--from {raw}: no such file or folder")
        _stage(source, raw, staged)
        for fname, expected in source.files.items():
            if verify:
                _check_hash(staged / fname, expected, f"{name}: {fname}")
        # multi-file datasets get their own folder (what load_questions reads); single files land in `out`
        dest = out / name if len(source.files) > 1 else out
        dest.mkdir(exist_ok=True)
        for fname in source.files:
            os.replace(staged / fname, dest / fname)
    return dest if len(source.files) > 1 else dest / next(iter(source.files))


def _stage(source: Source, raw: Path, staged: Path) -> None:
    """Put every file of `source.files` into `staged`, from a single file, a folder or a zip archive."""
    import zipfile

    names = list(source.files)
    if raw.is_dir():
        for fname in names:
            candidates = [raw / fname, *(raw.rglob(fname))]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise BadInputError(f"{raw}: missing {fname}")
            shutil.copyfile(found, staged / fname)
    elif zipfile.is_zipfile(raw):
        with zipfile.ZipFile(raw) as z:
            members = {Path(m).name: m for m in z.namelist() if not m.endswith("/")}
            prefix = source.archive_member_dir
            for fname in names:
                exact = f"{prefix}/{fname}" if prefix else fname
                member = exact if exact in z.namelist() else members.get(fname)
                if member is None:
                    raise BadInputError(f"{raw}: the archive has no {fname}")
                with z.open(member) as fin, open(staged / fname, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
    else:
        if len(names) != 1:
            raise BadInputError(f"{raw}: expected a folder or zip archive holding {len(names)} files")
        shutil.copyfile(raw, staged / names[0])
