"""HTTP client for an external FHIR R4 lab: submit, cancel, read status.

Every call returns an outcome the dispatcher can act on instead of raising: connection trouble,
timeouts, 408/409/429/5xx and a malformed 2xx are ``Retryable`` (the lab gets the same
``Idempotency-Key`` next time, so a retry after a lost response cannot double the order); other
4xx and any 3xx are ``Rejected``. Redirects are never followed: a hijacked 30x must not make us
resend patient data somewhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import httpx
import msgspec

from service.labs.fhir_bundle import (
    FHIR_JSON,
    ORDER_SYSTEM,
    build_cancel_parameters,
    build_transaction_bundle,
    idempotency_key_header,
)
from service.labs.fhir_read import (
    MalformedResponse,
    accession_from_transaction_response,
    operation_outcome_text,
    status_from_searchset,
    task_from_body,
)
from service.labs.outcomes import (
    Accepted,
    Cancelled,
    CancelOutcome,
    LabError,
    LabStatus,
    Rejected,
    Retryable,
    SubmitOutcome,
)
from service.labs.requisition import LabRequisition
from service.labs.retry_after import parse_retry_after

T = TypeVar("T")

MESSAGE_LIMIT: Final = 500
#: 409 is the IETF idempotency draft's "same key still in flight, retry unchanged".
_RETRYABLE_4XX: Final = frozenset({408, 409, 429})
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]+")
#: Connections per httpx pool (see ``FhirLabClient.__init__``).
_SHARD: Final = 4


class FhirLabClient:
    """One long-lived connection pool to one lab; create at start-up, ``aclose`` at shutdown."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
        bearer_token: str | None = None,
        max_connections: int = 32,
    ) -> None:
        """``bearer_token`` is sent as ``Authorization`` (the built-in sandbox lab requires one)."""
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("lab base URL must be an absolute http(s) URL")
        self._base = base_url.rstrip("/")
        # As many kept-alive connections as calls the dispatcher may have in flight to this lab,
        # in small pools: httpcore checks every pooled connection's socket on each request, so
        # one pool of 32 costs more CPU than the call itself. A call goes to the least busy pool.
        sizes = [_SHARD] * (max_connections // _SHARD)
        if max_connections % _SHARD:
            sizes.append(max_connections % _SHARD)
        headers = {
            "Accept": FHIR_JSON,
            "User-Agent": "labrec-lab-client",
            **({"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}),
        }
        self._pools = [
            httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                follow_redirects=False,
                transport=transport,
                headers=headers,
            )
            for size in sizes
        ]
        self._busy = [0] * len(self._pools)
        self._http = self._pools[0]

    @property
    def base_url(self) -> str:
        return self._base

    async def submit(self, req: LabRequisition) -> SubmitOutcome:
        """POST the order's transaction bundle to the FHIR base."""
        body = msgspec.json.encode(build_transaction_bundle(req))
        response = await self._send("POST", self._base, body, req.order_id)
        if not isinstance(response, httpx.Response):
            return response
        return _classify(
            response,
            lambda raw: Accepted(lab_order_id=accession_from_transaction_response(raw)),
            redact=_patient_strings(req),
        )

    async def cancel(self, order_id: str) -> CancelOutcome:
        """Ask the lab to withdraw the requisition; a lab that already resulted it says no (4xx)."""
        body = msgspec.json.encode(build_cancel_parameters(order_id))
        url = f"{self._base}/ServiceRequest/$cancel-requisition"
        response = await self._send("POST", url, body, f"cancel-{order_id}")
        if not isinstance(response, httpx.Response):
            return response
        return _classify(response, _cancelled, redact=())

    async def fetch_status(self, order_id: str) -> LabStatus | None:
        """The lab's Task for the order; None when the lab has never heard of it.

        Raises ``LabError`` when the lab cannot be read (``retryable`` tells whether to try later).
        """
        try:
            response = await self._http.get(
                f"{self._base}/Task", params={"identifier": f"{ORDER_SYSTEM}|{order_id}"}
            )
        except httpx.RequestError as exc:
            raise LabError(_transport_reason(exc), retryable=True) from None
        outcome = _classify(response, lambda raw: status_from_searchset(order_id, raw), redact=())
        if isinstance(outcome, Retryable):
            raise LabError(outcome.reason, retryable=True)
        if isinstance(outcome, Rejected):
            raise LabError(outcome.message, retryable=False, status=outcome.status)
        return outcome

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def _send(
        self, method: str, url: str, body: bytes, key: str
    ) -> httpx.Response | Retryable:
        headers = {"Content-Type": FHIR_JSON, "Idempotency-Key": idempotency_key_header(key)}
        index = self._busy.index(min(self._busy))
        self._busy[index] += 1
        try:
            return await self._pools[index].request(method, url, content=body, headers=headers)
        except httpx.RequestError as exc:
            # Sent or not, we cannot know: the same key makes the retry safe either way.
            return Retryable(reason=_transport_reason(exc))
        finally:
            self._busy[index] -= 1


def _classify(
    response: httpx.Response, on_success: Callable[[bytes], T], *, redact: Iterable[str]
) -> T | Retryable | Rejected:
    status = response.status_code
    if 200 <= status < 300:
        try:
            return on_success(response.content)
        except MalformedResponse as exc:
            return Retryable(reason=f"malformed {status} response: {exc}")
    if 300 <= status < 400:
        return Rejected(status=status, message="lab answered a redirect; not followed")
    if status in _RETRYABLE_4XX or status >= 500:
        return Retryable(
            reason=f"lab answered HTTP {status}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    text = operation_outcome_text(response.content) or f"lab answered HTTP {status}"
    return Rejected(status=status, message=_clean(text, redact))


def _cancelled(raw: bytes) -> Cancelled | Rejected:
    lab_order_id, task_status = task_from_body(raw)
    if task_status != "cancelled":
        return Rejected(status=200, message=f"lab did not cancel (Task.status {task_status})")
    return Cancelled(lab_order_id=lab_order_id)


def _transport_reason(exc: httpx.RequestError) -> str:
    # Only the exception class: messages may carry URLs or socket details we do not need.
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
    return f"{kind} ({type(exc).__name__})"


def _patient_strings(req: LabRequisition) -> tuple[str, ...]:
    """What we sent that identifies the patient or their condition; scrubbed from lab text."""
    patient = req.patient
    values = [
        patient.reference,
        patient.given_name,
        patient.family_name,
        patient.birth_date.isoformat(),
        req.notes or "",
        *(condition.code for condition in req.conditions),
    ]
    return tuple(value for value in values if len(value) >= 2)


def _clean(text: str, redact: Iterable[str]) -> str:
    """Lab text may echo what we sent and may contain line breaks (log forging): neutralise both."""
    for value in sorted(redact, key=len, reverse=True):
        text = re.sub(re.escape(value), "[redacted]", text, flags=re.IGNORECASE)
    text = _CONTROL_CHARS.sub(" ", text).strip()
    return text[:MESSAGE_LIMIT]
