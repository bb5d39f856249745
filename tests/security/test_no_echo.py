"""Error messages repeat a submitted value only when it is shaped like an identifier.

Free text sent in an id's place (a patient's name, markup, an injection attempt) is never
echoed back in problem details, on any route that names what it could not find or use.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from service.usecases.errors import shown
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import ketamine_context, new_key, order_body, tenant

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HOSTILE = [
    "Ana Silva 1990-04-02",
    "<script>alert(1)</script>",
    "x' OR '1'='1",
    "ana.silva@example.org",
]


@pytest.fixture
async def app(database_url: str):
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        client.headers["X-API-Key"] = await tenant(container, role="admin")
        yield client


def _assert_not_echoed(response, text: str, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert text not in response.text
    assert quote(text) not in response.text
    for word in ("Silva", "script", "OR", "example"):
        if word in text:
            assert word not in response.text


@pytest.mark.parametrize("text", HOSTILE)
async def test_request_bodies_are_not_echoed(app, text: str) -> None:
    for body in (
        ketamine_context(therapy=text),
        ketamine_context(therapy={"system": RXNORM, "code": text}),
        ketamine_context(recent_tests=[{"panel_id": text, "date": "2026-01-02"}]),
    ):
        response = await app.post("/v1/recommendations", json=body)
        _assert_not_echoed(response, text, 422)
        assert "(a value that is not an id)" in response.text
    response = await app.post("/v1/orders", json=order_body(panel_ids=[text]), headers=new_key())
    _assert_not_echoed(response, text, 422)


@pytest.mark.parametrize("text", HOSTILE)
async def test_ids_in_the_path_are_not_echoed(app, text: str) -> None:
    segment = quote(text, safe="")
    for method, path in (
        ("GET", f"/v1/orders/{segment}"),
        ("POST", f"/v1/orders/{segment}/cancel"),
        ("GET", f"/v1/catalog/panels/{segment}"),
        ("GET", f"/v1/catalog/rules/{segment}/feedback"),
        ("POST", f"/v1/admin/api-keys/{segment}/revoke"),
    ):
        _assert_not_echoed(await app.request(method, path), text, 404)


async def test_identifier_shaped_values_are_still_named(app) -> None:
    response = await app.post("/v1/recommendations", json=ketamine_context(therapy="ketamin"))
    assert "unknown therapy 'ketamin'" in response.text
    response = await app.post(
        "/v1/orders", json=order_body(panel_ids=["no-such-panel"]), headers=new_key()
    )
    assert "'no-such-panel'" in response.text
    response = await app.get("/v1/catalog/panels/no-such-panel")
    assert "'no-such-panel'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("value", "echoed"),
    [
        ("hepatic-function-panel", True),
        ("F33.2", True),
        ("6130", True),
        ("3f2b1c9e-8d7a-4b6c-9e5f-1a2b3c4d5e6f", True),
        ("ssri_snri", True),
        ("Ana Silva", False),
        ("Silva", False),
        ("ZZCANARYFAMILY", False),
        ("24356-8", True),
        ("a/b", False),
        ("-leading-dash", False),
        ("x" * 65, False),
        ("ketamine\n", False),
    ],
)
def test_shown(value: str, echoed: bool) -> None:
    assert (shown(value) == f"'{value}'") is echoed
