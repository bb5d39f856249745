"""CDS Hooks 2.0 wire shapes: the hook request as read, and the response as written.

Responses omit every optional field that has no value (the spec forbids ``null``, ``""``, ``[]``
and ``{}`` for optional fields), so each Struct uses ``omit_defaults``. Requests are read
leniently: unknown members (3.0 additions, ``extension``) are ignored, and FHIR resources inside
stay plain dicts that the readers pick apart (the spec's own draft orders are not valid R4).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec

from service.domain.text import TOKEN_PATTERN, has_control_characters

FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: ``Type/id`` (hook-library invariant ord-1, widened to FHIR ids).
REFERENCE: Final = re.compile(r"^[A-Za-z]{1,64}/[A-Za-z0-9\-.]{1,64}$")

Hook = Literal["order-select", "order-sign", "patient-view"]
HOOKS: Final[frozenset[str]] = frozenset({"order-select", "order-sign", "patient-view"})


class Coding(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    system: str | None = None
    display: str | None = None


class Source(msgspec.Struct, frozen=True, omit_defaults=True):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resource_id: str | None = None


class Suggestion(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    label: str
    uuid: str | None = None
    is_recommended: bool | None = None
    actions: list[Action] = []


class Link(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    app_context: str | None = None


class Card(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    summary: str
    indicator: Literal["info", "warning", "critical"]
    source: Source
    uuid: str | None = None
    detail: str | None = None
    suggestions: list[Suggestion] = []
    selection_behavior: Literal["at-most-one", "any"] | None = None
    override_reasons: list[Coding] = []
    links: list[Link] = []


class CardsResponse(msgspec.Struct, frozen=True):
    cards: list[Card]


class ServiceDescription(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str] = {}
    usage_requirements: str | None = None


class Discovery(msgspec.Struct, frozen=True):
    services: list[ServiceDescription]


class _HookRequestIn(msgspec.Struct, rename="camel"):
    hook: str
    #: Stored with feedback: a token (a UUID), never control characters.
    hook_instance: Annotated[str, msgspec.Meta(pattern=TOKEN_PATTERN)]
    context: dict[str, Any]
    fhir_server: str | None = None
    fhir_authorization: dict[str, Any] | None = None
    prefetch: dict[str, Any] | None = None


class HookCall(msgspec.Struct, frozen=True):
    """A hook request after shape checks; resources inside are still raw dicts."""

    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    encounter_id: str | None
    fhir_server: str | None
    access_token: str | None
    draft_orders: list[dict[str, Any]]
    selections: tuple[str, ...]
    prefetch: dict[str, Any] | None

    def __repr__(self) -> str:  # never print the access token by accident
        return f"HookCall(hook={self.hook!r}, hook_instance={self.hook_instance!r})"


class MalformedHookRequest(ValueError):
    """The request cannot be read as a CDS Hooks call; the message names the field only."""


_DECODER: Final = msgspec.json.Decoder(_HookRequestIn)


def parse_hook_request(body: bytes) -> HookCall:
    """Shape checks from the request model and cds-r-1; raises ``MalformedHookRequest``."""
    try:
        raw = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        # msgspec names the path ("at `$.context`") but never the offending value.
        raise MalformedHookRequest(_strip_values(str(exc))) from None
    if not 1 <= len(raw.hook_instance) <= 128:
        raise MalformedHookRequest("hookInstance must be a non-empty string (a UUID)")
    if raw.fhir_authorization is not None and raw.fhir_server is None:
        raise MalformedHookRequest("fhirAuthorization requires fhirServer (cds-r-1)")
    server = raw.fhir_server
    if server is not None and (
        len(server) > 500 or not server.startswith(("https://", "http://")) or " " in server
    ):
        raise MalformedHookRequest("fhirServer must be an absolute http(s) URL")
    context = raw.context
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not FHIR_ID.match(patient_id):
        raise MalformedHookRequest("context.patientId must be a FHIR id")
    user_id = context.get("userId")
    if (
        not isinstance(user_id, str)
        or not 1 <= len(user_id) <= 200
        or has_control_characters(user_id)
    ):
        raise MalformedHookRequest("context.userId must be a reference such as Practitioner/123")
    encounter = context.get("encounterId")
    drafts: list[dict[str, Any]] = []
    if raw.hook in ("order-select", "order-sign"):
        bundle = context.get("draftOrders")
        if not isinstance(bundle, dict):
            raise MalformedHookRequest("context.draftOrders must be a FHIR Bundle")
        entries = bundle.get("entry")
        if isinstance(entries, list):
            drafts = [
                entry["resource"]
                for entry in entries
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
            ]
    selections = context.get("selections")
    return HookCall(
        hook=raw.hook,
        hook_instance=raw.hook_instance,
        patient_id=patient_id,
        user_id=user_id,
        encounter_id=encounter if isinstance(encounter, str) and FHIR_ID.match(encounter) else None,
        fhir_server=server,
        access_token=_access_token(raw.fhir_authorization),
        draft_orders=drafts,
        selections=tuple(s for s in selections if isinstance(s, str))
        if isinstance(selections, list)
        else (),
        prefetch=raw.prefetch,
    )


def _access_token(authorization: dict[str, Any] | None) -> str | None:
    """The bearer token; 2.0 names it ``access_token`` (the logical model says accessToken)."""
    if authorization is None:
        return None
    token = authorization.get("access_token", authorization.get("accessToken"))
    token_type = authorization.get("token_type", authorization.get("tokenType", "Bearer"))
    if not isinstance(token, str) or not 0 < len(token) <= 8192:
        return None
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        return None
    return token


_QUOTED_VALUE: Final = re.compile(r"'[^']*'")


def _strip_values(message: str) -> str:
    """msgspec names types, fields and the path in backticks; values only appear quoted."""
    return _QUOTED_VALUE.sub("''", message)


def operation_outcome(
    code: str, text: str, *, diagnostics: str | None = None, severity: str = "error"
) -> dict[str, Any]:
    """A FHIR OperationOutcome body, as CDS Hooks 3.0 recommends for non-2xx answers."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}
