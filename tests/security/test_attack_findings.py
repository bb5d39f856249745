"""Findings of the outside attack session on the issue-10 fixes (branch ``attack``).

Each test states the behaviour labrec promises and fails on the code as it stands; the fixes
belong to other branches. Reproductions against a real ``labrec serve`` are in the report.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from service.app import create_app
from tests.conftest import make_settings
from tests.support.app import lifespan_of, running_app
from tests.support.builders import tenant

BUDGET = 60  # LABREC_AUTH_REFUSALS_PER_MINUTE's default


async def test_bogus_keys_from_a_shared_address_do_not_lock_out_a_valid_key(
    database_url: str,
) -> None:
    """Someone behind the same address (NAT, or the load balancer every client shares, since
    labrec reads no forwarded-for header) spends the refusal budget with bogus keys; a valid
    key not yet in this process's cache must still work. Today it gets 429 for as long as the
    flood goes on (about one bogus request a second keeps it up)."""
    settings = make_settings(database_url)
    async with running_app(settings, run_worker=False) as (client, container):
        good = await tenant(container)  # never used before the flood: not in the key cache
        for i in range(BUDGET + 5):
            await client.get("/v1/orders", headers={"X-API-Key": f"lrk_guess{i}"})
        response = await client.get("/v1/orders", headers={"X-API-Key": good})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/orders/%00", "/v1/orders?patient_reference=%E2%80%AE"])
async def test_control_character_refusal_is_logged_as_400_with_request_id(
    sqlite_url: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``reject_control_characters`` raises from a middleware inside the access-log middleware:
    the client gets 400, but the access log records status 500 (false 5xx alerts an outsider
    can trigger at will) and the response carries no X-Request-Id to match the log line."""
    app = create_app(make_settings(sqlite_url), configure_logs=False, run_worker=False)
    async with (
        lifespan_of(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        caplog.set_level(logging.INFO, logger="labrec.access")
        response = await client.get(path)
    assert response.status_code == 400
    assert "x-request-id" in response.headers
    statuses = [r.__dict__.get("status") for r in caplog.records if r.name == "labrec.access"]
    assert statuses == [400]


ORDER = {
    "patient": {
        "reference": "ehr-patient-12345",
        "given_name": "Ana",
        "family_name": "Silva",
        "birth_date": "1990-04-02",
        "sex": "female",
    },
    "practitioner": {"npi": "1234567893", "name": "Jo Lee"},
    "panel_ids": ["hcg-urine"],
}


@pytest.mark.parametrize(
    "invisible",
    ["\u200b", "\ufeff", "\u200f", "\u061c", "\u2060"],
    ids=["zero-width-space", "bom", "right-to-left-mark", "arabic-letter-mark", "word-joiner"],
)
async def test_patient_reference_refuses_invisible_format_characters(
    sqlite_url: str, invisible: str
) -> None:
    """A patient reference is an identifier: ``ehr-patient-12345`` followed by an invisible
    character renders exactly like the real one but is another patient to every lookup
    (``GET /v1/orders?patient_reference=`` misses it) and is sent to the lab as is. Unicode
    counts U+200E/U+200F/U+061C as bidi controls too. Today all of these are accepted (201)."""
    body = {**ORDER, "patient": {**ORDER["patient"], "reference": f"ehr-patient{invisible}-12345"}}
    settings = make_settings(sqlite_url)
    async with running_app(settings, run_worker=False) as (client, container):
        key = await tenant(container)
        response = await client.post(
            "/v1/orders", json=body, headers={"X-API-Key": key, "Idempotency-Key": "k-1"}
        )
    assert response.status_code == 422, response.text
