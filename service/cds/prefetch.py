"""Prefetch as the spec defines it, and reading what is missing from the EHR's FHIR server.

Per key: **absent** = the client did not fetch it (labrec reads it from ``fhirServer`` when it
can, within one hard time budget); ``null`` = nothing to return; a Bundle = search results
(zero entries = none); an **OperationOutcome** = the client hit an error (unavailable: labrec
does not retry it, as the spec intends). Anything else (an HTML error page, a bare string) is
treated as unavailable rather than failing the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import httpx
import msgspec

from service.cds.egress import FhirServerGuard, FhirServerRefused, Pin, pin_connections
from service.cds.wire import HookCall

log = logging.getLogger("labrec.cds.prefetch")

SlotState = Literal["data", "none", "unavailable", "missing"]
_MAX_BYTES: Final = 4 * 1024 * 1024


class Slot(msgspec.Struct, frozen=True):
    """What one prefetch key yielded. ``missing`` = absent and not obtainable from fhirServer."""

    state: SlotState
    resources: tuple[dict[str, Any], ...] = ()
    fetched: bool = False


def classify(value: Any) -> Slot:
    """Read one prefetch value per the spec's null / Bundle / OperationOutcome semantics."""
    if value is None:
        return Slot("none")
    if not isinstance(value, dict):
        return Slot("unavailable")
    kind = value.get("resourceType")
    if kind == "OperationOutcome" or not isinstance(kind, str):
        return Slot("unavailable")
    if kind != "Bundle":
        return Slot("data", (value,))
    entries = value.get("entry")
    resources = tuple(
        entry["resource"]
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and isinstance(entry["resource"].get("resourceType"), str)
        and entry["resource"]["resourceType"] != "OperationOutcome"
    )
    return Slot("data", resources) if resources else Slot("none")


class FhirReader:
    """Reads prefetch queries from an EHR's FHIR server with the hook's bearer token.

    Only from a server the ``FhirServerGuard`` accepts for the calling client, over connections
    pinned to the addresses it checked (``service.cds.egress``). One shared
    ``httpx.AsyncClient``; no redirects are followed (the token is never sent to a server other
    than the one the EHR named); responses are size-capped; one time budget covers the DNS
    lookup and the reads.
    """

    def __init__(self, http: httpx.AsyncClient, *, budget: float, guard: FhirServerGuard) -> None:
        self._http = http
        self._budget = budget
        self._guard = guard

    async def resolve(
        self,
        call: HookCall,
        templates: Mapping[str, str],
        *,
        fhir_servers: Sequence[str] = (),
        client_id: str = "",
    ) -> dict[str, Slot]:
        """Every template key as a Slot, reading absent keys from fhirServer in parallel.

        ``fhir_servers`` are the base URLs registered for the calling client; a fhirServer
        outside them (or otherwise refused) is treated as unreadable, like no fhirServer.
        """
        given = call.prefetch or {}
        slots = {key: classify(given[key]) for key in templates if key in given}
        absent = [key for key in templates if key not in given]
        if absent and call.fhir_server is not None:
            started = time.monotonic()
            pin = await self._pin(call.fhir_server, fhir_servers, client_id)
            if pin is not None:
                remaining = max(self._budget - (time.monotonic() - started), 0.05)
                queries = {key: templates[key] for key in absent}
                slots.update(await self._read_all(call, pin, queries, remaining))
        for key in absent:
            slots.setdefault(key, Slot("missing"))
        return slots

    async def _pin(self, server: str, fhir_servers: Sequence[str], client_id: str) -> Pin | None:
        try:
            return await self._guard.check(server, fhir_servers)
        except FhirServerRefused as refused:
            # The reason and the client only: the URL may carry an attacker's text.
            log.warning(
                "fhir server refused", extra={"reason": refused.reason, "cds_client": client_id}
            )
            return None

    async def _read_all(
        self, call: HookCall, pin: Pin, queries: Mapping[str, str], budget: float
    ) -> dict[str, Slot]:
        tasks = {
            key: asyncio.ensure_future(self._read(call, pin, _fill(template, call), budget))
            for key, template in queries.items()
        }
        done, pending = await asyncio.wait(tasks.values(), timeout=budget)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("fhir read over budget", extra={"unfinished": len(pending)})
        slots: dict[str, Slot] = {}
        for key, task in tasks.items():
            if task in done and not task.cancelled() and task.exception() is None:
                value = task.result()
                if value is not _FAILED:
                    slot = classify(value)
                    # An OperationOutcome or an error page from the server = not obtained.
                    if slot.state != "unavailable":
                        slots[key] = msgspec.structs.replace(slot, fetched=True)
        return slots

    async def _read(self, call: HookCall, pin: Pin, relative: str, budget: float) -> Any:
        pin_connections(pin)  # this task's context only
        headers = {"Accept": "application/fhir+json, application/json"}
        if call.access_token is not None:
            headers["Authorization"] = f"Bearer {call.access_token}"
        url = pin.base_url + "/" + relative
        try:
            async with self._http.stream(
                "GET", url, headers=headers, follow_redirects=False, timeout=budget
            ) as response:
                if response.status_code == 404 and relative.startswith("Patient/"):
                    return None
                if response.status_code != 200:
                    log.info("fhir read refused", extra={"status": response.status_code})
                    return _FAILED
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        return _FAILED
            return msgspec.json.decode(bytes(body))
        except (httpx.HTTPError, msgspec.DecodeError) as exc:
            log.info("fhir read failed", extra={"reason": type(exc).__name__})
            return _FAILED


_FAILED: Final = object()


def _fill(template: str, call: HookCall) -> str:
    """Substitute the 2.0 context tokens; ``patientId`` is a validated FHIR id (URL-safe)."""
    return template.replace("{{context.patientId}}", call.patient_id)
