"""Sandbox lab parts without a server: validation, FHIR answers, config, faults, progression."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task

from service.labs.client import FhirLabClient
from service.labs.fhir_bundle import build_transaction_bundle
from service.labs.fhir_read import accession_from_transaction_response, status_from_searchset
from service.labs.outcomes import Accepted
from service.labs.sandbox import create_sandbox_app
from service.labs.sandbox_config import FaultSettings, SandboxConfig
from service.labs.sandbox_faults import FaultInjector
from service.labs.sandbox_fhir import accession_for, searchset, task, transaction_response
from service.labs.sandbox_validate import BundleInvalid, validate_transaction
from service.labs.sandbox_webhooks import message_id
from service.labs.webhooks import new_secret, verify_event

from . import hostapp
from .factories import CANARIES, make_requisition
from .servers import poll_until

# -- validation of incoming bundles -----------------------------------------------------------


def mutated(change: Callable[[dict[str, Any]], None]) -> bytes:
    bundle = copy.deepcopy(build_transaction_bundle(make_requisition()))
    change(bundle)
    return msgspec.json.encode(bundle)


def set_sr(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        bundle["entry"][2]["resource"][field] = value

    return change


def drop_sr(field: str) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        del bundle["entry"][2]["resource"][field]

    return change


def test_our_bundle_passes_the_sandbox_checks() -> None:
    req = make_requisition()

    tx = validate_transaction(msgspec.json.encode(build_transaction_bundle(req)))

    assert tx.requisition == req.order_id
    assert [kind for kind, _ in tx.entries] == [
        "Patient",
        "Practitioner",
        "ServiceRequest",
        "ServiceRequest",
    ]


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (b"{not json", "Bundle"),
        (b"[]", "Bundle"),
        (mutated(lambda b: b.update(resourceType="Patient")), "Bundle"),
        (mutated(lambda b: b.update(type="batch")), "Bundle.type"),
        (mutated(lambda b: b.update(entry=[])), "Bundle.entry"),
        (mutated(lambda b: b.update(entry=b["entry"][:2])), "Bundle.entry"),
        (mutated(set_sr("status", "draft")), "Bundle.entry[2].resource.status"),
        (mutated(set_sr("intent", "plan")), "Bundle.entry[2].resource.intent"),
        (mutated(drop_sr("code")), "Bundle.entry[2].resource.code"),
        (mutated(set_sr("code", {"coding": [{"code": "x"}]})), "Bundle.entry[2].resource.code"),
        (mutated(drop_sr("category")), "Bundle.entry[2].resource.category"),
        (mutated(drop_sr("requisition")), "Bundle.entry[2].resource.requisition"),
        (
            mutated(set_sr("requisition", {"system": "urn:other", "value": "x"})),
            "Bundle.entry[2].resource.requisition",
        ),
        (
            mutated(set_sr("requisition", {"system": "urn:labrec:order", "value": "other"})),
            "Bundle.entry.resource.requisition",
        ),
        (
            mutated(set_sr("subject", {"reference": "urn:uuid:nowhere"})),
            "Bundle.entry[2].resource.subject",
        ),
        (
            mutated(set_sr("subject", {"reference": "Patient/123"})),
            "Bundle.entry[2].resource.subject",
        ),
        (mutated(drop_sr("requester")), "Bundle.entry[2].resource.requester"),
        (
            mutated(lambda b: b["entry"].append(copy.deepcopy(b["entry"][0]))),
            "Bundle.entry[4].fullUrl",
        ),
        (
            mutated(lambda b: b["entry"][0]["resource"].update(identifier=[])),
            "Bundle.entry[0].resource.identifier",
        ),
        (
            mutated(lambda b: b["entry"][0]["resource"].update(gender="f")),
            "Bundle.entry[0].resource.gender",
        ),
        (
            mutated(lambda b: b["entry"][1]["resource"].update(resourceType="Organization")),
            "Bundle.entry[1].resource",
        ),
        (
            mutated(lambda b: b["entry"][2]["request"].update(method="PUT")),
            "Bundle.entry[2].request",
        ),
    ],
    ids=[
        "not-json",
        "not-object",
        "not-bundle",
        "batch",
        "no-entries",
        "no-service-request",
        "status",
        "intent",
        "no-code",
        "coding-without-system",
        "no-category",
        "no-requisition",
        "foreign-requisition-system",
        "two-requisitions",
        "dangling-subject",
        "external-subject",
        "no-requester",
        "duplicate-full-url",
        "patient-without-identifier",
        "bad-gender",
        "unsupported-resource",
        "not-a-create",
    ],
)
def test_invalid_bundles_are_refused_with_the_path(body: bytes, expression: str) -> None:
    with pytest.raises(BundleInvalid) as caught:
        validate_transaction(body)

    issues = caught.value.issues
    assert expression in [issue.expression for issue in issues]
    assert not any(c in issue.diagnostics for issue in issues for c in CANARIES)


# -- the sandbox's own FHIR documents ---------------------------------------------------------


def test_sandbox_answers_are_valid_fhir_and_readable_by_the_client() -> None:
    req = make_requisition()
    tx = validate_transaction(msgspec.json.encode(build_transaction_bundle(req)))
    accession = accession_for(req.order_id)

    response, request_ids = transaction_response(tx, accession, "pat-1")
    task_doc = task(
        order_id=req.order_id,
        accession=accession,
        status="in_progress",
        patient_id="pat-1",
        request_ids=request_ids,
        authored=req.created_at,
        modified=req.created_at,
        message="on the bench",
    )

    Bundle.model_validate(response)
    Task.model_validate(task_doc)
    Bundle.model_validate(searchset([task_doc]))
    assert request_ids == (f"{accession}-1", f"{accession}-2")
    assert accession_from_transaction_response(msgspec.json.encode(response)) == accession
    status = status_from_searchset(req.order_id, msgspec.json.encode(searchset([task_doc])))
    assert status is not None
    assert (status.lab_order_id, status.status, status.message) == (
        accession,
        "in_progress",
        "on the bench",
    )


def test_accession_is_stable_per_order() -> None:
    assert accession_for("o-1") == accession_for("o-1") != accession_for("o-2")


# -- configuration ----------------------------------------------------------------------------


def test_config_from_env() -> None:
    secret = new_secret()
    config = SandboxConfig.from_env(
        {
            "LABREC_SANDBOX_WEBHOOK_URL": "http://127.0.0.1:9/hooks",
            "LABREC_SANDBOX_WEBHOOK_SECRET": secret,
            "LABREC_SANDBOX_STEP_DELAY": "0.5",
            "LABREC_SANDBOX_ERROR_RATE": "0.25",
            "LABREC_SANDBOX_LATENCY_MS": "40",
            "LABREC_SANDBOX_DROP_RATE": "0.1",
            "LABREC_SANDBOX_TIMEOUT_RATE": "0.05",
            "LABREC_SANDBOX_SEED": "7",
            "LABREC_SANDBOX_HANG_SECONDS": "12",
            "LABREC_SANDBOX_WEBHOOK_ATTEMPTS": "3",
            "LABREC_SANDBOX_WEBHOOK_BACKOFF": "0.1",
            "LABREC_SANDBOX_WEBHOOK_TIMEOUT": "2",
        }
    )

    assert config == SandboxConfig(
        webhook_url="http://127.0.0.1:9/hooks",
        webhook_secret=secret,
        step_delay=0.5,
        faults=FaultSettings(
            error_rate=0.25, latency_ms=40, drop_rate=0.1, timeout_rate=0.05, seed=7
        ),
        hang_seconds=12.0,
        webhook_attempts=3,
        webhook_backoff=0.1,
        webhook_timeout=2.0,
    )


def test_config_defaults_and_secret_fallback() -> None:
    secret = new_secret()

    config = SandboxConfig.from_env({"LABREC_LAB_WEBHOOK_SECRET": secret})

    assert config.webhook_url is None
    assert config.webhook_secret == secret
    assert config.step_delay == 2.0
    assert config.faults == FaultSettings()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"LABREC_SANDBOX_ERROR_RATE": "lots"}, "LABREC_SANDBOX_ERROR_RATE"),
        ({"LABREC_SANDBOX_DROP_RATE": "1.5"}, "drop_rate"),
        ({"LABREC_SANDBOX_LATENCY_MS": "-1"}, "latency_ms"),
        ({"LABREC_SANDBOX_WEBHOOK_URL": "http://x/hooks"}, "webhook_secret"),
        ({"LABREC_SANDBOX_WEBHOOK_URL": "ftp://x/hooks"}, "http"),
        ({"LABREC_SANDBOX_WEBHOOK_SECRET": "hunter2"}, "whsec_"),
        ({"LABREC_SANDBOX_STEP_DELAY": "-2"}, "negative"),
    ],
)
def test_bad_config_is_refused_with_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SandboxConfig.from_env(env)


def test_fault_settings_decode_rejects_out_of_range_and_unknown_fields() -> None:
    for body in (b'{"error_rate": 2}', b'{"drop_rate": -0.1}', b'{"chaos": 1}'):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(body, type=FaultSettings)


# -- fault injection --------------------------------------------------------------------------


def test_faults_are_deterministic_per_seed_and_follow_the_rates() -> None:
    settings = FaultSettings(error_rate=0.3, drop_rate=0.2, timeout_rate=0.1, seed=11)

    def sample(injector: FaultInjector) -> list[tuple[bool, bool, bool, str]]:
        return [
            (p.error, p.drop, p.hang, p.retry_after) for p in (injector.draw() for _ in range(2000))
        ]

    first = sample(FaultInjector(settings))
    reset = FaultInjector(FaultSettings())
    reset.reset(settings)

    assert sample(reset) == first
    assert sample(FaultInjector(msgspec.structs.replace(settings, seed=12))) != first
    errors = sum(e for e, _, _, _ in first) / len(first)
    drops = sum(d for _, d, _, _ in first) / len(first)
    hangs = sum(h for _, _, h, _ in first) / len(first)
    assert 0.25 < errors < 0.35
    assert 0.15 < drops < 0.25
    assert 0.07 < hangs < 0.13
    assert {r for *_, r in first} == {"none", "seconds", "http-date"}


def test_a_fixed_retry_after_form_applies_to_every_503_and_keeps_the_sequence() -> None:
    mixed = FaultSettings(error_rate=0.5, timeout_rate=0.2, seed=5)
    fixed = msgspec.structs.replace(mixed, retry_after="seconds")
    fixed_injector, mixed_injector = FaultInjector(fixed), FaultInjector(mixed)

    drawn = [fixed_injector.draw() for _ in range(300)]
    baseline = [mixed_injector.draw() for _ in range(300)]

    assert {p.retry_after for p in drawn} == {"seconds"}
    assert [(p.error, p.hang) for p in drawn] == [(p.error, p.hang) for p in baseline]
    assert SandboxConfig.from_env(
        {"LABREC_SANDBOX_RETRY_AFTER": "seconds"}
    ).faults == FaultSettings(retry_after="seconds")
    with pytest.raises(ValueError, match="LABREC_SANDBOX_RETRY_AFTER"):
        SandboxConfig.from_env({"LABREC_SANDBOX_RETRY_AFTER": "sometimes"})


def test_zero_rates_never_fault() -> None:
    injector = FaultInjector(FaultSettings(seed=3))

    plans = [injector.draw() for _ in range(500)]

    assert not any(p.error or p.drop or p.hang or p.latency for p in plans)


# -- in-process app: progression and webhook delivery ------------------------------------------


class Hooks:
    """A webhook receiver as an httpx MockTransport; answers with ``statuses`` in turn."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.calls.append(request)
        status = self.statuses.pop(0) if self.statuses else 204
        return httpx.Response(status)


