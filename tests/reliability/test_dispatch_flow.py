"""The dispatcher's flow control with lab gateways faked at the gateway edge, on real databases:
fencing of outcomes that arrive after the lease was taken over, abandoning a call that would
outlive its lease, the circuit breaker, and a failing lab backed off while another keeps flowing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import msgspec
from sqlalchemy import select

from service.container import Container, build_container
from service.domain.principal import Principal
from service.labs.outcomes import Accepted, CancelOutcome, Retryable, SubmitOutcome
from service.labs.requisition import LabRequisition
from service.labs.webhooks import new_secret
from service.persistence import outbox
from service.persistence.models import OrderAttempt, OutboxMessage
from service.persistence.organisations import create_organisation
from service.usecases.dispatch import Dispatcher, RetryPolicy
from service.usecases.dto import OrderRequest
from service.usecases.lab_flow import CircuitBreaker, LabConnection, LabRoutes
from tests.conftest import make_settings
from tests.support.builders import order_body


class FakeClock:
    """Wall clock and monotonic clock that move together, by hand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.offset


class FakeLab:
    """A lab gateway: ``answer`` decides each call; every call is counted per order."""

    def __init__(self, answer: Callable[[str], SubmitOutcome]) -> None:
        self.answer = answer
        self.calls: list[str] = []

    async def submit(self, requisition: LabRequisition) -> SubmitOutcome:
        self.calls.append(requisition.order_id)
        return self.answer(requisition.order_id)

    async def cancel(self, order_id: str) -> CancelOutcome:  # pragma: no cover - not used here
        raise AssertionError("no cancels in these tests")


def _accept(order_id: str) -> SubmitOutcome:
    return Accepted(lab_order_id=f"ACC-{order_id[:8]}")


def _fail(_: str) -> SubmitOutcome:
    return Retryable(reason="lab answered HTTP 503")


def _container(database_url: str, **overrides: object) -> Container:
    settings = make_settings(
        database_url,
        lab_base_url="http://lab.test/fhir",
        lab_webhook_secret=new_secret(),
        **overrides,
    )
    return build_container(settings)


async def _orders(container: Container, name: str, count: int) -> tuple[str, list[str]]:
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, name, dt.datetime.now(dt.UTC))
    principal = Principal(organisation_id=org.id, actor="t", role="integration")
    request = msgspec.convert(order_body(), OrderRequest)
    ids = []
    for i in range(count):
        placed = await container.orders.place(principal, f"{name}-{i}", request)
        ids.append(placed.body["id"])
    return org.id, ids


async def _statuses(container: Container, ids: list[str]) -> dict[str, str]:
    from service.persistence.models import Order

    async with container.sessions() as session:
        rows = await session.execute(select(Order.id, Order.status).where(Order.id.in_(ids)))
        return dict(rows.all())


async def _attempts(container: Container, ids: list[str]) -> list[tuple[str, str]]:
    async with container.sessions() as session:
        rows = await session.execute(
            select(OrderAttempt.order_id, OrderAttempt.outcome).where(
                OrderAttempt.order_id.in_(ids)
            )
        )
        return [tuple(row) for row in rows.all()]


async def _messages(container: Container, ids: list[str]) -> list[OutboxMessage]:
    async with container.sessions() as session:
        rows = await session.execute(select(OutboxMessage).where(OutboxMessage.order_id.in_(ids)))
        return list(rows.scalars())


def _dispatcher(
    container: Container,
    routes: LabRoutes,
    clock: Callable[[], dt.datetime] | None = None,
    *,
    lease: float = 60.0,
    max_attempts: int = 15,
) -> Dispatcher:
    return Dispatcher(
        container.sessions,
        routes,
        RetryPolicy(base=0.001, cap=0.001, max_attempts=max_attempts),
        clock or container.clock,
        lease=dt.timedelta(seconds=lease),
        capacity=16,
    )


def _single(gateway: FakeLab, breaker: CircuitBreaker | None = None) -> LabRoutes:
    return LabRoutes(
        [
            LabConnection(
                "http://lab.test/fhir",
                gateway,
                max_in_flight=8,
                breaker=breaker or CircuitBreaker(100, 60.0),
            )
        ]
    )


async def test_an_outcome_after_the_lease_was_taken_over_is_not_recorded(
    database_url: str,
) -> None:
    container = _container(database_url)
    try:
        _, ids = await _orders(container, "fenced", 1)
        taken_over: list[str] = []

        class TakeoverLab(FakeLab):
            async def submit(self, requisition: LabRequisition) -> SubmitOutcome:
                # While this call is in flight its lease runs out and another worker claims it.
                async with container.sessions() as session, session.begin():
                    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
                    claimed = await outbox.claim_due(
                        session, now=later, lease=dt.timedelta(seconds=60), limit=10
                    )
                taken_over.extend(m.claimed_by or "" for m in claimed)
                return await super().submit(requisition)

        lab = TakeoverLab(_accept)
        assert await _dispatcher(container, _single(lab)).run_once() == 1
        messages = await _messages(container, ids)
        statuses = await _statuses(container, ids)
        attempts = await _attempts(container, ids)
    finally:
        await container.aclose()
    assert lab.calls == ids and len(taken_over) == 1
    assert attempts == [], "the late outcome was fenced off: no attempt recorded"
    assert statuses == {ids[0]: "queued"}
    assert [(m.status, m.claimed_by, m.attempts) for m in messages] == [
        ("in_flight", taken_over[0], 0)
    ]


