"""The proofs write under a temporary build folder: tests leave no files behind."""

import pytest

from hw.config import BUILD_DIR_ENV


@pytest.fixture(autouse=True)
def formal_build_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(BUILD_DIR_ENV, str(tmp_path))
    return tmp_path