@pytest.fixture
def secret() -> str:
    return new_secret()


@asynccontextmanager
async def running(
    config: SandboxConfig, hooks: Hooks
) -> AsyncIterator[tuple[FhirLabClient, httpx.AsyncClient]]:
    app = create_sandbox_app(config, webhook_transport=hooks.transport)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        lab = FhirLabClient("http://sandbox", timeout=httpx.Timeout(5.0), transport=transport)
        admin = httpx.AsyncClient(transport=transport, base_url="http://sandbox")
        try:
            yield lab, admin
        finally:
            await lab.aclose()
            await admin.aclose()


async def test_orders_progress_on_a_timer_with_signed_webhooks_in_order(secret: str) -> None:
    hooks = Hooks()
    config = SandboxConfig(
        webhook_url="http://receiver.test/hooks", webhook_secret=secret, step_delay=0.05
    )
    req = make_requisition()

    async with running(config, hooks) as (lab, _):
        outcome = await lab.submit(req)
        await poll_until(lambda: len(hooks.calls) == 3)
        status = await lab.fetch_status(req.order_id)

    assert isinstance(outcome, Accepted)
    events = [verify_event(secret, r.headers, r.content) for r in hooks.calls]
    assert [e.status for e in events] == ["received", "in_progress", "resulted"]
    assert {(e.order_id, e.lab_order_id) for e in events} == {(req.order_id, outcome.lab_order_id)}
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    # Ids derive from (order, status): a re-emitted event dedupes at the receiver.
    assert [r.headers["webhook-id"] for r in hooks.calls] == [message_id(e) for e in events]
    assert len({r.headers["webhook-id"] for r in hooks.calls}) == 3
    assert all(str(r.url) == "http://receiver.test/hooks" for r in hooks.calls)
    assert status is not None and status.status == "resulted"