async def test_a_call_that_would_outlive_its_lease_is_abandoned_then_resent(
    database_url: str,
) -> None:
    container = _container(database_url)
    try:
        _, ids = await _orders(container, "lease", 1)
        release = asyncio.Event()

        class StallingLab(FakeLab):
            async def submit(self, requisition: LabRequisition) -> SubmitOutcome:
                self.calls.append(requisition.order_id)
                await release.wait()  # never set: the lab never answers
                raise AssertionError("unreachable")

        stalling = StallingLab(_accept)
        # Lease 1.5 s: the call is abandoned shortly before the lease ends, nothing is recorded.
        await _dispatcher(container, _single(stalling), lease=1.5).run_once()
        abandoned = await _messages(container, ids)
        attempts_after_abandon = await _attempts(container, ids)
        await asyncio.sleep(1.2)  # let the lease run out
        healthy = FakeLab(_accept)
        await _dispatcher(container, _single(healthy)).run_once()
        statuses = await _statuses(container, ids)
        attempts = await _attempts(container, ids)
    finally:
        await container.aclose()
    assert stalling.calls == ids and healthy.calls == ids
    assert attempts_after_abandon == []
    assert [(m.status, m.attempts) for m in abandoned] == [("in_flight", 0)]
    assert statuses == {ids[0]: "submitted"}
    assert attempts == [(ids[0], "accepted")]


def test_breaker_opens_after_consecutive_failures_and_probes_once_when_half_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=10.0, clock=clock.monotonic)

    for _ in range(2):
        assert breaker.try_start()
        breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.available() is None
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.try_start()
    assert breaker.retry_in() == 10.0

    clock.offset = 10.0
    assert breaker.state == "half_open" and breaker.available() == 1
    assert breaker.try_start(), "one probe may go"
    assert not breaker.try_start(), "only one"
    breaker.record_failure()
    assert breaker.state == "open" and breaker.retry_in() == 10.0, "a failed probe reopens"

    clock.offset = 20.0
    assert breaker.try_start()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.try_start() and breaker.try_start()
    assert breaker.opened_count == 2


async def test_a_failing_lab_is_backed_off_while_another_lab_keeps_flowing(
    database_url: str,
) -> None:
    container = _container(database_url)
    clock = FakeClock()
    try:
        org_a, ids_a = await _orders(container, "org-a", 8)
        _, ids_b = await _orders(container, "org-b", 8)
        lab_a, lab_b = FakeLab(_fail), FakeLab(_accept)
        breaker_a = CircuitBreaker(3, 60.0, clock=clock.monotonic)
        routes = LabRoutes(
            [
                LabConnection("http://a.test/fhir", lab_a, max_in_flight=1, breaker=breaker_a),
                LabConnection(
                    "http://b.test/fhir",
                    lab_b,
                    max_in_flight=4,
                    breaker=CircuitBreaker(3, 60.0, clock=clock.monotonic),
                ),
            ],
            route=lambda m: (
                "http://a.test/fhir" if m.organisation_id == org_a else "http://b.test/fhir"
            ),
        )
        # A retry budget of 2: waiting behind an open breaker must not spend it.
        dispatcher = _dispatcher(container, routes, clock.now, max_attempts=2)
        for _ in range(40):
            await dispatcher.run_once()
            await asyncio.sleep(0.002)  # backoff of the retried messages (1 ms)
        while_open = await _statuses(container, ids_a + ids_b)
        calls_while_open = len(lab_a.calls)
        assert breaker_a.state == "open"

        lab_a.answer = _accept  # the lab comes back; after the cooldown one probe finds out
        clock.offset = 61.0
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline:
            await dispatcher.run_once()
            after = await _statuses(container, ids_a + ids_b)
            if set(after.values()) == {"submitted"}:
                break
            await asyncio.sleep(0.05)
        attempts = await _attempts(container, ids_a)
    finally:
        await container.aclose()
    assert calls_while_open == 3, "the breaker opened after 3 consecutive failures"
    assert [while_open[i] for i in ids_b] == ["submitted"] * 8, "lab B kept flowing"
    assert [while_open[i] for i in ids_a] == ["queued"] * 8, "lab A's orders waited, none failed"
    assert set(after.values()) == {"submitted"}
    assert sorted(lab_b.calls) == sorted(ids_b)
    assert sorted(lab_a.calls[3:]) == sorted(ids_a), "after the probe, each A order went once"
    assert sorted(o for _, o in attempts) == ["accepted"] * 8 + ["retrying"] * 3
