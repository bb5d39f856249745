"""Control characters (NUL, other C0/C1, bidi controls) never get past the edge types.

Each hostile string is sent over HTTP to the real app on SQLite and PostgreSQL (which refuses NUL
with an error, once a 500): every face answers 400/422 and nothing is stored or sent to the lab.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from service.labs.webhooks import LabEvent, encode_event, new_secret
from service.persistence.cds_models import CdsFeedback
from service.persistence.models import AuditRecord, Order
from service.persistence.models import LabEvent as LabEventRow
from tests.cds.support import SERVICE_FOR, hook_request, register_ehr
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import ketamine_context, new_key, order_body, tenant
from tests.ui.helpers import csrf_of, make_user, order_form, recommendation_form, sign_in

SECRET = new_secret()
#: NUL, escape, DEL, a C1 control (NEL), right-to-left override, first-strong isolate, and the
#: Unicode line separator, the right-to-left and Arabic letter marks, and a noncharacter.
HOSTILE = [
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u202e",
    "\u2066",
    "\u2028",
    "\u200f",
    "\u061c",
    "\uffff",
]
IDS = ["nul", "esc", "del", "c1-nel", "rlo", "fsi", "line-separator", "rlm", "alm", "nonchar"]
#: Invisible format characters (Unicode Cf) that names may need or tolerate but ids never hold:
#: zero-width space, BOM, word joiner, soft hyphen, ZWNJ, ZWJ, a tag character.
INVISIBLE = ["\u200b", "\ufeff", "\u2060", "\xad", "\u200c", "\u200d", "\U000e0041"]


@pytest.fixture
async def app(database_url: str):
    settings = make_settings(
        database_url, lab_base_url="http://lab.invalid/fhir", lab_webhook_secret=SECRET
    )
    async with running_app(settings, run_worker=False) as (client, container):
        yield client, container


async def _count(container: Any, model: Any) -> int:
    async with container.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def _order_variants(char: str) -> dict[str, dict[str, Any]]:
    patient = order_body()["patient"]
    return {
        "patient.reference": order_body(patient={**patient, "reference": f"ehr{char}1"}),
        "patient.given_name": order_body(patient={**patient, "given_name": f"An{char}a"}),
        "patient.family_name": order_body(patient={**patient, "family_name": f"Silva{char}"}),
        "practitioner.name": order_body(practitioner={"npi": "1234567893", "name": f"J{char}"}),
        "notes": order_body(notes=f"fasting{char} sample"),
        "recommendation_id": order_body(recommendation_id=f"r{char}"),
        "panel_ids": order_body(panel_ids=[f"urinalysis{char}"]),
        "conditions": order_body(
            conditions=[{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": f"F33{char}"}]
        ),
    }


@pytest.mark.parametrize("char", HOSTILE, ids=IDS)
async def test_orders_refuse_control_characters_in_every_free_string(app, char: str) -> None:
    client, container = app
    headers = {"X-API-Key": await tenant(container)}
    for field, body in _order_variants(char).items():
        response = await client.post("/v1/orders", json=body, headers={**headers, **new_key()})
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert char not in response.text and "\\u" not in response.text  # never echoed
    assert await _count(container, Order) == 0  # nothing stored, nothing for the lab


async def test_a_trailing_newline_is_a_control_character_too(app) -> None:
    client, container = app
    headers = {"X-API-Key": await tenant(container), **new_key()}
    patient = {**order_body()["patient"], "reference": "ehr-1\n"}
    response = await client.post("/v1/orders", json=order_body(patient=patient), headers=headers)
    assert response.status_code == 422
    npi = {"npi": "1234567893\n", "name": "Jo Lee"}
    response = await client.post(
        "/v1/orders", json=order_body(practitioner=npi), headers={**headers, **new_key()}
    )
    assert response.status_code == 422


@pytest.mark.parametrize("char", INVISIBLE)
async def test_ids_refuse_invisible_format_characters(app, char: str) -> None:
    """An id with an invisible character looks like another id but is a different one."""
    client, container = app
    headers = {"X-API-Key": await tenant(container)}
    patient = order_body()["patient"]
    for body in (
        order_body(patient={**patient, "reference": f"ehr{char}1"}),
        order_body(recommendation_id=f"r{char}"),
        order_body(panel_ids=[f"urinalysis{char}"]),
    ):
        response = await client.post("/v1/orders", json=body, headers={**headers, **new_key()})
        assert response.status_code == 422, response.text
    response = await client.get(
        "/v1/orders", params={"patient_reference": f"ehr{char}1"}, headers=headers
    )
    assert response.status_code == 400, response.text
    assert await _count(container, Order) == 0


async def test_names_keep_zero_width_joiners(app) -> None:
    """ZWNJ/ZWJ spell words in several scripts (Persian, Indic languages): names keep them."""
    client, container = app
    headers = {"X-API-Key": await tenant(container), **new_key()}
    patient = {**order_body()["patient"], "given_name": "می‌خواهم"}
    response = await client.post("/v1/orders", json=order_body(patient=patient), headers=headers)
    assert response.status_code == 201, response.text


async def test_notes_keep_line_breaks_and_tabs(app) -> None:
    client, container = app
    headers = {"X-API-Key": await tenant(container), **new_key()}
    notes = "fasting sample\r\nsecond line\twith a tab, and Zoë"
    response = await client.post("/v1/orders", json=order_body(notes=notes), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["notes"] == notes


@pytest.mark.parametrize("char", HOSTILE, ids=IDS)
async def test_recommendations_refuse_control_characters(app, char: str) -> None:
    client, container = app
    headers = {"X-API-Key": await tenant(container)}
    for body in (
        ketamine_context(therapy=f"ketamine{char}"),
        ketamine_context(preferences={"vendors": [f"Quest{char}"]}),
        ketamine_context(
            conditions=[{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": f"F3{char}"}]
        ),
    ):
        response = await client.post("/v1/recommendations", json=body, headers=headers)
        assert response.status_code == 422, response.text


@pytest.mark.parametrize("char", ["%00", "%1B", "%C2%85", "%E2%80%AE"], ids=IDS[:2] + IDS[3:5])
async def test_paths_and_query_strings_with_control_characters_are_400(app, char: str) -> None:
    client, container = app
    headers = {"X-API-Key": await tenant(container, role="admin")}
    for method, url in (
        ("GET", f"/v1/orders?patient_reference=ehr{char}"),
        ("GET", f"/v1/audit?patient_reference=ehr{char}&action=x"),
        ("GET", f"/v1/catalog/panels?q=x{char}"),
        ("GET", f"/v1/orders/a{char}b"),
        ("POST", f"/v1/orders/a{char}b/cancel"),
        ("POST", f"/v1/admin/api-keys/a{char}b/revoke"),
        ("GET", f"/v1/catalog/panels/a{char}b"),
    ):
        response = await client.request(method, url, headers=headers)
        assert response.status_code == 400, (url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "control characters" in response.json()["detail"]


async def test_lab_events_bound_the_webhook_id_and_refuse_control_characters(app) -> None:
    client, container = app
    headers = {"X-API-Key": await tenant(container)}
    order = await client.post("/v1/orders", json=order_body(), headers={**headers, **new_key()})
    order_id = order.json()["id"]

    def event(**overrides: Any) -> bytes:
        fields: dict[str, Any] = {
            "type": "order.status",
            "order_id": order_id,
            "lab_order_id": "ACC-1",
            "status": "rejected",
            "occurred_at": dt.datetime.now(dt.UTC),
        }
        fields.update(overrides)
        return encode_event(LabEvent(**fields))

    async def deliver(body: bytes, msg_id: str | None = None) -> Any:
        signed = _sign_raw(msg_id or f"msg_{uuid.uuid4().hex}", body)
        return await client.post(
            "/v1/lab-events", content=body, headers={**signed, "content-type": "application/json"}
        )

    too_long = await deliver(event(), "m" * 5000)
    assert too_long.status_code == 400, too_long.text
    assert "webhook-id" in too_long.json()["detail"]
    for body in (
        event(message="lab note\x00"),
        event(message="lab \u202enote"),
        event(lab_order_id="ACC\x00"),
        event(lab_order_id="A" * 129),  # longer than the column
        event(order_id=f"{order_id}\x00"),
    ):
        response = await deliver(body)
        assert response.status_code == 422, response.text
    assert await _count(container, LabEventRow) == 0
    fetched = await client.get(f"/v1/orders/{order_id}", headers=headers)
    assert fetched.json()["status"] == "queued"


def _sign_raw(msg_id: str, body: bytes) -> dict[str, str]:
    """A Standard Webhooks signature over any id (``sign_event`` refuses odd ones), as a
    misbehaving lab could send."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    stamp = str(int(dt.datetime.now(dt.UTC).timestamp()))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


