"""The v2 inputs of the "New recommendation" form reach the same use case as REST (MAPPING.md v2):
known pregnancy, setting, therapy dates, other medications by class, findings, families asked for
and abnormal recent tests; hostile values re-render the form with a message, never a 500.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any, get_args

import pytest

from service.domain.vocabulary import FamilyId, Finding
from service.persistence.models import StoredRecommendation
from service.ui import forms, labels
from tests.ui.helpers import recommendation_form
from tests.ui.test_pages import CHECKED, _signed_in
from tests.ui.test_safety_pages import _gates, _stored


def _days_ago(clock: Any, days: int) -> str:
    return (clock.now.date() - dt.timedelta(days=days)).isoformat()


async def _submit(client: Any, csrf: str, **overrides: Any) -> Any:
    return await client.post("/ui/recommendations", data=recommendation_form(csrf, **overrides))


async def _result(ui: Any, **overrides: Any) -> tuple[Any, dict[str, Any], str]:
    """(client, stored result, result page) for a form submitted with ``overrides``."""
    client, container, csrf = await _signed_in(ui)
    response = await _submit(client, csrf, **overrides)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    page = await client.get(location)
    assert page.status_code == 200
    return client, await _stored(container, location), page.text


async def test_form_offers_every_v2_input_with_a_label(ui) -> None:
    client, container, _ = await _signed_in(ui)
    page = (await client.get("/ui/recommendations/new")).text
    ids = [
        "pregnant",
        "setting",
        "therapy_started",
        "last_dose_change",
        *(f"finding-{f}" for f in get_args(Finding)),
        *(f"family-{f}" for f in get_args(FamilyId)),
        *(f"medication-{c}" for c in container.catalog.medication_classes),
        *(f"medication-started-{c}" for c in container.catalog.medication_classes),
        *(f"recent-abnormal-{i}" for i in range(3)),
    ]
    for element_id in ids:
        assert f'id="{element_id}"' in page, element_id
        assert f'<label for="{element_id}"' in page, element_id
    for med in container.catalog.medication_classes.values():
        assert f">{html.escape(med.name)}</label>" in page
    assert '<option value="take_home"' in page and '<option value="clinic_administered"' in page
    assert re.search(r'<details class="more-context">\s*<summary>More context', page)
    assert 'name="_csrf"' in page


def _advisory(result: dict[str, Any], advisory_id: str) -> dict[str, Any] | None:
    return next((a for a in result["advisories"] if a["id"] == advisory_id), None)


async def test_take_home_sublingual_ketamine_pregnancy_possible(ui) -> None:
    """Worst output #4: the pregnancy test is pre-checked and the take-home gate is shown."""
    _, result, page = await _result(
        ui, route="sublingual", pregnancy="yes", phase="maintenance", finding=[]
    )
    assert "hcg-urine" in CHECKED.findall(page)
    assert _advisory(result, "ketamine-take-home-assumed") is not None  # no setting: from route
    take_home = _advisory(result, "ketamine-take-home")
    assert take_home is not None and take_home["severity"] == "warning"
    assert html.escape(take_home["text"]) in _gates(page)["warning"][1]


@pytest.mark.parametrize(
    ("setting", "take_home", "assumed"),
    [("take_home", True, False), ("clinic_administered", False, False)],
)
async def test_setting_is_sent_as_chosen(ui, setting: str, take_home: bool, assumed: bool) -> None:
    _, result, page = await _result(ui, route="sublingual", setting=setting, pregnancy="yes")
    assert f'<p class="meta context-more">{html.escape(labels.SETTINGS[setting])}</p>' in page
    assert (_advisory(result, "ketamine-take-home") is not None) is take_home
    assert (_advisory(result, "ketamine-take-home-assumed") is not None) is assumed


async def test_known_pregnancy_wins_over_pregnancy_not_possible(ui) -> None:
    _, result, page = await _result(ui, pregnancy="no", pregnant="yes")
    pregnant = _advisory(result, "ketamine-pregnant")
    assert pregnant is not None and html.escape(pregnant["text"]) in _gates(page)["warning"][1]
    assert _advisory(result, "ketamine-pregnancy-possible") is None
    assert '<p class="meta context-more">known pregnancy</p>' in page
    hcg = next(s for s in result["suppressed"] if s["panel_id"] == "hcg-urine")
    assert hcg["reason"] == "not_applicable"  # known pregnancy: no pregnancy test
    # Without the tick, "not possible" stands: no pregnancy advisory at all.
    _, plain, _ = await _result(ui, pregnancy="no")
    assert _advisory(plain, "ketamine-pregnant") is None


