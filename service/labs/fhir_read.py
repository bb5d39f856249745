"""Reading what a FHIR lab answers: transaction-response, Task, searchset, OperationOutcome.

The Structs name only the fields we use and ignore the rest, because a lab may add anything FHIR
allows. Errors are ``MalformedResponse`` with our own wording, never a copy of the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import msgspec

from service.labs.fhir_bundle import ACCESSION_TYPE, IDENTIFIER_TYPE_SYSTEM, ORDER_SYSTEM
from service.labs.outcomes import LabStatus
from service.labs.status import FROM_TASK_STATUS

T = TypeVar("T")


class MalformedResponse(ValueError):
    """The lab's 2xx body is not what the protocol promises."""


class _Coding(msgspec.Struct):
    system: str | None = None
    code: str | None = None


class _CodeableConcept(msgspec.Struct):
    coding: list[_Coding] = []
    text: str | None = None


class _Identifier(msgspec.Struct):
    system: str | None = None
    value: str | None = None
    type: _CodeableConcept | None = None


class _ResourceWithIds(msgspec.Struct, rename="camel"):
    resource_type: str
    id: str | None = None
    identifier: list[_Identifier] = []


class _EntryResponse(msgspec.Struct):
    status: str
    location: str | None = None


class _ResponseEntry(msgspec.Struct):
    response: _EntryResponse | None = None
    resource: _ResourceWithIds | None = None


class _ResponseBundle(msgspec.Struct, rename="camel"):
    resource_type: str
    type: str
    entry: list[_ResponseEntry] = []


class _Meta(msgspec.Struct, rename="camel"):
    last_updated: datetime | None = None


class _Task(msgspec.Struct, rename="camel"):
    resource_type: str
    status: str | None = None
    id: str | None = None
    identifier: list[_Identifier] = []
    last_modified: datetime | None = None
    meta: _Meta | None = None
    status_reason: _CodeableConcept | None = None


class _SearchEntry(msgspec.Struct):
    resource: _Task | None = None  # any resource type decodes; only Tasks are used


class _SearchBundle(msgspec.Struct, rename="camel"):
    resource_type: str
    type: str
    entry: list[_SearchEntry] = []


class _Issue(msgspec.Struct):
    diagnostics: str | None = None
    details: _CodeableConcept | None = None


class _OperationOutcome(msgspec.Struct, rename="camel"):
    resource_type: str
    issue: list[_Issue] = []


def accession_from_transaction_response(body: bytes) -> str:
    """The lab's order id from a ``transaction-response``.

    Preferred: an identifier typed ACSN (v2-0203) on a returned ServiceRequest. Fallback, for labs
    that answer ``return=minimal``: the logical id in the first ServiceRequest ``location``.
    """
    bundle = _decode(body, _ResponseBundle)
    if bundle.resource_type != "Bundle" or bundle.type != "transaction-response":
        raise MalformedResponse("not a transaction-response Bundle")
    located: str | None = None
    for entry in bundle.entry:
        if entry.response is None or not entry.response.status.startswith("2"):
            continue
        resource = entry.resource
        if resource is not None and resource.resource_type == "ServiceRequest":
            accession = _accession(resource.identifier)
            if accession:
                return accession
        location = entry.response.location or ""
        if located is None and location.startswith("ServiceRequest/"):
            located = location.split("/")[1]
    if located:
        return located
    raise MalformedResponse("no accepted ServiceRequest in the transaction-response")


def task_from_body(body: bytes) -> tuple[str, str]:
    """(lab order id, FHIR Task.status) of a single Task resource, e.g. a cancel answer."""
    return _task_ids(_decode(body, _Task))


def status_from_searchset(order_id: str, body: bytes) -> LabStatus | None:
    """The one Task a ``Task?identifier=`` search found; None when the lab has no such order."""
    bundle = _decode(body, _SearchBundle)
    if bundle.resource_type != "Bundle" or bundle.type != "searchset":
        raise MalformedResponse("not a searchset Bundle")
    tasks = [
        entry.resource
        for entry in bundle.entry
        if entry.resource is not None and entry.resource.resource_type == "Task"
    ]
    # A server that ignores an unsupported search parameter returns every Task; filter again.
    tasks = [task for task in tasks if _is_for_order(task, order_id)]
    if not tasks:
        return None
    if len(tasks) > 1:
        raise MalformedResponse("more than one Task for one requisition")
    task = tasks[0]
    lab_order_id, task_status = _task_ids(task)
    status = FROM_TASK_STATUS.get(task_status)
    if status is None:
        raise MalformedResponse("unsupported Task.status")
    updated = task.last_modified or (task.meta.last_updated if task.meta else None)
    reason = task.status_reason.text if task.status_reason else None
    return LabStatus(
        order_id=order_id,
        lab_order_id=lab_order_id,
        status=status,
        updated_at=updated,
        message=reason,
    )


def operation_outcome_text(body: bytes) -> str | None:
    """The human text of an OperationOutcome (diagnostics, else details.text), or None."""
    try:
        outcome = msgspec.json.decode(body, type=_OperationOutcome)
    except msgspec.DecodeError:
        return None
    if outcome.resource_type != "OperationOutcome":
        return None
    texts = [
        text
        for issue in outcome.issue
        if (text := issue.diagnostics or (issue.details.text if issue.details else None))
    ]
    return "; ".join(texts) or None


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        # msgspec names the path and expected type, never the offending value.
        raise MalformedResponse(f"unexpected body shape ({exc})") from None


def _accession(identifiers: list[_Identifier]) -> str | None:
    for identifier in identifiers:
        codings = identifier.type.coding if identifier.type else []
        if identifier.value and any(
            c.system == IDENTIFIER_TYPE_SYSTEM and c.code == ACCESSION_TYPE for c in codings
        ):
            return identifier.value
    return None


def _task_ids(task: _Task) -> tuple[str, str]:
    if task.resource_type != "Task" or not task.status:
        raise MalformedResponse("not a Task with a status")
    lab_order_id = _accession(task.identifier) or task.id
    if not lab_order_id:
        raise MalformedResponse("Task has neither an accession identifier nor an id")
    return lab_order_id, task.status


def _is_for_order(task: _Task, order_id: str) -> bool:
    return any(i.system == ORDER_SYSTEM and i.value == order_id for i in task.identifier)
