"""A lab that stalls: some calls are processed and then answered 12 s late, others fail fast (503
with ``Retry-After: 1``, dropped answers). Real sandbox lab over loopback, real databases, the
dispatcher's own loop (``run_forever``). Every order must reach the lab and be accepted once; the
stalls must not hold the others up (only an overall bound, to fail a hang rather than time it).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from service.container import build_container
from service.worker import build_dispatcher
from tests.conftest import make_settings
from tests.reliability.test_dispatch_reliability import (
    SECRET,
    _lab_stats,
    _lab_view,
    _place_orders,
    _statuses,
)
from tests.support.processes import sandbox_lab

ORDERS = 120
#: Generous: a dispatcher that waited for each batch's slowest call needs several minutes.
HANG_GUARD_SECONDS = 90


async def test_orders_flow_past_12_second_stalls(database_url: str, tmp_path: Path) -> None:
    with sandbox_lab(
        tmp_path,
        timeout_rate="0.1",
        hang_seconds="12",
        error_rate="0.1",
        retry_after="seconds",
        drop_rate="0.1",
        seed="15",
    ) as lab:
        settings = make_settings(
            database_url,
            lab_base_url=lab,
            lab_webhook_secret=SECRET,
            lab_read_timeout=15.0,  # longer than the stall: a stalled call is answered
            dispatch_backoff_base=0.2,
            dispatch_backoff_max=2.0,
        )
        container = build_container(settings)
        stop = asyncio.Event()
        try:
            ids = await _place_orders(container, ORDERS)
            dispatcher = build_dispatcher(container)
            running = asyncio.create_task(dispatcher.run_forever(stop, 0.05))
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            while time.monotonic() < deadline:
                statuses = await _statuses(container, ids)
                if all(s == "submitted" for s in statuses.values()):
                    break
                await asyncio.sleep(0.2)
            stop.set()
            await running
            statuses = await _statuses(container, ids)
        finally:
            stop.set()
            await container.aclose()
        stats = _lab_stats(lab)
        view = _lab_view(lab)
    assert sorted(statuses.values()) == ["submitted"] * ORDERS, "every order reached the lab"
    assert set(view) == set(ids), "the lab knows exactly our orders"
    assert {o["accepted_count"] for o in view.values()} == {1}, "no order accepted twice"
    assert stats["accepted_total"] == ORDERS
    assert stats["injected_timeouts"] >= 5, "calls stalled for 12 s"
    assert stats["injected_errors"] and stats["injected_drops"]