async def test_failing_receiver_is_retried_a_bounded_number_of_times(secret: str) -> None:
    hooks = Hooks(*([500] * 10))
    config = SandboxConfig(
        webhook_url="http://receiver.test/hooks",
        webhook_secret=secret,
        step_delay=0,
        webhook_attempts=3,
        webhook_backoff=0.01,
    )
    req = make_requisition()

    async with running(config, hooks) as (lab, admin):
        await lab.submit(req)
        await admin.post(f"/_sandbox/advance/{req.order_id}")
        await poll_until(lambda: len(hooks.calls) == 3)
        await asyncio.sleep(0.1)  # would-be fourth attempt
        deliveries = (await admin.get("/_sandbox/webhooks")).json()
        stats = (await admin.get("/_sandbox/stats")).json()

    assert len(hooks.calls) == 3
    assert len({r.headers["webhook-id"] for r in hooks.calls}) == 1  # same message, retried
    assert deliveries == [
        {
            "msg_id": hooks.calls[0].headers["webhook-id"],
            "order_id": req.order_id,
            "status": "received",
            "attempts": 3,
            "delivered": False,
            "done": True,
            "last_status_code": 500,
            "last_error": "HTTP 500",
        }
    ]
    assert (stats["webhooks_failed"], stats["webhooks_delivered"]) == (1, 0)


