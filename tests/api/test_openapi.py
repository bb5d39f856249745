"""The committed OpenAPI document is what the app serves."""

from __future__ import annotations

import json

from service.cli import OPENAPI_PATH
from tests.conftest import make_settings
from tests.support.app import running_app


async def test_committed_openapi_matches_served(sqlite_url: str) -> None:
    async with running_app(make_settings(sqlite_url), run_worker=False) as (client, _):
        served = (await client.get("/schema/openapi.json")).json()
    committed = json.loads(OPENAPI_PATH.read_text())
    assert committed == served, "openapi/openapi.json is stale: run `labrec openapi`"
