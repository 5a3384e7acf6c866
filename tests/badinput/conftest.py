"""Fixtures of the bad-input corpus: the good inputs, built once, copied into
each case's own folder (the case's working directory)."""
import shutil

import pytest

from tests.badinput import files


@pytest.fixture(scope="session")
def good_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("badinput_good")
    files.good(d)
    files.bad_models(d)
    return d


@pytest.fixture
def w(good_inputs, tmp_path, monkeypatch):
    """A fresh copy of the good inputs, the current folder of the case."""
    d = tmp_path / "w"
    shutil.copytree(good_inputs, d)
    monkeypatch.chdir(d)
    monkeypatch.setenv("QDEPLOY_MEMORY_LIMIT", "256M")   # the memory estimates, machine-independent
    return d



