"""The README stays true: every setting documented, and CI runs the README's test command."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"LABREC_{name.upper()}"
        for name in Settings.__struct_fields__
        if f"LABREC_{name.upper()}" not in README
    ]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    command = next(
        line
        for line in README.splitlines()
        if line.startswith("python3 -m venv") and "pytest" in line
    )
    assert command in (ROOT / ".ci" / "run").read_text()