async def test_ssri_snri_with_an_maoi_is_a_critical_banner(ui) -> None:
    _, result, page = await _result(
        ui, therapy="ssri_snri", route="oral", finding=[], medication=["maoi"]
    )
    maoi = _advisory(result, "ssri-snri-maoi")
    assert maoi is not None and maoi["severity"] == "critical"
    tag, inner = _gates(page)["critical"]
    assert 'role="alert"' in tag and html.escape(maoi["text"]) in inner
    assert "also taking: Monoamine oxidase inhibitor (MAOI)</p>" in page  # what the gate rests on
    _, without, page = await _result(ui, therapy="ssri_snri", route="oral", finding=[])
    assert _advisory(without, "ssri-snri-maoi") is None and "critical" not in _gates(page)


def _lithium(clock: Any, **overrides: Any) -> dict[str, Any]:
    form = {
        "therapy": "lithium",
        "route": "oral",
        "phase": "maintenance",
        "condition": ["F31.81", "", ""],
        "sex": "male",
        "finding": [],
        "therapy_started": _days_ago(clock, 500),
    }
    return form | overrides


async def test_lithium_recent_dose_change_gives_the_titration_retest(ui, clock) -> None:
    """Worst output #1: a level 3 days into titration is due again in days, not months."""
    _, steady, page = await _result(ui, **_lithium(clock))
    level = next(s for s in steady["suggestions"] if s["panel"]["id"] == "lithium-level")
    assert level["retest_days"] > 28
    _, titrating, page = await _result(ui, **_lithium(clock, last_dose_change=_days_ago(clock, 10)))
    level = next(s for s in titrating["suggestions"] if s["panel"]["id"] == "lithium-level")
    assert level["retest_days"] == 7
    assert f"retest after {level['retest_days']} days" in page
    assert f"last dose change {_days_ago(clock, 10)}" in page
    _, recent, page = await _result(
        ui,
        **_lithium(
            clock,
            last_dose_change=_days_ago(clock, 10),
            recent_panel=["lithium-level", "", ""],
            recent_date=[_days_ago(clock, 3), "", ""],
        ),
    )
    left = next(s for s in recent["suppressed"] if s["panel_id"] == "lithium-level")
    due = (clock.now.date() + dt.timedelta(days=4)).isoformat()
    assert left["reason"] == "recently_tested" and left["next_due"] == due
    assert f"next due {due}" in page


async def test_abnormal_recent_test_does_not_count(ui, clock) -> None:
    recent = {
        "recent_panel": ["lithium-level", "", ""],
        "recent_date": [_days_ago(clock, 10), "", ""],
    }
    _, normal, _ = await _result(ui, **_lithium(clock, **recent))
    assert any(s["panel_id"] == "lithium-level" for s in normal["suppressed"])
    _, abnormal, page = await _result(ui, **_lithium(clock, recent_abnormal=["0"], **recent))
    assert not any(s["panel_id"] == "lithium-level" for s in abnormal["suppressed"])
    assert "lithium-level" in CHECKED.findall(page)


async def test_medication_start_date_and_families_asked_for_reach_the_use_case(ui, clock) -> None:
    client, container, csrf = await _signed_in(ui)
    started = _days_ago(clock, 20)
    response = await _submit(
        client,
        csrf,
        medication=["antipsychotic", "nsaid"],
        **{"medication_started-antipsychotic": started},
        request_family=["neurotransmitter"],
    )
    assert response.status_code == 303, response.text
    async with container.sessions() as session:
        stored = await session.get(StoredRecommendation, response.headers["location"][-36:])
        assert stored is not None
    sent = [(m["class_id"], m["started"]) for m in stored.context["medications"]]
    assert sent == [("antipsychotic", started), ("nsaid", None)]
    assert stored.context["preferences"]["request_families"] == ["neurotransmitter"]
    assert _advisory(stored.result, "antipsychotic-metabolic-monitoring") is not None
    neuro = {p.id for p in container.catalog.panels.values() if p.family == "neurotransmitter"}
    assert neuro & {s["panel"]["id"] for s in stored.result["suggestions"]}
    assert not any(s["reason"] == "not_requested" for s in stored.result["suppressed"])
    # Not asked for: the same context leaves the neurotransmitter panels out as not requested.
    _, plain, _ = await _result(ui, medication=["antipsychotic", "nsaid"])
    assert neuro & {s["panel_id"] for s in plain["suppressed"] if s["reason"] == "not_requested"}


