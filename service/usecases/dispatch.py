"""The outbox dispatcher: hands queued orders (and cancels) to the lab, retrying with backoff.

Claims happen in one short transaction (as slots free up), the HTTP call outside any
transaction, and the outcome is recorded in a second one. The lab receives the order id as
``Idempotency-Key`` on every attempt, so a resend after a crash or a lost response never makes a
second order at the lab.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable
from typing import Final

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
from service.usecases.lab_flow import LabConnection, LabGateway, LabRoutes

log = logging.getLogger("labrec.dispatch")

_MAX_DETAIL: Final = 500
#: Seconds before a lease ends at which a still-running lab call is abandoned.
_LEASE_MARGIN: Final = 1.0
#: How long a claim waits for more slots to free up, so claims come in small batches.
_COALESCE: Final = 0.01
#: Seconds running deliveries get to finish once the dispatcher is asked to stop.
_STOP_GRACE: Final = 5.0
#: Most outcomes recorded in one transaction.
_MAX_GROUP: Final = 64


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
    """A continuous pipeline: up to ``capacity`` deliveries in flight, new messages claimed as
    slots free up (never waiting for a batch's slowest call), each lab connection under its own
    limit and breaker (``service.usecases.lab_flow``).

    Leases: a message is claimed for ``lease``; its delivery is abandoned (cancelled, nothing
    recorded) if it would outlive the lease, and an outcome arriving after another worker took the
    message over is refused by the fencing token (``outbox.settle``). Either way the lab sees the
    same ``Idempotency-Key`` on the resend and keeps one order.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        labs: LabRoutes,
        policy: RetryPolicy,
        clock: Clock,
        *,
        lease: dt.timedelta,
        capacity: int = 64,
        record_concurrency: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._labs = labs
        self._policy = policy
        self._clock = clock
        self._lease = lease
        # Time kept at the lease's end to record the outcome (a tenth of short test leases).
        self._lease_margin = min(_LEASE_MARGIN, lease.total_seconds() / 10)
        self._capacity = capacity
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        #: Wait (briefly) for this many free slots before claiming again.
        self._min_claim = max(1, capacity // 16)
        self._outcomes: list[
            tuple[OutboxMessage, SubmitOutcome | CancelOutcome, asyncio.Future[None]]
        ] = []
        self._recorders: set[asyncio.Task[None]] = set()
        self._record_concurrency = record_concurrency

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run_once(self) -> int:
        """Claim what may go now, deliver it and wait for those deliveries; returns how many were
        claimed. For tests and one-shot use; ``run_forever`` never waits for a whole batch.
        """
        started, _ = await self._fill()
        await asyncio.gather(*started, return_exceptions=True)
        return len(started)

    async def run_forever(self, stop: asyncio.Event, poll_interval: float) -> None:
        """Keep the pipeline full until ``stop`` is set; then give running deliveries a grace
        period and abandon the rest (their leases expire and they are sent again, same key).
        """
        try:
            while not stop.is_set():
                try:
                    started, budget = await self._fill()
                except Exception as exc:  # keep dispatching whatever one claim did
                    log.error("dispatch claim failed: %s", type(exc).__name__)
                    started, budget = [], 1
                await self._wait_for_work(stop, poll_interval, drained=len(started) < budget)
        finally:
            await self._drain(_STOP_GRACE)

    def _budget(self) -> int:
        return min(self._capacity - len(self._tasks), self._labs.claimable())

    async def _wait_for_work(
        self, stop: asyncio.Event, poll_interval: float, drained: bool
    ) -> None:
        """Return when claiming is worth it again.

        After a claim that found less than it could take, the queue is empty: poll. Otherwise wait
        for a few free slots (a short moment, so claims come in small batches, not one by one),
        for a lab's breaker to let a probe through, or for ``stop``.
        """
        if drained:
            await _wait_any(stop, None, poll_interval)
            return
        loop = asyncio.get_running_loop()
        since = loop.time()
        while not stop.is_set():
            free = self._budget()
            waited = loop.time() - since
            if free >= self._min_claim or (free > 0 and (not self._tasks or waited >= _COALESCE)):
                return
            # Otherwise the pipeline or the labs are full, or every lab is backed off.
            wait = _COALESCE - waited if free > 0 else self._labs.retry_in() or poll_interval
            self._slot_freed.clear()
            await _wait_any(stop, self._slot_freed if self._tasks else None, wait)

    async def _drain(self, grace: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _fill(self) -> tuple[list[asyncio.Task[None]], int]:
        """Claim up to the free budget and start a delivery for each message claimed; returns the
        deliveries started and the budget they were claimed under.
        """
        budget = self._budget()
        if budget <= 0:
            return [], 0
        async with self._sessions() as session, session.begin():
            claimed = await outbox.claim_due(
                session, now=self._clock(), lease=self._lease, limit=budget
            )
            orders = await repo.orders_for_lab(session, [m.order_id for m in claimed])
        deadline = asyncio.get_running_loop().time() + self._lease.total_seconds()
        started = []
        for message in claimed:
            connection = self._labs.for_message(message)
            connection.in_flight += 1
            task = asyncio.create_task(
                self._deliver(connection, message, orders.get(message.order_id), deadline)
            )
            self._tasks.add(task)
            task.add_done_callback(self._finished(connection))
            started.append(task)
        return started, budget

    def _finished(self, connection: LabConnection) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            connection.in_flight -= 1
            self._tasks.discard(task)
            self._slot_freed.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("delivery failed: %s", type(task.exception()).__name__)

        return done

    async def _deliver(
        self,
        connection: LabConnection,
        message: OutboxMessage,
        order: Order | None,
        deadline: float,
    ) -> None:
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
        async with connection.slots:
            breaker = connection.breaker
            if not breaker.try_start():
                await self._postpone(message, breaker.retry_in())
                return
            loop = asyncio.get_running_loop()
            try:
                # Abandon a call that would outlive the lease: its outcome could not be recorded.
                async with asyncio.timeout_at(deadline - self._lease_margin):
                    outcome = await self._call(connection.gateway, message, order)
            except TimeoutError:
                breaker.record_failure()
                log.warning(
                    "delivery abandoned at its lease end after %.1f s",
                    loop.time() - (deadline - self._lease.total_seconds()),
                )
                return
            except BaseException:
                breaker.record_failure()  # a gateway must not raise; treat it as a lab failure
                raise
            if isinstance(outcome, Retryable):
                breaker.record_failure()
            else:
                breaker.record_success()
        await self._record(message, outcome)

    @staticmethod
    async def _call(
        gateway: LabGateway, message: OutboxMessage, order: Order
    ) -> SubmitOutcome | CancelOutcome:
        if message.kind == "submit":
            return await gateway.submit(requisition_for(order))
        return await gateway.cancel(order.id)

    async def _postpone(self, message: OutboxMessage, seconds: float) -> None:
        """Put a message back untried while its lab is backed off: no attempt is spent."""
        async with self._sessions() as session, session.begin():
            await outbox.settle(
                session,
                message,
                status="pending",
                attempts=message.attempts,
                next_attempt_at=self._clock() + dt.timedelta(seconds=max(seconds, 0.05)),
                last_error=message.last_error,
            )

    async def _record(self, message: OutboxMessage, outcome: SubmitOutcome | CancelOutcome) -> None:
        """Record the outcome; outcomes that arrive together share one transaction (group commit).

        At most ``record_concurrency`` groups are written at a time (one on SQLite, a few on
        PostgreSQL so that round trips overlap); what arrives meanwhile forms the next group.
        Orders are locked in id order, so two groups cannot deadlock. If a group fails, each of
        its outcomes is recorded in a transaction of its own.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append((message, outcome, future))
        if len(self._recorders) < self._record_concurrency:
            recorder = asyncio.create_task(self._record_groups())
            self._recorders.add(recorder)
            recorder.add_done_callback(self._recorders.discard)
        await future

    async def _record_groups(self) -> None:
        while self._outcomes:
            group = self._outcomes[:_MAX_GROUP]
            del self._outcomes[:_MAX_GROUP]
            group.sort(key=lambda item: item[0].order_id)
            try:
                async with self._sessions() as session, session.begin():
                    for message, outcome, _ in group:
                        await self._record_in(session, message, outcome)
            except Exception:
                for message, outcome, future in group:
                    try:
                        async with self._sessions() as session, session.begin():
                            await self._record_in(session, message, outcome)
                    except Exception as exc:
                        _resolve(future, exc)
                    else:
                        _resolve(future, None)
            else:
                for _, _, future in group:
                    _resolve(future, None)

    async def _record_in(
        self, session: AsyncSession, message: OutboxMessage, outcome: SubmitOutcome | CancelOutcome
    ) -> None:
        """Record one outcome, unless another claim holds the message now.

        The order row is locked first (as every writer of orders does), then the outbox row is
        settled under the fencing token; only then are the attempt and the order written.
        """
        now = self._clock()
        attempts = message.attempts + 1
        kind = message.kind
        order_id = message.order_id
        status = await repo.lock_status_for_lab(session, order_id)
        assert status is not None  # noqa: S101 - checked in _deliver, rows are never deleted
        match outcome:
            case Accepted(lab_order_id=lab_order_id):
                if not await outbox.settle(session, message, status="sent", attempts=attempts):
                    return
                await repo.insert_attempt(session, order_id, now, kind, "accepted", None)
                if kind == "submit":
                    target = states.after_dispatch_accepted(status)
                    changes: dict[str, object] = {"lab_order_id": lab_order_id}
                    if target is not None:
                        changes |= {"status": target, "updated_at": now}
                    await repo.update_for_lab(session, order_id, **changes)
                    if (target or status) == "cancelled":
                        outbox.add_message(
                            session,
                            organisation_id=message.organisation_id,
                            order_id=order_id,
                            kind="cancel",
                            now=now,
                        )
            case Cancelled():
                if await outbox.settle(session, message, status="sent", attempts=attempts):
                    await repo.insert_attempt(session, order_id, now, "cancel", "accepted", None)
            case Retryable(reason=reason, retry_after=retry_after):
                detail = _clip(reason)
                if attempts >= self._policy.max_attempts:
                    if not await outbox.settle(
                        session, message, status="dead", attempts=attempts, last_error=detail
                    ):
                        return
                    await repo.insert_attempt(session, order_id, now, kind, "gave_up", detail)
                    if kind == "submit":
                        await self._finish(
                            session,
                            order_id,
                            states.after_dispatch_final_failure(status, "failed"),
                            now,
                            f"Lab unreachable after {attempts} attempts ({detail}); "
                            "re-queue with `labrec orders requeue`.",
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
                await repo.insert_attempt(session, order_id, now, kind, "retrying", detail)
            case Rejected(status=http_status, message=lab_message):
                detail = _clip(f"lab answered {http_status}: {lab_message}")
                if not await outbox.settle(
                    session, message, status="dead", attempts=attempts, last_error=detail
                ):
                    return
                await repo.insert_attempt(session, order_id, now, kind, "rejected", detail)
                if kind == "submit":
                    await self._finish(
                        session,
                        order_id,
                        states.after_dispatch_final_failure(status, "rejected"),
                        now,
                        detail,
                    )

    @staticmethod
    async def _finish(
        session: AsyncSession, order_id: str, target: str | None, now: dt.datetime, detail: str
    ) -> None:
        """A final failure: the detail is kept whatever the status; the status moves if allowed."""
        changes: dict[str, object] = {"status_detail": detail}
        if target is not None:
            changes |= {"status": target, "updated_at": now}
        await repo.update_for_lab(session, order_id, **changes)


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    """Wake a delivery waiting for its outcome to be recorded (unless it was cancelled)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


async def _wait_any(stop: asyncio.Event, other: asyncio.Event | None, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if other is not None:
        waiters.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
