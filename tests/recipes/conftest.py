"""One synthetic corpus for every recipe test; each lays it out as the corpus it stands in for."""

from __future__ import annotations

import pytest

from tests.recipes._fixtures import Source, synthetic_source


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return synthetic_source(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Feature stores and manifests of a test stay in its own folder (the stages inherit it)."""
    monkeypatch.setenv("GRU_JAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
