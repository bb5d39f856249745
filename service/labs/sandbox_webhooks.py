"""Delivers the sandbox lab's status events as signed webhooks.

One worker sends events in the order they happened (receivers see received before in_progress).
Each attempt is signed afresh (Standard Webhooks: the timestamp is the attempt's) under a
``webhook-id`` that stays the same across retries and is derived from (order, status), so the
receiver can dedupe. Attempts are bounded; a delivery that still fails is recorded, not raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Final

import httpx
import msgspec

from service.labs.webhooks import LabEvent, encode_event, sign_event

_NAMESPACE: Final = uuid.UUID("2a8f64d1-7c3b-4f0e-9d2e-51f3a0c6b7e4")
_RETRY_STATUSES: Final = frozenset({408, 429})
BACKOFF_CAP: Final = 10.0


class Delivery(msgspec.Struct):
    msg_id: str
    order_id: str
    status: str
    attempts: int = 0
    delivered: bool = False
    done: bool = False
    last_status_code: int | None = None
    last_error: str | None = None


def message_id(event: LabEvent) -> str:
    return "msg_" + uuid.uuid5(_NAMESPACE, f"{event.order_id}/{event.status}").hex


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        attempts: int,
        backoff: float,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._attempts = attempts
        self._backoff = backoff
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "labrec-sandbox-lab"},
        )
        self._queue: asyncio.Queue[tuple[Delivery, bytes]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.deliveries: list[Delivery] = []

    def enqueue(self, event: LabEvent) -> None:
        delivery = Delivery(msg_id=message_id(event), order_id=event.order_id, status=event.status)
        self.deliveries.append(delivery)
        self._queue.put_nowait((delivery, encode_event(event)))

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="sandbox-webhooks")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._http.aclose()

    async def _run(self) -> None:
        while True:
            delivery, body = await self._queue.get()
            try:
                await self._deliver(delivery, body)
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: Delivery, body: bytes) -> None:
        for attempt in range(1, self._attempts + 1):
            delivery.attempts = attempt
            headers = sign_event(self._secret, delivery.msg_id, datetime.now(UTC), body)
            headers["content-type"] = "application/json"
            try:
                response = await self._http.post(self._url, content=body, headers=headers)
            except httpx.RequestError as exc:
                delivery.last_error = type(exc).__name__
                delivery.last_status_code = None
            else:
                delivery.last_status_code = response.status_code
                if response.is_success:
                    delivery.delivered = delivery.done = True
                    delivery.last_error = None
                    return
                delivery.last_error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in _RETRY_STATUSES:
                    break  # the receiver refuses this event; retrying will not change its mind
            if attempt < self._attempts:
                await asyncio.sleep(min(BACKOFF_CAP, self._backoff * 2 ** (attempt - 1)))
        delivery.done = True
