"""The sandbox lab itself, free of any web framework: orders, dedup, progression, faults.

State is in memory and guarded by one asyncio lock. An order is created at most once per
requisition (``accepted_count`` proves it); a repeat, by the same ``Idempotency-Key`` or the same
requisition under another key, gets the first answer byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Final, Literal

import httpx
import msgspec

from service.labs.fhir_bundle import FHIR_JSON, ORDER_SYSTEM, FhirJson
from service.labs.sandbox_config import FaultSettings, SandboxConfig
from service.labs.sandbox_faults import FaultInjector, FaultPlan
from service.labs.sandbox_fhir import (
    ACCESSION_SYSTEM,
    accession_for,
    local_id,
    operation_outcome,
    outcome,
    searchset,
    task,
    transaction_response,
)
from service.labs.sandbox_validate import BundleInvalid, validate_transaction
from service.labs.sandbox_webhooks import Delivery, WebhookSender
from service.labs.status import TERMINAL, LabEventStatus, LabOrderStatus
from service.labs.webhooks import LabEvent

RequestKind = Literal["submit", "cancel", "read"]

#: Accepts the draft's quoted sf-string form and a bare token.
_KEY: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
_NEXT: Final[dict[LabOrderStatus, LabEventStatus]] = {
    "submitted": "received",
    "received": "in_progress",
    "in_progress": "resulted",
}
_RANK: Final[dict[LabOrderStatus, int]] = {
    "submitted": 0,
    "received": 1,
    "in_progress": 2,
    "resulted": 3,
    "rejected": 3,
    "cancelled": 3,
}


class Reply(msgspec.Struct, frozen=True):
    """An HTTP answer; ``lost`` asks the adapter to break the connection mid-body instead."""

    status: int
    body: bytes
    headers: dict[str, str] = {}
    content_type: str = FHIR_JSON
    lost: bool = False


class OrderView(msgspec.Struct, frozen=True):
    order_id: str
    lab_order_id: str
    status: LabOrderStatus
    accepted_count: int
    submissions: int
    updated_at: datetime
    message: str | None = None


class Stats(msgspec.Struct, frozen=True):
    submissions_received: int
    orders: int
    accepted_total: int
    replays: int
    invalid: int
    cancels: int
    status_reads: int
    injected_errors: int
    injected_timeouts: int
    injected_drops: int
    webhooks_delivered: int
    webhooks_failed: int
    webhooks_pending: int


class TransitionError(ValueError):
    """A manual step that the order's current status does not allow."""


class _Order(msgspec.Struct):
    order_id: str
    lab_order_id: str
    patient_id: str
    request_ids: tuple[str, ...]
    reply: bytes
    created_at: datetime
    updated_at: datetime
    changed_at: float
    status: LabOrderStatus = "submitted"
    accepted_count: int = 0
    submissions: int = 0
    message: str | None = None


class _Counters(msgspec.Struct):
    submissions_received: int = 0
    replays: int = 0
    invalid: int = 0
    cancels: int = 0
    status_reads: int = 0
    injected_errors: int = 0
    injected_timeouts: int = 0
    injected_drops: int = 0