async def test_receiver_refusal_is_not_retried_and_later_events_still_flow(secret: str) -> None:
    hooks = Hooks(401)
    config = SandboxConfig(
        webhook_url="http://receiver.test/hooks",
        webhook_secret=secret,
        step_delay=0,
        webhook_backoff=0.01,
    )
    req = make_requisition()

    async with running(config, hooks) as (lab, admin):
        await lab.submit(req)
        await admin.post(f"/_sandbox/advance/{req.order_id}")
        await admin.post(f"/_sandbox/advance/{req.order_id}")
        await poll_until(lambda: len(hooks.calls) == 2)
        deliveries = (await admin.get("/_sandbox/webhooks")).json()

    assert [(d["status"], d["attempts"], d["delivered"]) for d in deliveries] == [
        ("received", 1, False),
        ("in_progress", 1, True),
    ]


async def test_shutdown_leaves_no_tasks_behind(secret: str) -> None:
    hooks = Hooks(*([503] * 50))
    config = SandboxConfig(
        webhook_url="http://receiver.test/hooks",
        webhook_secret=secret,
        step_delay=0.01,
        webhook_backoff=5,
    )
    before = asyncio.all_tasks()

    async with running(config, hooks) as (lab, _):
        await lab.submit(make_requisition())
        await poll_until(lambda: len(hooks.calls) >= 1)  # delivery is now in its backoff sleep

    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set()


async def test_mount_registers_without_warnings_and_serves_under_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Warnings are errors here, so building the host app proves the mount is warning-free.
    monkeypatch.setenv("LABREC_SANDBOX_STEP_DELAY", "0")
    monkeypatch.setenv("LABREC_SANDBOX_TOKEN", "unit-test-token-0123456789")
    app = hostapp.create()
    req = make_requisition()

    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        lab = FhirLabClient(
            "http://host/sandbox-lab/fhir",
            timeout=httpx.Timeout(5.0),
            transport=transport,
            bearer_token="unit-test-token-0123456789",
        )
        try:
            outcome = await lab.submit(req)
            status = await lab.fetch_status(req.order_id)
        finally:
            await lab.aclose()

    assert isinstance(outcome, Accepted)
    assert status is not None and status.lab_order_id == outcome.lab_order_id
