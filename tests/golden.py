"""Golden files: an input fixture beside its expected output. Run with
OFFERD_UPDATE_GOLDEN=1 to rewrite the expected files, then review the diff."""
from __future__ import annotations

import os
import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
UPDATE = os.environ.get("OFFERD_UPDATE_GOLDEN") == "1"


def cases(folder: str, pattern: str = "*.offer"):
    """pytest params, one per fixture file, with the file stem as id."""
    paths = sorted((FIXTURES / folder).glob(pattern))
    assert paths, f"no fixtures in {folder}"
    return [pytest.param(p, id=p.stem) for p in paths]


def compare(path: pathlib.Path, suffix: str, actual: str) -> None:
    expected_path = path.with_suffix(suffix)
    if UPDATE or not expected_path.exists():
        expected_path.write_text(actual)
        if not UPDATE:
            pytest.fail(f"wrote new golden file {expected_path.name}; review and commit it")
    assert actual == expected_path.read_text(), f"{path.name}: output differs from {expected_path.name}"