class SandboxLab:
    def __init__(
        self, config: SandboxConfig, *, webhook_transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.faults = FaultInjector(config.faults)
        self._lock = asyncio.Lock()
        self._orders: dict[str, _Order] = {}
        self._keys: dict[tuple[RequestKind, str], tuple[str, str]] = {}
        self._counters = _Counters()
        self._stopping = asyncio.Event()
        self._progress: asyncio.Task[None] | None = None
        self._sender = (
            WebhookSender(
                config.webhook_url,
                config.webhook_secret or "",
                attempts=config.webhook_attempts,
                backoff=config.webhook_backoff,
                timeout=config.webhook_timeout,
                transport=webhook_transport,
            )
            if config.webhook_url
            else None
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        if self._sender is not None:
            self._sender.start()
        if self.config.step_delay > 0 and self._progress is None:
            self._progress = asyncio.create_task(self._progress_loop(), name="sandbox-progress")

    async def stop(self) -> None:
        """Ends stalled (timeout-fault) requests, the progression task and webhook delivery."""
        self._stopping.set()
        if self._progress is not None:
            self._progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._progress
            self._progress = None
        if self._sender is not None:
            await self._sender.stop()

    # -- FHIR operations ---------------------------------------------------------------------

    async def handle(
        self,
        kind: RequestKind,
        operation: Callable[[], Awaitable[Reply]],
        disconnected: Callable[[], Awaitable[object]],
    ) -> Reply:
        """Run one FHIR request through the fault plan: latency, 503 instead of processing,
        processing then stalling past the client's timeout, or processing then losing the answer.
        """
        async with self._lock:
            plan = self.faults.draw()
            if kind == "submit":
                self._counters.submissions_received += 1
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.error:
            self._counters.injected_errors += 1
            return _unavailable(plan)
        reply = await operation()
        if plan.hang:
            self._counters.injected_timeouts += 1
            await self._stall(disconnected)
        if plan.drop:
            self._counters.injected_drops += 1
            return msgspec.structs.replace(reply, lost=True)
        return reply

    async def submit(self, body: bytes, idempotency_key: str | None) -> Reply:
        key = _parse_key(idempotency_key)
        if key is None:
            return _bad_request("a valid Idempotency-Key header is required")
        fingerprint = hashlib.sha256(body).hexdigest()
        async with self._lock:
            seen = self._keys.get(("submit", key))
            if seen is not None:
                if seen[0] != fingerprint:
                    return _key_reused()
                return self._replay(self._orders[seen[1]])
            try:
                tx = validate_transaction(body)
            except BundleInvalid as exc:
                self._counters.invalid += 1
                return _fhir(400, operation_outcome(exc.issues))
            existing = self._orders.get(tx.requisition)
            if existing is not None:
                self._keys["submit", key] = (fingerprint, existing.order_id)
                return self._replay(existing)
            accession = accession_for(tx.requisition)
            patient_id = local_id("Patient", tx.patient_key)
            bundle, request_ids = transaction_response(tx, accession, patient_id)
            now = datetime.now(UTC)
            order = _Order(
                order_id=tx.requisition,
                lab_order_id=accession,
                patient_id=patient_id,
                request_ids=request_ids,
                reply=msgspec.json.encode(bundle),
                created_at=now,
                updated_at=now,
                changed_at=time.monotonic(),
                accepted_count=1,
                submissions=1,
            )
            self._orders[order.order_id] = order
            self._keys["submit", key] = (fingerprint, order.order_id)
            return Reply(status=200, body=order.reply)

    async def cancel(self, body: bytes, idempotency_key: str | None) -> Reply:
        key = _parse_key(idempotency_key)
        if key is None:
            return _bad_request("a valid Idempotency-Key header is required")
        order_id = _requisition_parameter(body)
        if order_id is None:
            return _bad_request(
                f"body must be Parameters with a 'requisition' identifier ({ORDER_SYSTEM})"
            )
        fingerprint = hashlib.sha256(body).hexdigest()
        async with self._lock:
            seen = self._keys.get(("cancel", key))
            if seen is not None and seen[0] != fingerprint:
                return _key_reused()
            order = self._orders.get(order_id)
            if order is None:
                return _fhir(404, outcome("not-found", "no order with this requisition"))
            if order.status in ("resulted", "rejected"):
                return _fhir(
                    422, outcome("business-rule", f"order is {order.status}; cannot cancel")
                )
            if order.status != "cancelled":
                self._counters.cancels += 1
                self._transition(order, "cancelled", "cancelled at the placer's request")
            self._keys["cancel", key] = (fingerprint, order.order_id)
            return _fhir(200, self._task(order))

    async def search_tasks(self, identifier: str | None) -> Reply:
        if not identifier:
            return _bad_request("the 'identifier' search parameter is required")
        system, separator, value = identifier.partition("|")
        if not separator:
            system, value = "", identifier
        async with self._lock:
            self._counters.status_reads += 1
            found = [
                self._task(order)
                for order in self._orders.values()
                if (system in ("", ORDER_SYSTEM) and order.order_id == value)
                or (system in ("", ACCESSION_SYSTEM) and order.lab_order_id == value)
            ]
        return _fhir(200, searchset(found))

    # -- sandbox controls --------------------------------------------------------------------

    async def advance(
        self, order_id: str, to: LabOrderStatus | None = None, message: str | None = None
    ) -> OrderView:
        """Step an order by hand (tests, demos). Raises KeyError or TransitionError."""
        async with self._lock:
            order = self._orders[order_id]
            if order.status in TERMINAL:
                raise TransitionError(f"order is already {order.status}")
            target = to or _NEXT[order.status]
            if target == "submitted" or _RANK[target] <= _RANK[order.status]:
                raise TransitionError(f"cannot go from {order.status} to {target}")
            self._transition(order, target, message)
            return _view(order)

    async def set_faults(self, settings: FaultSettings) -> None:
        async with self._lock:
            self.faults.reset(settings)

    async def orders(self) -> list[OrderView]:
        async with self._lock:
            return [_view(order) for order in self._orders.values()]

    async def stats(self) -> Stats:
        deliveries = self.deliveries()
        async with self._lock:
            c = self._counters
            return Stats(
                submissions_received=c.submissions_received,
                orders=len(self._orders),
                accepted_total=sum(o.accepted_count for o in self._orders.values()),
                replays=c.replays,
                invalid=c.invalid,
                cancels=c.cancels,
                status_reads=c.status_reads,
                injected_errors=c.injected_errors,
                injected_timeouts=c.injected_timeouts,
                injected_drops=c.injected_drops,
                webhooks_delivered=sum(d.delivered for d in deliveries),
                webhooks_failed=sum(d.done and not d.delivered for d in deliveries),
                webhooks_pending=sum(not d.done for d in deliveries),
            )

    def deliveries(self) -> list[Delivery]:
        return list(self._sender.deliveries) if self._sender is not None else []

    # -- internals ---------------------------------------------------------------------------

    def _replay(self, order: _Order) -> Reply:
        order.submissions += 1
        self._counters.replays += 1
        return Reply(status=200, body=order.reply, headers={"Idempotent-Replayed": "true"})

    def _transition(self, order: _Order, status: LabEventStatus, message: str | None) -> None:
        order.status = status
        order.message = message
        order.updated_at = datetime.now(UTC)
        order.changed_at = time.monotonic()
        if self._sender is not None:
            self._sender.enqueue(
                LabEvent(
                    type="order.status",
                    order_id=order.order_id,
                    lab_order_id=order.lab_order_id,
                    status=status,
                    occurred_at=order.updated_at,
                    message=message,
                )
            )

    def _task(self, order: _Order) -> FhirJson:
        return task(
            order_id=order.order_id,
            accession=order.lab_order_id,
            status=order.status,
            patient_id=order.patient_id,
            request_ids=order.request_ids,
            authored=order.created_at,
            modified=order.updated_at,
            message=order.message,
        )

    async def _progress_loop(self) -> None:
        delay = self.config.step_delay
        tick = min(max(delay / 4, 0.01), 0.25)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            async with self._lock:
                for order in self._orders.values():
                    step = _NEXT.get(order.status)
                    if step is not None and now - order.changed_at >= delay:
                        self._transition(order, step, None)

    async def _stall(self, disconnected: Callable[[], Awaitable[object]]) -> None:
        """Hold the answer back until the client gives up, the lab stops, or hang_seconds pass."""
        waiters = [
            asyncio.ensure_future(disconnected()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(
                waiters, timeout=self.config.hang_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


def _parse_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value if _KEY.match(value) else None


def _requisition_parameter(body: bytes) -> str | None:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Parameters":
        return None
    for parameter in doc.get("parameter") or []:
        if isinstance(parameter, dict) and parameter.get("name") == "requisition":
            identifier = parameter.get("valueIdentifier")
            if (
                isinstance(identifier, dict)
                and identifier.get("system") == ORDER_SYSTEM
                and isinstance(identifier.get("value"), str)
                and identifier["value"]
            ):
                return str(identifier["value"])
    return None


def _view(order: _Order) -> OrderView:
    return OrderView(
        order_id=order.order_id,
        lab_order_id=order.lab_order_id,
        status=order.status,
        accepted_count=order.accepted_count,
        submissions=order.submissions,
        updated_at=order.updated_at,
        message=order.message,
    )


def _fhir(status: int, document: FhirJson, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body=msgspec.json.encode(document), headers=headers or {})


def _bad_request(message: str) -> Reply:
    return _fhir(400, outcome("invalid", message))


def _key_reused() -> Reply:
    return _fhir(422, outcome("conflict", "Idempotency-Key reused with a different body"))


def _unavailable(plan: FaultPlan) -> Reply:
    headers: dict[str, str] = {}
    if plan.retry_after == "seconds":
        headers["Retry-After"] = "1"
    elif plan.retry_after == "http-date":
        headers["Retry-After"] = format_datetime(
            datetime.now(UTC) + timedelta(seconds=2), usegmt=True
        )
    return _fhir(503, outcome("transient", "sandbox lab: injected unavailability"), headers)
