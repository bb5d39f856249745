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
