"""The outbox dispatcher: hands queued orders (and cancels) to the lab, retrying with backoff.

Claims happen in one short transaction, the HTTP call outside any transaction, and the outcome is
recorded in a second one. The lab receives the order id as ``Idempotency-Key`` on every attempt,
so a resend after a crash or a lost response never makes a second order at the lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from typing import Final, Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain import orders as states
from service.labs.outcomes import (
    Accepted,
    Cancelled,
    CancelOutcome,
    Rejected,
    Retryable,
    SubmitOutcome,
)
from service.labs.requisition import (
    Coding,
    ConditionCoding,
    LabRequisition,
    RequisitionPanel,
    RequisitionPatient,
    RequisitionPractitioner,
)
from service.persistence import orders as repo
from service.persistence import outbox
from service.persistence.models import Order, OutboxMessage
from service.usecases.clock import Clock

log = logging.getLogger("labrec.dispatch")

_MAX_DETAIL: Final = 500


class LabGateway(Protocol):
    async def submit(self, requisition: LabRequisition) -> SubmitOutcome: ...

    async def cancel(self, order_id: str) -> CancelOutcome: ...


class RetryPolicy(msgspec.Struct, frozen=True):
    base: float
    cap: float
    max_attempts: int

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Exponential backoff with equal jitter; a lab's Retry-After is a floor."""
        ceiling = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay


def requisition_for(order: Order) -> LabRequisition:
    patient = order.patient
    return LabRequisition(
        order_id=order.id,
        organisation_id=order.organisation_id,
        created_at=order.created_at,
        patient=msgspec.convert(patient, RequisitionPatient),
        practitioner=msgspec.convert(order.practitioner, RequisitionPractitioner),
        panels=tuple(
            RequisitionPanel(
                panel_id=p["id"],
                name=p["name"],
                codes=tuple(msgspec.convert(c, Coding) for c in p["codes"]),
            )
            for p in order.panels
        ),
        conditions=tuple(msgspec.convert(c, ConditionCoding) for c in order.conditions),
        notes=order.notes,
    )


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        lab: LabGateway,
        policy: RetryPolicy,
        clock: Clock,
        *,
        lease: dt.timedelta,
        batch_size: int = 20,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._lab = lab
        self._policy = policy
        self._clock = clock
        self._lease = lease
        self._batch = batch_size
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    async def run_once(self) -> int:
        """Claim due messages and deliver them concurrently; returns how many were claimed."""
        async with self._sessions() as session, session.begin():
            claimed = await outbox.claim_due(
                session, now=self._clock(), lease=self._lease, limit=self._batch
            )
        if claimed:
            await asyncio.gather(*(self._deliver(message) for message in claimed))
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, poll_interval: float) -> None:
        """Loop until ``stop`` is set; errors are logged (without patient data) and retried."""
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception as exc:  # keep dispatching whatever one batch did
                log.error("dispatch batch failed: %s", type(exc).__name__)
                claimed = 0
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=poll_interval)

    async def _deliver(self, message: OutboxMessage) -> None:
        async with self._sessions() as session:
            order = await repo.get_order_for_lab(session, message.order_id)
        if order is None:  # cannot happen with the foreign key; never crash the loop over it
            async with self._sessions() as session, session.begin():
                await outbox.settle(
                    session,
                    message,
                    status="dead",
                    attempts=message.attempts,
                    last_error="order missing",
                )
            return
        outcome: SubmitOutcome | CancelOutcome
        if message.kind == "submit":
            outcome = await self._lab.submit(requisition_for(order))
        else:
            outcome = await self._lab.cancel(order.id)
        await self._record(message, outcome)

    async def _record(self, message: OutboxMessage, outcome: SubmitOutcome | CancelOutcome) -> None:
        now = self._clock()
        attempts = message.attempts + 1
        async with self._sessions() as session, session.begin():
            order = await repo.get_order_for_lab(session, message.order_id, for_update=True)
            assert order is not None  # noqa: S101 - checked in _deliver, rows are never deleted
            match outcome:
                case Accepted(lab_order_id=lab_order_id):
                    if not await outbox.settle(session, message, status="sent", attempts=attempts):
                        return
                    repo.add_attempt(session, order.id, now, message.kind, "accepted", None)
                    if message.kind == "submit":
                        order.lab_order_id = lab_order_id
                        self._advance(order, states.after_dispatch_accepted(order.status), now)
                        if order.status == "cancelled":
                            outbox.add_message(
                                session,
                                organisation_id=order.organisation_id,
                                order_id=order.id,
                                kind="cancel",
                                now=now,
                            )
                case Cancelled():
                    if await outbox.settle(session, message, status="sent", attempts=attempts):
                        repo.add_attempt(session, order.id, now, "cancel", "accepted", None)
                case Retryable(reason=reason, retry_after=retry_after):
                    detail = _clip(reason)
                    if attempts >= self._policy.max_attempts:
                        if not await outbox.settle(
                            session, message, status="dead", attempts=attempts, last_error=detail
                        ):
                            return
                        repo.add_attempt(session, order.id, now, message.kind, "gave_up", detail)
                        if message.kind == "submit":
                            order.status_detail = (
                                f"Lab unreachable after {attempts} attempts ({detail}); "
                                "re-queue with `labrec orders requeue`."
                            )
                            self._advance(
                                order,
                                states.after_dispatch_final_failure(order.status, "failed"),
                                now,
                            )
                        return
                    delay = self._policy.delay(attempts, retry_after, self._rng)
                    if not await outbox.settle(
                        session,
                        message,
                        status="pending",
                        attempts=attempts,
                        next_attempt_at=now + dt.timedelta(seconds=delay),
                        last_error=detail,
                    ):
                        return
                    repo.add_attempt(session, order.id, now, message.kind, "retrying", detail)
                case Rejected(status=status, message=lab_message):
                    detail = _clip(f"lab answered {status}: {lab_message}")
                    if not await outbox.settle(
                        session, message, status="dead", attempts=attempts, last_error=detail
                    ):
                        return
                    repo.add_attempt(session, order.id, now, message.kind, "rejected", detail)
                    if message.kind == "submit":
                        order.status_detail = detail
                        self._advance(
                            order,
                            states.after_dispatch_final_failure(order.status, "rejected"),
                            now,
                        )

    @staticmethod
    def _advance(order: Order, target: str | None, now: dt.datetime) -> None:
        if target is not None:
            order.status = target
            order.updated_at = now


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
