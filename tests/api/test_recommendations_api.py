"""POST /v1/recommendations and the catalog routes over HTTP: success, every error class, limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import ketamine_context, tenant


@pytest.fixture
async def api(sqlite_url: str):
    async with running_app(make_settings(sqlite_url), run_worker=False) as (client, container):
        client.headers["X-API-Key"] = await tenant(container)
        yield client, container


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


async def test_ketamine_context_gets_traceable_suggestions(api) -> None:
    client, container = api
    response = await client.post("/v1/recommendations", json=ketamine_context())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["catalog_version"] == container.catalog.version
    assert body["therapy"] == "ketamine"
    ids = [s["panel"]["id"] for s in body["suggestions"]]
    assert "hepatic-function-panel" in ids and "hcg-urine" in ids
    for suggestion in body["suggestions"]:
        assert suggestion["rules"] and suggestion["evidence"] and suggestion["rationale"]
        assert suggestion["priority"] in ("essential", "recommended", "consider")
    assert any(a["id"] for a in body["advisories"])
    stored = await _stored(container, body["recommendation_id"])
    assert stored is not None and stored.catalog_version == body["catalog_version"]


async def _stored(container, recommendation_id: str):
    from service.persistence.models import StoredRecommendation

    async with container.sessions() as session:
        return await session.get(StoredRecommendation, recommendation_id)


async def test_therapy_by_rxnorm_coding(api) -> None:
    client, container = api
    coding = container.catalog.therapies["ketamine"].codings[0]
    body = ketamine_context(therapy={"system": coding.system, "code": coding.code})
    response = await client.post("/v1/recommendations", json=body)
    assert response.status_code == 200
    assert response.json()["therapy"] == "ketamine"


async def test_same_input_same_output(api) -> None:
    client, _ = api
    body = ketamine_context(as_of="2026-11-20")
    first = (await client.post("/v1/recommendations", json=body)).json()
    second = (await client.post("/v1/recommendations", json=body)).json()
    for volatile in ("recommendation_id", "created_at"):
        first.pop(volatile), second.pop(volatile)
    assert first == second


async def test_unmapped_codings_are_reported_not_rejected(api) -> None:
    """MAPPING v2 rule 7 (v1 answered 422 for a SNOMED condition): ignored and listed."""
    client, _ = api
    body = ketamine_context(
        conditions=[
            {"system": "http://snomed.info/sct", "code": "35489007"},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.2"},
        ],
        medications=[
            {"code": {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1"}},
            {"code": {"system": "urn:oid:2.16.840.1.113883.6.69", "code": "0000-0000"}},
        ],
    )
    response = await client.post("/v1/recommendations", json=body)
    assert response.status_code == 200, response.text
    ignored = response.json()["ignored_codings"]
    assert [i["path"] for i in ignored] == [
        "conditions[0]",
        "medications[0].code",
        "medications[1].code",
    ]
    assert all(i["reason"] for i in ignored)


@pytest.mark.parametrize(
    "overrides,field,words",
    [
        ({"therapy": "ibogaine"}, "therapy", "allowed: esketamine"),
        (
            {"therapy": {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1"}},
            "therapy",
            "no catalog therapy",
        ),
        ({"therapy": "esketamine", "route": "iv"}, "route", "allowed: intranasal"),
        ({"therapy": "tms", "route": "oral"}, "route", "leave route out"),
        (
            {"medications": [{"class_id": "nootropic"}]},
            "medications[0].class_id",
            "allowed: ace_inhibitor",
        ),
        (
            {"medications": [{"class_id": "nsaid", "code": {"system": "s", "code": "1"}}]},
            "medications[0]",
            "exactly one of code or class_id",
        ),
        (
            {"recent_tests": [{"date": "2026-01-01", "panel_id": "nope"}]},
            "recent_tests[0].panel_id",
            "unknown panel",
        ),
        (
            {"recent_tests": [{"date": "2999-01-01", "panel_id": "cbc"}]},
            "recent_tests[0].date",
            "future",
        ),
    ],
)
async def test_semantic_errors_name_field_and_allowed_values(
    api, overrides: dict[str, Any], field: str, words: str
) -> None:
    client, _ = api
    body = _problem(
        await client.post("/v1/recommendations", json=ketamine_context(**overrides)), 422
    )
    assert any(e["field"] == field and words in e["message"] for e in body["errors"]), body


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"patient": {"sex": "female", "age": 131}}, "patient.age"),
        ({"patient": {"sex": "female", "age": -1}}, "patient.age"),
        ({"findings": ["telepathy"]}, "findings[0]"),
        ({"phase": "forever"}, "phase"),
        ({"route": "rectal"}, "route"),
        ({"patient": {"sex": "female", "organisation_id": "x"}}, "patient"),
        ({"findings": ["fatigue"] * 21}, "findings"),
        ({"conditions": [{"system": "s", "code": "x" * 65}]}, "conditions[0].code"),
    ],
)
async def test_shape_errors_are_422_naming_the_field(
    api, overrides: dict[str, Any], field: str
) -> None:
    client, _ = api
    body = _problem(
        await client.post("/v1/recommendations", json=ketamine_context(**overrides)), 422
    )
    assert any(e["field"].startswith(field) for e in body["errors"]), body
    assert "telepathy" not in str(body) or field != "findings[0]"


async def test_malformed_json_is_400(api) -> None:
    client, _ = api
    response = await client.post(
        "/v1/recommendations", content=b'{"therapy": ', headers={"content-type": "application/json"}
    )
    _problem(response, 400)


async def test_body_over_limit_is_413(api) -> None:
    client, _ = api
    response = await client.post(
        "/v1/recommendations",
        content=b'{"pad": "' + b"x" * 300_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    _problem(response, 413)


async def test_missing_api_key_is_401(api) -> None:
    client, _ = api
    response = await client.post(
        "/v1/recommendations", json=ketamine_context(), headers={"X-API-Key": ""}
    )
    _problem(response, 401)


async def test_catalog_panels_filter_and_search(api) -> None:
    client, container = api
    everything = (await client.get("/v1/catalog/panels")).json()
    assert len(everything) == len(container.catalog.panels)
    hormone = (await client.get("/v1/catalog/panels", params={"family": "hormone"})).json()
    assert hormone and all(p["family"] == "hormone" for p in hormone)
    stool = (await client.get("/v1/catalog/panels", params={"specimen": "stool"})).json()
    assert stool and all(p["specimen"] == "stool" for p in stool)
    found = (await client.get("/v1/catalog/panels", params={"q": "24325-3"})).json()
    assert [p["id"] for p in found] == ["hepatic-function-panel"]
    assert (await client.get("/v1/catalog/panels", params={"tier": "gold"})).status_code == 400


async def test_catalog_panel_detail_and_404(api) -> None:
    client, _ = api
    detail = (await client.get("/v1/catalog/panels/hepatic-function-panel")).json()
    assert detail["codes"][0]["code"] == "24325-3"
    assert any(c["code"] == "24323-8" for c in detail["satisfied_by"])
    _problem(await client.get("/v1/catalog/panels/nope"), 404)


async def test_catalog_therapies_list_routes_and_codings(api) -> None:
    client, _ = api
    therapies = {t["id"]: t for t in (await client.get("/v1/catalog/therapies")).json()}
    assert set(therapies) == {
        "ketamine",
        "esketamine",
        "lithium",
        "valproate",
        "ssri_snri",
        "psilocybin",
        "tms",
    }
    assert therapies["esketamine"]["routes"] == ["intranasal"]
    assert all(c["code"] != "2056959" for c in therapies["esketamine"]["codings"])


async def test_health(api) -> None:
    client, container = api
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = (await client.get("/health/ready")).json()
    assert ready == {"status": "ok", "catalog_version": container.catalog.version}
