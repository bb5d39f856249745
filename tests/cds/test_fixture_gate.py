"""Fixture-reading tests skip on a fresh clone (no ../shared) and fail in CI instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cds import support


def test_absent_fixtures_skip_locally_and_fail_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(support, "FIXTURES", tmp_path / "no-shared-here")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="fixtures not found"):
        support.fixtures_dir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="may not be skipped"):
        support.fixtures_dir()
