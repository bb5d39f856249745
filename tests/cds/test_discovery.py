"""GET /cds-services: the three labrec services and 2.0-legal prefetch templates."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from service.cds.discovery import PREFETCH
from tests.cds.checker import check_discovery
from tests.cds.conftest import Cds
from tests.cds.support import fixture_json

#: CDS Hooks 2.0 prefetch tokens: root-level context fields and the user tokens.
TOKENS_2_0 = {
    "{{context.patientId}}",
    "{{context.userId}}",
    "{{context.encounterId}}",
    "{{userPractitionerId}}",
    "{{userPractitionerRoleId}}",
    "{{userPatientId}}",
    "{{userRelatedPersonId}}",
}
#: The widely supported search subset (ehr-integration-notes §1.3) plus the params we use.
SEARCH_PARAMS = {"patient", "category", "clinical-status", "status", "_sort", "_count", "code"}


async def test_discovery_lists_one_service_per_hook(cds: Cds) -> None:
    response = await cds.client.get("/cds-services", headers=cds.ehr.headers("/cds-services"))
    assert response.status_code == 200, response.text
    services = response.json()["services"]
    assert {(s["id"], s["hook"]) for s in services} == {
        ("labrec-order-select", "order-select"),
        ("labrec-order-sign", "order-sign"),
        ("labrec-patient-view", "patient-view"),
    }
    for service in services:
        assert service["title"] and service["description"]
        assert service["prefetch"] == PREFETCH


async def test_discovery_passes_the_services_model(cds: Cds) -> None:
    response = await cds.client.get("/cds-services", headers=cds.ehr.headers("/cds-services"))
    assert check_discovery(response.json()) == []


def test_checker_accepts_the_public_discovery_examples() -> None:
    assert check_discovery(fixture_json("fhir-tools-ig/examples/Binary-CDSHookServices.json")) == []
    assert check_discovery(fixture_json("inferno-crd/cds-services.json")) == []
    assert check_discovery({"services": [{"hook": "patient-view", "id": "x"}]}) == [
        "discovery.services[0]: description is required"
    ]


def test_prefetch_templates_use_only_2_0_tokens_and_simple_searches() -> None:
    wanted = {"patient", "conditions", "medications", "labs", "labOrders"}
    assert set(PREFETCH) == wanted
    for key, template in PREFETCH.items():
        tokens = set(re.findall(r"\{\{[^}]*\}\}", template))
        assert tokens and tokens <= TOKENS_2_0, (key, tokens)
        path, _, query = template.partition("?")
        assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{context\.patientId\}\})?", path), key
        for name, value in parse_qsl(query, keep_blank_values=True):
            assert name.split(":")[0] in SEARCH_PARAMS, (key, name)
            assert value, (key, name)
            if name == "_sort":
                assert re.fullmatch(r"-?(date|authored)", value)
            if name == "_count":
                assert value.isdigit()


async def test_discovery_without_a_token_is_401(cds: Cds) -> None:
    response = await cds.client.get("/cds-services")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
