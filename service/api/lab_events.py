"""POST /v1/lab-events: the lab's signed status webhooks (Standard Webhooks), no API key."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.exceptions import ClientException, NotAuthorizedException

from service.api.deps import container_of
from service.api.problems import problem_responses
from service.labs.webhooks import (
    InvalidEventPayload,
    InvalidSignature,
    InvalidWebhookId,
    verify_event,
)
from service.usecases.errors import InvalidInput
from service.usecases.lab_events import EventOutcome, apply_lab_status


class LabEventAck(msgspec.Struct, frozen=True):
    outcome: EventOutcome


class LabEventController(Controller):
    path = "/v1/lab-events"
    tags = ["lab events"]

    @post(
        summary="Receive a lab status event",
        description="Signed per Standard Webhooks (webhook-id, webhook-timestamp, "
        "webhook-signature). A replayed webhook-id is acknowledged and ignored.",
        status_code=200,
        responses=problem_responses(400, 401, 413, 422),
        security=[],
    )
    async def receive(self, request: Request[Any, Any, Any]) -> LabEventAck:
        container = container_of(request)
        body = await request.body()
        try:
            event = verify_event(container.webhook_secret, dict(request.headers), body)
        except InvalidWebhookId as exc:
            raise ClientException(f"{exc}; labrec stores it to ignore redeliveries.") from None
        except InvalidSignature:
            raise NotAuthorizedException(
                "Webhook signature is missing, invalid or stale."
            ) from None
        except InvalidEventPayload:
            raise InvalidInput(
                "The signed event is not a labrec lab event (type order.status with order_id, "
                "lab_order_id, status and occurred_at)."
            ) from None
        outcome = await apply_lab_status(
            container.sessions,
            container.clock,
            event_id=request.headers["webhook-id"],
            order_id=event.order_id,
            lab_order_id=event.lab_order_id,
            status=event.status,
            occurred_at=event.occurred_at,
            message=event.message,
        )
        return LabEventAck(outcome=outcome)
