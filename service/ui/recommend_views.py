"""New recommendation -> suggested panels -> order form -> review -> place (idempotent).

Every step calls the same use cases as REST: ``RecommendationService.recommend``/``get`` and
``OrderService.place``. The review page carries an Idempotency-Key; placing replays, never doubles.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from service.ui import forms, presenters
from service.ui.context import Ui
from service.usecases.dto import RecommendationOut, RecommendationRequest
from service.usecases.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidInput

#: A concurrent submit with the same key (double-click) waits for the first to finish.
_IN_PROGRESS_RETRIES: Final = 50
_IN_PROGRESS_WAIT: Final = 0.1


#: Fields folded under "More context": the fold opens when one of them is filled or wrong.
_MORE_CONTEXT: Final = ("therapy_started", "last_dose_change", "medications", "request_families")


def _new_form(
    ui: Ui, values: forms.Values, errors: forms.Errors, status_code: int = 200
) -> Template:
    catalog = ui.container.catalog
    more_open = any(values.get(name) for name in _MORE_CONTEXT) or any(
        key in _MORE_CONTEXT or key.startswith("medication-") for key in errors
    )
    return ui.page(
        "recommendation_new.html",
        status_code,
        therapies=list(catalog.therapies.values()),
        conditions=presenters.condition_options(catalog),
        panels=sorted(catalog.panels.values(), key=lambda p: p.name),
        medication_classes=list(catalog.medication_classes.values()),
        families=presenters.requestable_families(catalog),
        started_field=forms.medication_started_field,
        more_open=more_open,
        values=values,
        errors=errors,
    )


def _blank_values() -> forms.Values:
    return {
        "therapy": "ketamine",
        "route": "",
        "phase": "baseline",
        "conditions": [""] * forms.CONDITION_ROWS,
        "sex": "",
        "age": "",
        "pregnancy": "unknown",
        "pregnant": False,
        "setting": "",
        "therapy_started": "",
        "last_dose_change": "",
        "medications": [],
        "medication_started": {},
        "findings": [],
        "recent": [("", "", False)] * forms.RECENT_TEST_ROWS,
        "exclude_specimens": [],
        "evidence_only": False,
        "vendors": "",
        "request_families": [],
    }


@get("/recommendations/new", name="ui:recommendation-new")
async def new_recommendation(ui: Ui) -> Template:
    return _new_form(ui, _blank_values(), {})


@post("/recommendations", name="ui:recommendation-create")
async def create_recommendation(ui: Ui) -> Response[Any]:
    classes = list(ui.container.catalog.medication_classes)
    values = forms.recommendation_values(await ui.request.form(), classes)
    request, errors = forms.parse_recommendation(values, classes)
    if request is None:
        return _new_form(ui, values, errors, 422)
    try:
        out = await ui.container.recommendations.recommend(ui.principal, request)
    except InvalidInput as exc:
        rows = forms.recommendation_rows(values)
        return _new_form(ui, values, forms.map_usecase_errors(exc.errors, rows), 422)
    return Redirect(f"/ui/recommendations/{out.recommendation_id}", status_code=303)


def _order_defaults(ui: Ui, context: RecommendationRequest) -> forms.Values:
    return {
        "patient_reference": "",
        "given_name": "",
        "family_name": "",
        "birth_date": "",
        "patient_sex": context.patient.sex,
        "npi": ui.user.npi or "",
        "practitioner_name": ui.user.display_name or "",
        "notes": "",
        "panels": [],
    }


def _recommendation_page(
    ui: Ui,
    context: RecommendationRequest,
    out: RecommendationOut,
    values: forms.Values | None = None,
    errors: forms.Errors | None = None,
    status_code: int = 200,
) -> Template:
    if values is None:
        values = _order_defaults(ui, context)
        values["panels"] = presenters.prechecked(out)
    return ui.page(
        "recommendation.html",
        status_code,
        rec=out,
        context=context,
        context_more=presenters.context_more(ui.container.catalog, context),
        therapy=ui.container.catalog.therapies.get(out.therapy),
        tiers=presenters.by_tier(out),
        evidence_links=presenters.evidence_links,
        values=values,
        errors=errors or {},
    )


@get("/recommendations/{recommendation_id:str}", name="ui:recommendation")
async def show_recommendation(ui: Ui, recommendation_id: FromPath[str]) -> Template:
    context, out = await ui.container.recommendations.get(ui.principal, recommendation_id)
    return _recommendation_page(ui, context, out)


async def _order_from_form(
    ui: Ui, recommendation_id: str
) -> tuple[RecommendationRequest, RecommendationOut, forms.Values, Any, forms.Errors]:
    context, out = await ui.container.recommendations.get(ui.principal, recommendation_id)
    values = forms.order_values(await ui.request.form())
    order, errors = forms.parse_order(
        values,
        conditions=[{"system": c.system, "code": c.code} for c in context.conditions],
        recommendation_id=out.recommendation_id,
        today=ui.container.clock().date(),
    )
    return context, out, values, order, errors


@post("/recommendations/{recommendation_id:str}/review", name="ui:order-review")
async def review_order(ui: Ui, recommendation_id: FromPath[str]) -> Template:
    context, out, values, order, errors = await _order_from_form(ui, recommendation_id)
    if order is None:
        return _recommendation_page(ui, context, out, values, errors, 422)
    return ui.page(
        "review.html",
        rec=out,
        values=values,
        order=order,
        summary=presenters.review(ui.container.catalog, order.panel_ids),
        idempotency_key=presenters.order_key(ui.user.csrf_token, out.recommendation_id, order),
        fields=forms.ORDER_FIELDS,
    )


@post("/recommendations/{recommendation_id:str}/edit", name="ui:order-edit")
async def edit_order(ui: Ui, recommendation_id: FromPath[str]) -> Template:
    """Back from the review to the suggestions, with what was entered."""
    context, out = await ui.container.recommendations.get(ui.principal, recommendation_id)
    values = forms.order_values(await ui.request.form())
    return _recommendation_page(ui, context, out, values)


@post("/recommendations/{recommendation_id:str}/order", name="ui:order-place")
async def place_order(ui: Ui, recommendation_id: FromPath[str]) -> Response[Any]:
    context, out, values, order, errors = await _order_from_form(ui, recommendation_id)
    if order is None:
        return _recommendation_page(ui, context, out, values, errors, 422)
    key = forms.valid_idempotency_key((await ui.request.form()).get("idempotency_key"))
    if key is None:
        errors = {"form": "This order form is incomplete. Review the order again, then place it."}
        return _recommendation_page(ui, context, out, values, errors, 422)
    orders = ui.container.orders
    for _ in range(_IN_PROGRESS_RETRIES):
        try:
            result = await orders.place(ui.principal, key, order)
            break
        except IdempotencyInProgress:
            await asyncio.sleep(_IN_PROGRESS_WAIT)
        except IdempotencyKeyReused:
            errors = {"form": "This order form was already used for another order. Review again."}
            return _recommendation_page(ui, context, out, values, errors, 422)
        except InvalidInput as exc:
            errors = {"form": exc.detail, **forms.map_order_errors(exc.errors)}
            return _recommendation_page(ui, context, out, values, errors, 422)
    else:
        errors = {"form": "The order is still being placed. Open Orders in a moment to see it."}
        return _recommendation_page(ui, context, out, values, errors, 409)
    return Redirect(f"/ui/orders/{result.body['id']}?placed=1", status_code=303)
