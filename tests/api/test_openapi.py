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


async def test_only_the_json_document_is_served(sqlite_url: str) -> None:
    """No HTML documentation pages: they loaded scripts from public CDNs on the UI's origin."""
    pages = ["swagger", "redoc", "elements", "rapidoc", "oauth2-redirect.html", "openapi.yaml"]
    async with running_app(make_settings(sqlite_url), run_worker=False) as (client, _):
        document = await client.get("/schema/openapi.json")
        answers = {page: await client.get(f"/schema/{page}") for page in pages}
        roots = [await client.get("/schema"), await client.get("/schema/")]
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "labrec"
    assert {page: r.status_code for page, r in answers.items()} == dict.fromkeys(pages, 404)
    for response in [*answers.values(), *roots]:
        assert "<script" not in response.text.lower()
    assert all(r.headers["content-type"].endswith("json") for r in roots)
