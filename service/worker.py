"""Background work: the outbox dispatcher and the reconciliation poll.

Runs inside ``labrec serve`` by default, or alone as ``labrec worker`` (any number of them over one
PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from service.container import Container
from service.labs.outcomes import LabError
from service.persistence.idempotency import purge_expired
from service.usecases.dispatch import Dispatcher, RetryPolicy
from service.usecases.lab_events import apply_lab_status, overdue_orders
from service.usecases.lab_flow import CircuitBreaker, LabConnection, LabRoutes

log = logging.getLogger("labrec.worker")


def build_dispatcher(container: Container) -> Dispatcher:
    """One dispatcher over the configured lab connection (keyed by its base URL)."""
    settings = container.settings
    lab = LabConnection(
        container.lab.base_url,
        container.lab,
        max_in_flight=settings.lab_max_in_flight,
        breaker=CircuitBreaker(settings.lab_breaker_failures, settings.lab_breaker_cooldown),
    )
    worst_call = settings.lab_connect_timeout + settings.lab_read_timeout
    if settings.dispatch_lease_seconds <= worst_call:
        log.warning(
            "LABREC_DISPATCH_LEASE_SECONDS (%.0f) is not above the lab timeouts (%.0f s): "
            "slow lab calls will be abandoned at their lease end and sent again",
            settings.dispatch_lease_seconds,
            worst_call,
        )
    return Dispatcher(
        container.sessions,
        LabRoutes([lab]),
        RetryPolicy(
            base=settings.dispatch_backoff_base,
            cap=settings.dispatch_backoff_max,
            max_attempts=settings.dispatch_max_attempts,
        ),
        container.clock,
        lease=dt.timedelta(seconds=settings.dispatch_lease_seconds),
        capacity=settings.dispatch_concurrency,
        # SQLite has one writer: parallel recording transactions would only queue for its lock.
        record_concurrency=1 if settings.database_url.startswith("sqlite") else 4,
    )


async def reconcile_once(container: Container, limit: int = 50) -> int:
    """Ask the lab about orders whose events are overdue; returns how many changed."""
    threshold = container.clock() - dt.timedelta(seconds=container.settings.reconcile_after_seconds)
    changed = 0
    for order in await overdue_orders(container.sessions, older_than=threshold, limit=limit):
        try:
            status = await container.lab.fetch_status(order.id)
        except LabError as exc:
            log.warning(
                "reconcile: lab status read failed (%s)",
                "retryable" if exc.retryable else "permanent",
            )
            continue
        if status is None or status.status == order.status:
            continue
        outcome = await apply_lab_status(
            container.sessions,
            container.clock,
            event_id=f"reconcile:{order.id}:{status.status}",
            order_id=order.id,
            lab_order_id=status.lab_order_id,
            status=status.status,
            occurred_at=status.updated_at or container.clock(),
            message=None,
        )
        changed += outcome == "applied"
    return changed


async def _reconcile_forever(container: Container, stop: asyncio.Event) -> None:
    interval = max(1.0, container.settings.reconcile_after_seconds / 4)
    while not stop.is_set():
        try:
            await reconcile_once(container)
            await purge_expired(container.sessions, container.clock())
        except Exception as exc:
            log.error("reconcile pass failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def run_background(container: Container, stop: asyncio.Event) -> None:
    """Dispatch and reconcile until ``stop`` is set."""
    dispatcher = build_dispatcher(container)
    await asyncio.gather(
        dispatcher.run_forever(stop, container.settings.dispatch_poll_interval),
        _reconcile_forever(container, stop),
    )
