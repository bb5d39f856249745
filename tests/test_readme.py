"""The README stays true: every setting documented, and CI runs the README's test command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec

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


def _readme_recommendation_body() -> dict[str, object]:
    """The JSON body of the README's POST /v1/recommendations example."""
    start = README.index("/v1/recommendations \\")
    body = README[README.index("-d '", start) + 4 : README.index("}'", start) + 1]
    parsed: dict[str, object] = json.loads(body)
    return parsed


def test_readme_recommendation_example_matches_the_engine() -> None:
    """The README's example answer follows MAPPING v2 (run as of 2026-11-20)."""
    from service.catalog_loader import load_catalog
    from service.usecases.dto import RecommendationRequest
    from service.usecases.recommendations import run_recommendation

    request = msgspec.convert(_readme_recommendation_body(), RecommendationRequest)
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    _, result = run_recommendation(load_catalog(), request, now)
    got = {s.panel.id: (s.priority, s.preselected) for s in result.suggestions}
    assert got == {
        "hcg-urine": ("essential", True),
        "hepatic-function-panel": ("recommended", True),
        "urine-drug-screen": ("recommended", True),
        "celiac-serology": ("recommended", True),
        "cbc": ("recommended", True),
        "ferritin": ("recommended", True),
        "tsh": ("recommended", True),
        "vitamin-b12": ("recommended", True),
        "fecal-calprotectin": ("consider", False),
        "dutch-complete": ("consider", False),
        "hs-crp": ("consider", False),
    }
    left = {s.panel_id: (s.reason, s.last_tested, s.next_due) for s in result.suppressed}
    assert left == {
        "urinalysis": ("recently_tested", dt.date(2026, 11, 1), dt.date(2027, 1, 30)),
        "gi-map": ("excluded_by_preference", None, None),
        "zrt-neurotransmitter": ("not_requested", None, None),
    }
    assert [(a.id, a.severity) for a in result.advisories] == [
        ("ketamine-pregnancy-possible", "warning"),
        ("ketamine-vital-signs", "info"),
    ]
    assert "2027-01-30" in README and "`not_requested`" in README and "ignored_codings" in README