_HOSTILE = [
    ({"therapy_started": "2026-02-30"}, "therapy_started"),
    ({"last_dose_change": "yesterday"}, "last_dose_change"),
    ({"medication": ["maoi", "unicorn"]}, "medications"),
    ({"medication": ["nsaid"], "medication_started-nsaid": "31/12/2025"}, "medication-nsaid"),
    ({"medication_started-nsaid": "2026-01-01"}, "medication-nsaid"),
    ({"setting": "home\x00"}, "setting"),
    ({"setting": "hospital"}, "setting"),
    ({"request_family": ["neurotransmitter", "astrology"]}, "request_families"),
    ({"recent_abnormal": ["1"]}, "recent-1"),
    ({"recent_panel": ["lithium-level"], "recent_date": ["2026-13-01"]}, "recent-0"),
    ({"vendors": "Acme\x00Labs,\x1b[31m"}, "vendors"),
    ({"condition": ["F33.2\x00", "", ""]}, "condition-0"),
    ({"finding": ["gi_symptoms", "x" * 5000]}, "findings"),
    ({"therapy": "ketamine\x07"}, "therapy"),
    ({"route": "rectal"}, "route"),
    ({"recent_panel": ["lithium-level\x00"], "recent_date": ["2026-01-01"]}, "recent-0"),
]


@pytest.mark.parametrize(("overrides", "field"), _HOSTILE)
async def test_hostile_values_re_render_the_form_with_the_error(
    ui, overrides: dict[str, Any], field: str
) -> None:
    client, _, csrf = await _signed_in(ui)
    response = await _submit(client, csrf, **overrides)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    assert 'role="alert"' in text and "Please correct the fields marked below." in text
    assert f'id="{field}-error"' in text
    assert f'aria-describedby="{field}-error"' in text or f' {field}-error"' in text
    assert f'value="{csrf}"' in text  # the form can be sent again as it is


async def test_error_in_more_context_opens_the_fold_and_keeps_what_was_typed(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    response = await _submit(
        client,
        csrf,
        therapy_started="2026-02-30",
        medication=["lithium_interacting"],
        **{"medication_started-lithium_interacting": "2026-01-05"},
        request_family=["hormone"],
        pregnant="yes",
        setting="take_home",
    )
    assert response.status_code == 422
    text = response.text
    assert '<details class="more-context" open>' in text
    assert 'value="2026-02-30"' in text and 'value="2026-01-05"' in text
    assert re.search(r'id="medication-lithium_interacting" [^>]*checked', text)
    assert re.search(r'id="family-hormone" [^>]*checked', text)
    assert re.search(r'id="pregnant" [^>]*checked', text)
    assert re.search(r'<option value="take_home" selected', text)


@pytest.mark.parametrize(("when", "status"), [("0001-01-01", 303), ("9999-12-31", 422)])
async def test_extreme_dates_are_answered_never_a_500(ui, when: str, status: int) -> None:
    """Valid but absurd dates: REST's rules apply (a future date counts as today); no crash."""
    client, _, csrf = await _signed_in(ui)
    response = await _submit(
        client,
        csrf,
        therapy="lithium",
        route="oral",
        phase="maintenance",
        therapy_started=when,
        last_dose_change=when,
        medication=["nsaid"],
        **{"medication_started-nsaid": when},
        recent_panel=["lithium-level", "", ""],
        recent_date=[when, "", ""],
    )
    assert response.status_code == status, response.text
    if status == 422:  # a test result from the future is refused, next to it
        assert 'id="recent-0-error"' in response.text and "future" in response.text
    else:
        assert (await client.get(response.headers["location"])).status_code == 200


@pytest.mark.parametrize(
    ("therapy", "route", "named"),
    [
        ("valproate", "oral", "Valproate"),
        ("lithium", "oral", "Lithium"),
        ("ssri_snri", "oral", "SSRI or SNRI antidepressant"),
        ("ketamine", "iv", "Ketamine"),
    ],
)
async def test_disclaimer_names_the_therapy_in_context(
    ui, therapy: str, route: str, named: str
) -> None:
    _, result, page = await _result(ui, therapy=therapy, route=route, finding=["fatigue"])
    disclaimer = result["disclaimer"]
    assert f"response to {named}" in disclaimer
    if therapy != "ketamine":
        assert "ketamine" not in disclaimer.lower()
    assert f'<p class="disclaimer">{html.escape(disclaimer)}</p>' in page


def test_use_case_errors_without_a_field_of_their_own_go_to_the_top() -> None:
    mapped = forms.map_usecase_errors(
        [
            {"field": "medications[0].class_id", "message": "unknown medication class 'x'"},
            {"field": "setting", "message": "not allowed"},
            {"field": "preferences.request_families", "message": "too many"},
            {"field": "as_of", "message": "is odd"},
            {"field": "recent_tests[0].date", "message": "is in the future"},
        ],
        {"recent_tests": [2]},
    )
    assert mapped["medications"] == "Unknown medication class 'x'."
    assert mapped["setting"] == "Not allowed."
    assert mapped["recent-2"] == "Is in the future."
    assert mapped["form"] == "preferences.request_families: Too many. as_of: Is odd."
