"""EvalConfig: strict parsing of presets, dotted overrides, and the shipped presets themselves."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import BadInputError
from rag.evaluation.config import EvalConfig, load_config, parse_set, to_dict, config_from_dict

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
qa: {path: qa.jsonl}
counts: counts
retrievers:
  - {name: bm25, index: indexes/bm25}
"""


def write(tmp_path, text, name="preset.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_minimal_preset_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert isinstance(cfg, EvalConfig)
    assert cfg.name == "preset" and cfg.k == 5 and cfg.recall_ks == [1, 5, 20, 100] and cfg.depth == 100
    assert cfg.buckets == [0, 1, 10, 100, 1000] and cfg.per_bucket is None and cfg.metric == "em"
    assert cfg.qa.path == Path("qa.jsonl") and cfg.retrievers[0].index == Path("indexes/bm25")
    assert cfg.run_dir == Path("runs/preset")
    assert config_from_dict(to_dict(cfg)) == cfg  # the resolved config written to a run folder reads back


@pytest.mark.parametrize(
    "extra, message",
    [
        ("bogus: 1\n", "config: unknown key(s) 'bogus'"),
        ("reader: {modle: x}\n", "config.reader: unknown key(s) 'modle'"),
        ("k: five\n", "config.k: expected int"),
        ("k: 0\n", "k must be positive"),
        ("metric: accuracy\n", "metric must be one of"),
        ("buckets: [0, 10, 5]\n", "strictly increasing"),
        ("adaptive: {retriever: dense}\n", "adaptive.retriever 'dense' is not one of"),
        ("per_bucket: -1\n", "per_bucket must be positive"),
        ("reader: {sentences: 0}\n", "reader.sentences must be a positive integer or null"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path, extra, message):
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(BadInputError) as e:
        load_config(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_missing_required_and_bad_names(tmp_path):
    with pytest.raises(BadInputError, match="missing required key 'counts'"):
        load_config(write(tmp_path, "qa: {path: x}\nretrievers: []\n"))
    with pytest.raises(BadInputError, match="unique"):
        load_config(write(tmp_path, MINIMAL + "  - {name: bm25, index: other}\n"))
    with pytest.raises(BadInputError, match="reserved"):
        load_config(write(tmp_path, MINIMAL.replace("name: bm25", "name: closed")))
    with pytest.raises(BadInputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(BadInputError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_win_and_are_checked(tmp_path):
    path = write(tmp_path, MINIMAL + "per_bucket: 50\n")
    cfg = load_config(path, {"per_bucket": 7, "reader.model": "qwen2.5-coder-0.5b", "qa.limit": 100, "seed": None})
    assert cfg.per_bucket == 7 and cfg.reader.model == "qwen2.5-coder-0.5b" and cfg.qa.limit == 100 and cfg.seed == 0
    with pytest.raises(BadInputError, match="unknown key"):
        load_config(path, {"reader.nope": 1})
    with pytest.raises(BadInputError, match="is not a mapping"):
        load_config(path, {"qa.path.x": 1})
    assert parse_set("buckets=[0, 10, 1000]") == ("buckets", [0, 10, 1000])
    assert parse_set("reader.demos=null") == ("reader.demos", None)
    cleared = load_config(write(tmp_path, MINIMAL + "reader: {sentences: 3}\n"), {"seed": None}, {"reader.sentences": None})
    assert cleared.reader.sentences is None and cleared.seed == 0  # --set KEY=null clears; an unset flag does not
    with pytest.raises(BadInputError, match="KEY=VALUE"):
        parse_set("=3")


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_presets_parse(preset):
    cfg = load_config(preset)
    assert cfg.retrievers
    if preset.name != "world.yaml":  # the generated world is small: every question, its own tiny LM
        assert cfg.per_bucket and cfg.reader.backend == "auto"  # the fastest backend on the machine that runs it
    text = preset.read_text()
    if "--config configs/" in text:  # the header's run command names this file, not a sibling's
        assert f"--config configs/{preset.name}" in text
