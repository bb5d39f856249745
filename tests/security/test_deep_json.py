"""Deeply nested JSON is a 400 on every face (OperationOutcome on CDS Hooks), never a 500.

The depth limit lives in the app's request class (service/api/request.py), so one check covers
REST, lab events, CDS Hooks and the UI; these tests send the same hostile bodies to each.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from service.api.request import MAX_JSON_DEPTH, json_too_deep
from service.labs.webhooks import new_secret, sign_event
from tests.cds.support import SERVICE_FOR, hook_request, register_ehr
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import new_key, tenant
from tests.ui.helpers import hidden_fields

SECRET = new_secret()
DEPTHS = (1_000, 5_000)


def _nested(depth: int, field: str = "therapy") -> bytes:
    return b'{"' + field.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


def _assert_problem_400(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 400
    assert f"more than {MAX_JSON_DEPTH} levels" in body["detail"]


@pytest.fixture
async def app(database_url: str):
    settings = make_settings(
        database_url, lab_base_url="http://lab.invalid/fhir", lab_webhook_secret=SECRET
    )
    async with running_app(settings, run_worker=False) as (client, container):
        yield client, container


@pytest.mark.parametrize("depth", DEPTHS)
async def test_rest_routes_answer_400_problem_json(app, depth: int) -> None:
    client, container = app
    key = await tenant(container, role="admin")
    headers = {"X-API-Key": key, "content-type": "application/json"}
    for path in ("/v1/recommendations", "/v1/orders", "/v1/admin/api-keys"):
        response = await client.post(path, content=_nested(depth), headers={**headers, **new_key()})
        _assert_problem_400(response)


@pytest.mark.parametrize("depth", DEPTHS)
async def test_lab_events_answer_400_problem_json_signed_or_not(app, depth: int) -> None:
    client, _ = app
    body = _nested(depth, "order_id")
    signed = sign_event(SECRET, f"msg_{uuid.uuid4().hex}", dt.datetime.now(dt.UTC), body)
    for headers in (signed, {}):
        response = await client.post(
            "/v1/lab-events",
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
        _assert_problem_400(response)


@pytest.mark.parametrize("depth", DEPTHS)
async def test_cds_hooks_answer_400_operation_outcome(app, depth: int) -> None:
    client, container = app
    ehr = await register_ehr(container)
    service = SERVICE_FOR["order-select"]
    for path in (f"/cds-services/{service}", f"/cds-services/{service}/feedback"):
        response = await client.post(
            path,
            content=_nested(depth, "context"),
            headers={**ehr.headers(path), "content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "structure"
    # Deep nesting inside an otherwise valid call (the prefetch is free-form JSON) too.
    call = hook_request("order-select")
    call["prefetch"] = {"patient": "PLACEHOLDER"}
    raw = json.dumps(call).replace('"PLACEHOLDER"', "[" * depth + "]" * depth).encode()
    path = f"/cds-services/{service}"
    response = await client.post(
        path, content=raw, headers={**ehr.headers(path), "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("depth", DEPTHS)
async def test_ui_posts_answer_400_and_never_500(app, depth: int) -> None:
    client, _ = app
    login = await client.get("/ui/login")
    token = hidden_fields(login.text)["login_csrf"][0]
    as_form = await client.post(
        "/ui/login",
        content=_nested(depth, "email"),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert as_form.status_code == 400
    assert as_form.headers["content-type"].startswith("text/html")
    as_json = await client.post(
        "/ui/login",
        content=_nested(depth, "email"),
        headers={"content-type": "application/json", "cookie": f"labrec_login_csrf={token}"},
    )
    assert 400 <= as_json.status_code < 500


async def test_bodies_at_the_limit_are_read_normally(app) -> None:
    """64 levels pass the depth check and meet ordinary validation (422 names the field)."""
    client, container = app
    key = await tenant(container)
    inner = MAX_JSON_DEPTH - 1  # the outer object is one level
    response = await client.post(
        "/v1/recommendations",
        content=_nested(inner),
        headers={"X-API-Key": key, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "therapy"


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[" * 65 + b"]" * 65, True),
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 5000, True),  # unclosed: a decoder would recurse before seeing the end
        (b'{"a": "' + b"[" * 500 + b'"}', False),  # brackets inside a string do not nest
        (b'{"a": "\\"' + b"[" * 500 + b'"}', False),  # nor after an escaped quote
        (b"[" + b"[], " * 500 + b"[]]", False),  # many siblings, shallow
        (b"email=" + b"%5B" * 5000, False),  # not JSON
    ],
)
def test_the_depth_check(body: bytes, too_deep: bool) -> None:
    assert json_too_deep(body) is too_deep
