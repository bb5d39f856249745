"""Order intake, reads, cancel and re-queue. The outbox row commits with the order."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any, Final

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain import orders as states
from service.domain.catalog import Catalog, Panel
from service.domain.principal import Principal
from service.domain.vocabulary import ICD10CM
from service.persistence import idempotency, outbox
from service.persistence import orders as repo
from service.persistence.audit import audit_values, record_audit, record_not_found
from service.persistence.group_insert import GroupInserter, Staging
from service.persistence.models import AuditRecord, Order, OutboxMessage
from service.usecases.clock import Clock
from service.usecases.dto import (
    AttemptOut,
    CodingOut,
    OrderOut,
    OrderPage,
    OrderPanelOut,
    OrderRequest,
    OrderStatusOut,
    OrderSummaryOut,
    PatientIn,
    PractitionerIn,
)
from service.usecases.errors import (
    Conflict,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    field_error,
    shown,
)

_SCOPE: Final = "POST /v1/orders"
_ENCODER: Final = msgspec.json.Encoder(order="deterministic")


class PlaceResult(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]
    replayed: bool


class OrderService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        clock: Clock,
        idempotency_ttl: dt.timedelta,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._clock = clock
        self._ttl = idempotency_ttl
        self._writes = GroupInserter(sessions)  # concurrent orders share one commit
        self._reservations = idempotency.Reservations(sessions)  # ... and one key-claiming one

    async def place(self, principal: Principal, key: str, request: OrderRequest) -> PlaceResult:
        """Idempotent intake: same key and body replays; same key, other body is refused."""
        self._validate(request)
        fingerprint = hashlib.sha256(_ENCODER.encode(request)).hexdigest()
        org = principal.organisation_id
        reservation = await self._reservations.reserve(
            organisation_id=org,
            scope=_SCOPE,
            key=key,
            fingerprint=fingerprint,
            now=self._clock(),
            ttl=self._ttl,
        )
        match reservation:
            case idempotency.Replay(status=status, body=body):
                return PlaceResult(status=status, body=body, replayed=True)
            case idempotency.Mismatch():
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body. "
                    "Use a new key for a new order."
                )
            case idempotency.InProgress():
                raise IdempotencyInProgress(
                    "A request with this Idempotency-Key is still being processed; retry shortly."
                )
        try:
            body = await self._create(principal, key, request)
        except BaseException:
            await idempotency.release(self._sessions, organisation_id=org, scope=_SCOPE, key=key)
            raise
        return PlaceResult(status=201, body=body, replayed=False)

    def _validate(self, request: OrderRequest) -> None:
        errors = []
        unknown = [p for p in request.panel_ids if p not in self._catalog.panels]
        if unknown:
            named = ", ".join(shown(p) for p in unknown)
            errors.append(
                field_error("panel_ids", f"unknown panel(s): {named}; see GET /v1/catalog/panels")
            )
        if len(set(request.panel_ids)) != len(request.panel_ids):
            errors.append(field_error("panel_ids", "lists a panel more than once"))
        for i, coding in enumerate(request.conditions):
            if coding.system != ICD10CM:
                errors.append(field_error(f"conditions[{i}].system", f"must be {ICD10CM}"))
        if request.patient.birth_date > self._clock().date():
            errors.append(field_error("patient.birth_date", "is in the future"))
        if errors:
            raise InvalidInput("The order has values labrec cannot use.", errors=errors)

    async def _create(
        self, principal: Principal, key: str, request: OrderRequest
    ) -> dict[str, Any]:
        """Order, outbox row, audit row and the key's final response: one atomic commit.

        They are staged as plain values and committed by group commit (persistence/
        group_insert.py): concurrent orders share a transaction, each order all-or-nothing.
        """
        now = self._clock()
        org = principal.organisation_id
        if request.recommendation_id is not None:
            async with self._sessions() as session:  # recommendations are never changed or deleted
                cited = await repo.get_recommendation(session, org, request.recommendation_id)
            if cited is None:
                raise InvalidInput(
                    "The order cites a recommendation labrec does not know.",
                    errors=[field_error("recommendation_id", "no such recommendation")],
                )
        panels = [self._catalog.panels[p] for p in request.panel_ids]
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "organisation_id": org,
            "status": "queued",
            "patient_reference": request.patient.reference,
            "patient": msgspec.to_builtins(request.patient),
            "practitioner": msgspec.to_builtins(request.practitioner),
            "panels": [
                {
                    "id": p.id,
                    "name": p.name,
                    "codes": msgspec.to_builtins(p.codes),
                    "specimen": p.specimen.type,
                }
                for p in panels
            ],
            "conditions": [{"system": c.system, "code": c.code} for c in request.conditions],
            "recommendation_id": request.recommendation_id,
            "notes": request.notes,
            "catalog_version": self._catalog.version,
            "lab_order_id": None,
            "status_detail": None,
            "created_at": now,
            "updated_at": now,
        }
        body: dict[str, Any] = msgspec.to_builtins(new_order_out(values, request, panels))
        staged = Staging()
        staged.insert(Order, values)
        staged.insert(
            OutboxMessage,
            outbox.message_values(
                organisation_id=org, order_id=values["id"], kind="submit", now=now
            ),
        )
        staged.insert(
            AuditRecord,
            audit_values(
                principal=principal,
                action="order.create",
                object_type="order",
                object_id=values["id"],
                patient_reference=request.patient.reference,
                outcome="success",
                now=now,
            ),
        )
        staged.execute(
            idempotency.COMPLETE,
            idempotency.complete_params(
                organisation_id=org, scope=_SCOPE, key=key, status=201, body=body
            ),
        )
        await self._writes.commit(staged)
        return body

    async def get(self, principal: Principal, order_id: str) -> OrderOut:
        async with self._sessions() as session, session.begin():
            order = await self._owned(session, principal, order_id, "order.read")
            attempts = await repo.attempts_of(session, order.id)
            return order_out(order, attempts)

    async def status(self, principal: Principal, order_id: str) -> OrderStatusOut:
        """Status, lab id and attempts of the caller's own order, for a page that polls it.

        Carries no patient data, so a successful read is not an audit event (the page view that
        shows the patient is: ``get``); asking for an order that is not the caller's still is.
        """
        async with self._sessions() as session:
            order = await repo.get_order(session, principal.organisation_id, order_id)
            attempts = await repo.attempts_of(session, order.id) if order is not None else []
        if order is None:
            await record_not_found(
                self._sessions,
                principal=principal,
                action="order.status",
                object_type="order",
                object_id=order_id,
                now=self._clock(),
            )
            raise NotFound(f"No order {shown(order_id)} in your organisation.")
        return OrderStatusOut(
            id=order.id,
            status=order.status,
            updated_at=order.updated_at,
            lab_order_id=order.lab_order_id,
            status_detail=order.status_detail,
            attempts=[
                AttemptOut(at=a.at, kind=a.kind, outcome=a.outcome, detail=a.detail)
                for a in attempts
            ],
        )

    async def list(
        self,
        principal: Principal,
        *,
        limit: int,
        status: str | None,
        patient_reference: str | None,
        cursor: str | None,
    ) -> OrderPage:
        async with self._sessions() as session, session.begin():
            try:
                rows, next_cursor = await repo.list_orders(
                    session,
                    principal.organisation_id,
                    limit=limit,
                    status=status,
                    patient_reference=patient_reference,
                    cursor=cursor,
                )
            except repo.BadCursor:
                raise InvalidInput(
                    "The cursor is not one labrec issued.",
                    errors=[field_error("cursor", "use next_cursor from the previous page")],
                ) from None
            record_audit(
                session,
                principal=principal,
                action="order.list",
                object_type="order",
                object_id=None,
                patient_reference=",".join(sorted({r.patient_reference for r in rows}))[:128]
                or None,
                outcome="success",
                now=self._clock(),
            )
            return OrderPage(items=[order_summary(r) for r in rows], next_cursor=next_cursor)

    async def cancel(self, principal: Principal, order_id: str) -> OrderOut:
        async with self._sessions() as session, session.begin():
            order = await self._owned(session, principal, order_id, "order.cancel", lock=True)
            now = self._clock()
            try:
                order.status = states.cancel(order.status)
            except states.IllegalTransition as exc:
                raise Conflict(str(exc)) from None
            order.updated_at = now
            order.status_detail = "Cancelled by the practitioner."
            await _withdraw_or_notify_lab(session, order, now)
            repo.add_attempt(session, order.id, now, "cancel", "requested", None)
            attempts = await repo.attempts_of(session, order.id)
            return order_out(order, attempts)

    async def requeue(self, order_id: str, principal: Principal | None = None) -> OrderOut:
        """Send a failed order to the lab again: an operator (CLI, no principal) or an
        organisation admin (REST, only their own orders)."""
        async with self._sessions() as session, session.begin():
            if principal is None:
                order = await repo.get_order_for_lab(session, order_id, for_update=True)
            else:
                order = await repo.get_order(
                    session, principal.organisation_id, order_id, for_update=True
                )
            if order is not None:
                return await self._requeue(session, order, principal)
        # Refused (unknown, or another organisation's): audited like every other refusal.
        await record_not_found(
            self._sessions,
            principal=principal,
            actor="operator",
            action="order.requeue",
            object_type="order",
            object_id=order_id,
            now=self._clock(),
        )
        raise NotFound(f"No order {shown(order_id)} in your organisation.")

    async def _requeue(
        self, session: AsyncSession, order: Order, principal: Principal | None
    ) -> OrderOut:
        """Move an order found above back to ``queued`` with a new outbox row, audited."""
        now = self._clock()
        try:
            order.status = states.requeue(order.status)
        except states.IllegalTransition as exc:
            raise Conflict(str(exc)) from None
        order.updated_at = now
        order.status_detail = "Re-queued by an operator."
        outbox.add_message(
            session,
            organisation_id=order.organisation_id,
            order_id=order.id,
            kind="submit",
            now=now,
        )
        record_audit(
            session,
            principal=principal,
            actor="operator",
            organisation_id=order.organisation_id,
            action="order.requeue",
            object_type="order",
            object_id=order.id,
            patient_reference=order.patient_reference,
            outcome="success",
            now=now,
        )
        repo.add_attempt(session, order.id, now, "requeue", "queued", None)
        return order_out(order, await repo.attempts_of(session, order.id))

    async def _owned(
        self,
        session: AsyncSession,
        principal: Principal,
        order_id: str,
        action: str,
        *,
        lock: bool = False,
    ) -> Order:
        """The caller's own order, or NotFound (another organisation's order is not revealed)."""
        order = await repo.get_order(session, principal.organisation_id, order_id, for_update=lock)
        if order is None:
            await record_not_found(
                self._sessions,
                principal=principal,
                action=action,
                object_type="order",
                object_id=order_id,
                now=self._clock(),
            )
            raise NotFound(f"No order {shown(order_id)} in your organisation.")
        record_audit(
            session,
            principal=principal,
            action=action,
            object_type="order",
            object_id=order.id,
            patient_reference=order.patient_reference,
            outcome="success",
            now=self._clock(),
        )
        return order


async def _withdraw_or_notify_lab(session: AsyncSession, order: Order, now: dt.datetime) -> None:
    """A submission not yet sent is withdrawn; one already with the lab gets a cancel message.

    One in flight right now is left alone: the dispatcher sees the cancelled order when it
    records the lab's answer and sends the cancel then.
    """
    messages = await outbox.messages_for(session, order.id)
    submit_sent = False
    for message in messages:
        if message.kind != "submit":
            continue
        if message.status == "pending":
            message.status = "withdrawn"
        elif message.status == "sent":
            submit_sent = True
    if submit_sent:
        outbox.add_message(
            session,
            organisation_id=order.organisation_id,
            order_id=order.id,
            kind="cancel",
            now=now,
        )


def order_out(order: Order, attempts: list[Any]) -> OrderOut:
    return OrderOut(
        id=order.id,
        status=order.status,
        created_at=order.created_at,
        updated_at=order.updated_at,
        patient=msgspec.convert(order.patient, PatientIn),
        practitioner=msgspec.convert(order.practitioner, PractitionerIn),
        panels=[msgspec.convert(p, OrderPanelOut) for p in order.panels],
        conditions=[CodingOut(system=c["system"], code=c["code"]) for c in order.conditions],
        catalog_version=order.catalog_version,
        recommendation_id=order.recommendation_id,
        notes=order.notes,
        lab_order_id=order.lab_order_id,
        status_detail=order.status_detail,
        attempts=[
            AttemptOut(at=a.at, kind=a.kind, outcome=a.outcome, detail=a.detail) for a in attempts
        ],
    )


def new_order_out(values: dict[str, Any], request: OrderRequest, panels: list[Panel]) -> OrderOut:
    """``order_out`` of an order just created from ``request`` (its row ``values``), built from
    the request's own structs instead of a round trip through ORM row and JSON dicts."""
    return OrderOut(
        id=values["id"],
        status=values["status"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        patient=request.patient,
        practitioner=request.practitioner,
        panels=[
            OrderPanelOut(
                id=p.id,
                name=p.name,
                codes=[CodingOut(system=c.system, code=c.code, display=c.display) for c in p.codes],
                specimen=p.specimen.type,
            )
            for p in panels
        ],
        conditions=[CodingOut(system=c.system, code=c.code) for c in request.conditions],
        catalog_version=values["catalog_version"],
        recommendation_id=values["recommendation_id"],
        notes=values["notes"],
        lab_order_id=values["lab_order_id"],
        status_detail=values["status_detail"],
        attempts=[],
    )


def order_summary(order: Order) -> OrderSummaryOut:
    return OrderSummaryOut(
        id=order.id,
        status=order.status,
        created_at=order.created_at,
        updated_at=order.updated_at,
        patient_reference=order.patient_reference,
        panel_ids=[p["id"] for p in order.panels],
        lab_order_id=order.lab_order_id,
    )
