"""The ordering flow over HTTP: the same use cases as REST, tenancy, idempotent placing."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import select

from service.persistence.models import AuditRecord
from tests.ui.helpers import (
    csrf_of,
    hidden_fields,
    make_user,
    order_form,
    recommendation_form,
    sign_in,
)

CHECKED = re.compile(r'name="panel" value="([^"]+)" checked')


async def _signed_in(ui: tuple[Any, Any], org: str | None = None) -> tuple[Any, Any, str]:
    client, container = ui
    client.cookies.clear()
    _, email = await make_user(container, org=org)
    await sign_in(client, email)
    page = await client.get("/ui/recommendations/new")
    return client, container, csrf_of(page.text)


async def _recommendation(client: Any, csrf: str, **overrides: Any) -> str:
    response = await client.post("/ui/recommendations", data=recommendation_form(csrf, **overrides))
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


async def _review(client: Any, csrf: str, location: str, **overrides: Any) -> dict[str, Any]:
    page = await client.get(location)
    panels = CHECKED.findall(page.text)
    review = await client.post(f"{location}/review", data=order_form(csrf, panels, **overrides))
    assert review.status_code == 200, review.text
    return hidden_fields(review.text, f"{location}/order")


async def _place(ui: tuple[Any, Any]) -> tuple[Any, str, str]:
    client, _, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)
    placed = await client.post(f"{location}/order", data=await _review(client, csrf, location))
    assert placed.status_code == 303, placed.text
    return client, csrf, placed.headers["location"].split("?")[0]


async def test_ketamine_recommendation_page_shows_tiers_evidence_and_omissions(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    location = await _recommendation(
        client, csrf, recent_panel=["urinalysis", "", ""], recent_date=["2026-11-01", "", ""]
    )
    page = await client.get(location)
    assert page.status_code == 200
    text = page.text
    assert "Safety monitoring" in text and "Complementary" in text
    assert 'class="badge badge-recommended"' in text and "Recommended</span>" in text
    assert re.search(r'href="https://(doi\.org|pubmed\.ncbi\.nlm\.nih\.gov)/', text)
    assert "Left out, and why" in text
    assert "Advisories" in text
    assert "Jo Lee" in text and "1234567893" in text  # practitioner prefilled from the account
    assert len(CHECKED.findall(text)) >= 1


async def test_form_errors_sit_next_to_their_fields_in_plain_words(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    response = await client.post(
        "/ui/recommendations",
        data=recommendation_form(csrf, sex="", age="231", condition=["depression?", "", ""]),
    )
    assert response.status_code == 422
    assert 'id="sex-error"' in response.text and "Choose the patient&#39;s sex" in response.text
    assert 'id="age-error"' in response.text and "whole years" in response.text
    assert 'id="condition-0-error"' in response.text
    assert 'value="231"' in response.text  # what was typed is kept


async def test_route_must_fit_the_therapy_also_on_the_server(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    response = await client.post(
        "/ui/recommendations", data=recommendation_form(csrf, therapy="esketamine", route="iv")
    )
    assert response.status_code == 422
    assert 'id="route-error"' in response.text
    assert "allowed: intranasal" in response.text


async def test_review_lists_panels_specimens_turnaround_and_price(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)
    page = await client.get(location)
    panels = CHECKED.findall(page.text)
    review = await client.post(f"{location}/review", data=order_form(csrf, panels))
    assert "Review the order" in review.text
    assert "Specimen types" in review.text and "Price total" in review.text
    assert review.text.count("<tr>") == len(panels) + 1
    assert re.fullmatch(r"ui-[0-9a-f]{48}", hidden_fields(review.text)["idempotency_key"][0])


async def test_order_form_errors_are_shown_on_the_suggestions_page(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)
    response = await client.post(
        f"{location}/review",
        data=order_form(csrf, [], npi="12345", birth_date="2999-01-01", given_name=""),
    )
    assert response.status_code == 422
    for field in ("panels", "npi", "birth_date", "given_name"):
        assert f'id="{field}-error"' in response.text


async def test_same_hidden_key_places_one_order_even_when_sent_at_once(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)
    form = await _review(client, csrf, location)
    first = await client.post(f"{location}/order", data=form)
    again = await client.post(f"{location}/order", data=form)  # refresh / double submit
    burst = await asyncio.gather(*(client.post(f"{location}/order", data=form) for _ in range(3)))
    locations = {r.headers["location"] for r in (first, again, *burst)}
    assert [r.status_code for r in (first, again, *burst)] == [303] * 5
    assert len(locations) == 1
    listing = await client.get("/ui/orders")
    assert listing.text.count('href="/ui/orders/') == 1
    # Rendering the review again for the same order gives the same key: still one order.
    assert (await _review(client, csrf, location))["idempotency_key"] == form["idempotency_key"]


async def test_another_organisation_sees_404_for_recommendations(ui) -> None:
    client, _, csrf = await _signed_in(ui)
    location = await _recommendation(client, csrf)
    other, _, other_csrf = await _signed_in(ui)
    page = await other.get(location)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    review = await other.post(f"{location}/review", data=order_form(other_csrf, ["urinalysis"]))
    assert review.status_code == 404


async def test_another_organisation_sees_404_for_orders_and_cannot_cancel(ui) -> None:
    _, _, order_path = await _place(ui)
    other, _, other_csrf = await _signed_in(ui)
    for path in (order_path, f"{order_path}/status"):
        assert (await other.get(path)).status_code == 404
    cancel = await other.post(f"{order_path}/cancel", data={"_csrf": other_csrf})
    assert cancel.status_code == 404
    assert 'href="/ui/orders/' not in (await other.get("/ui/orders")).text


async def test_order_page_status_fragment_and_cancel(ui) -> None:
    client, csrf, order_path = await _place(ui)
    page = await client.get(order_path + "?placed=1")
    assert "Order placed" in page.text
    assert f'data-poll="{order_path}/status"' in page.text
    fragment = await client.get(f"{order_path}/status")
    assert 'data-status="queued"' in fragment.text and "<html" not in fragment.text
    cancelled = await client.post(f"{order_path}/cancel", data={"_csrf": csrf})
    assert cancelled.status_code == 303
    page = await client.get(cancelled.headers["location"])
    assert 'data-status="cancelled"' in page.text and "data-poll" not in page.text
    again = await client.post(f"{order_path}/cancel", data={"_csrf": csrf})
    assert again.status_code == 409
    assert "can no longer be cancelled" in again.text


async def test_orders_list_filters_by_status(ui) -> None:
    client, _, order_path = await _place(ui)
    queued = await client.get("/ui/orders?status=queued")
    assert order_path in queued.text
    resulted = await client.get("/ui/orders?status=resulted")
    assert order_path not in resulted.text and "No orders" in resulted.text


async def test_catalog_search_filter_and_panel_detail(ui) -> None:
    client, _, _ = await _signed_in(ui)
    found = await client.get("/ui/catalog?q=hepatic")
    assert 'href="/ui/catalog/hepatic-function-panel"' in found.text
    safety = await client.get("/ui/catalog?tier=safety")
    assert "gi-map" not in safety.text
    panel = await client.get("/ui/catalog/hepatic-function-panel")
    assert panel.status_code == 200
    assert "Analytes" in panel.text and "Order codes" in panel.text
    assert (await client.get("/ui/catalog/no-such-panel")).status_code == 404


async def test_ui_errors_are_html_and_ui_is_not_in_openapi(ui) -> None:
    client, _, _ = await _signed_in(ui)
    for path in ("/ui/orders/not-an-id", "/ui/nowhere", "/ui/recommendations/zzz"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
    schema = (await client.get("/schema/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/ui") or p == "/"]
    root = await client.get("/")
    assert root.status_code == 303 and root.headers["location"] == "/ui/"


async def _order_audit(container: Any, action: str, **where: Any) -> list[Any]:
    async with container.sessions() as session:
        query = select(AuditRecord).where(AuditRecord.action == action)
        for column, value in where.items():
            query = query.where(getattr(AuditRecord, column) == value)
        return list((await session.execute(query)).scalars())


async def test_the_page_view_is_audited_and_its_polls_are_not(ui) -> None:
    """The order page polls its status every 2 s: one order.read per view, none per poll."""
    client, _, order_path = await _place(ui)
    container = ui[1]
    order_id = order_path.rsplit("/", 1)[1]
    page = await client.get(order_path)
    assert page.status_code == 200 and "Silva" in page.text
    reads = await _order_audit(container, "order.read", object_id=order_id)
    assert [(r.outcome, r.patient_reference) for r in reads] == [("success", "ehr-patient-12345")]
    for _ in range(5):
        poll = await client.get(f"{order_path}/status")
        assert poll.status_code == 200 and 'data-status="queued"' in poll.text
        assert "Silva" not in poll.text and "Ana" not in poll.text and "1990" not in poll.text
        assert "ehr-patient-12345" not in poll.text, "a status poll carries no patient data"
    assert len(await _order_audit(container, "order.read", object_id=order_id)) == 1
    assert await _order_audit(container, "order.status") == []
    await client.get(order_path)  # the next page view is audited again
    assert len(await _order_audit(container, "order.read", object_id=order_id)) == 2


async def test_status_polls_stay_access_controlled_and_refusals_are_audited(ui) -> None:
    _, _, order_path = await _place(ui)
    container = ui[1]
    order_id = order_path.rsplit("/", 1)[1]
    other, _, _ = await _signed_in(ui)
    assert (await other.get(f"{order_path}/status")).status_code == 404
    refused = await _order_audit(container, "order.status", object_id=order_id)
    assert [r.outcome for r in refused] == ["not_found"]
    assert refused[0].patient_reference is None
    owner_org = (await _order_audit(container, "order.create", object_id=order_id))[0]
    assert refused[0].organisation_id != owner_org.organisation_id
    other.cookies.clear()
    signed_out = await other.get(f"{order_path}/status")
    assert signed_out.status_code in (302, 303, 401)
    assert "data-status" not in signed_out.text