async def test_ui_order_form_refuses_control_characters(database_url: str) -> None:
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        _, email = await make_user(container)
        await sign_in(client, email)
        csrf = csrf_of((await client.get("/ui/recommendations/new")).text)
        created = await client.post("/ui/recommendations", data=recommendation_form(csrf))
        location = created.headers["location"]
        for field in ("patient_reference", "given_name", "notes"):
            form = order_form(csrf, ["urinalysis"], **{field: "Ana\x00\u202e"})
            review = await client.post(f"{location}/review", data=form)
            assert review.status_code in (400, 422), review.text
        assert await _count(container, Order) == 0


async def test_cds_refuses_control_characters_in_stored_strings(app) -> None:
    client, container = app
    ehr = await register_ehr(container)
    service = SERVICE_FOR["order-select"]
    path = f"/cds-services/{service}"
    call = hook_request("order-select")
    call["hookInstance"] = "d1577c69\x00dfbe"
    response = await client.post(path, json=call, headers=ehr.headers(path))
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    feedback_path = f"{path}/feedback"
    for item in (
        {"card": "card\x00", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}]},
        {
            "card": "card-1",
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "c\u202e", "system": "http://x"}},
        },
    ):
        body = {"feedback": [{**item, "outcomeTimestamp": "2026-11-20T10:00:00Z"}]}
        response = await client.post(feedback_path, json=body, headers=ehr.headers(feedback_path))
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert await _count(container, CdsFeedback) == 0
    discovery = await client.get("/cds-services?x=%00", headers=ehr.headers("/cds-services"))
    assert discovery.status_code == 400
    assert discovery.json()["resourceType"] == "OperationOutcome"
    async with container.sessions() as session:
        rows = await session.execute(select(AuditRecord.object_id))
        assert all("\x00" not in (value or "") for value in rows.scalars())


@pytest.mark.parametrize("claim", ["iss", "jti"])
async def test_cds_tokens_with_control_characters_are_401(app, claim: str) -> None:
    """iss is looked up before the signature is checked, jti stored after: neither may hold NUL."""
    client, container = app
    ehr = await register_ehr(container)
    path = f"/cds-services/{SERVICE_FOR['order-select']}"
    headers = ehr.headers(path, **{claim: "a\x00b"})
    response = await client.post(path, json=hook_request(), headers=headers)
    assert response.status_code == 401, response.text


async def test_ui_sign_in_refuses_control_characters_in_the_email(database_url: str) -> None:
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        _, email = await make_user(container)
        response = await sign_in(client, f"{email}\x00")
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("text/html")
        assert (await sign_in(client, email)).status_code == 303
