"""Latency of a CDS Hooks order-select call with full prefetch, in-process (not a test).

``python -m bench.cds_latency [--calls 500] [--database-url URL]`` builds the app with the same
factory ``labrec serve`` uses, registers an EHR, and sends ``--calls`` sequential order-select
calls for a ketamine draft order with every prefetch key filled (patient, 8 conditions, 5 active
medication orders, 50 lab Observations, 20 lab ServiceRequests) through ``httpx.ASGITransport``:
JWT verification, jti storage, translation, the recommendation use case (stored), card building
and issued-card storage are all inside the measured time; signing the JWT (the EHR's work) is not.
Prints p50/p95/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from service.app import create_app
from service.persistence.cds import upsert_cds_client
from service.persistence.database import migrate_async
from service.persistence.organisations import create_organisation
from service.settings import Settings

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
PATH = "/cds-services/labrec-order-select"


async def register_bench_ehr(container: Any, org_prefix: str) -> ec.EllipticCurvePrivateKey:
    """A new organisation with the bench EHR registered (P-384 key in a JWKS document);
    returns the key that signs its tokens (``sign_token``)."""
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    now = dt.datetime.now(dt.UTC)
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, f"{org_prefix}-{uuid.uuid4().hex[:6]}", now)
        await upsert_cds_client(
            session,
            organisation_id=org.id,
            iss=ISS,
            jwks_url=None,
            jwks={"keys": [{**public, "kid": "k1"}]},
            origins=(),
            now=now,
        )
    return key


def sign_token(key: ec.EllipticCurvePrivateKey, aud: str) -> str:
    """One single-use token; labrec accepts ``exp`` at most five minutes after ``iat``."""
    t = int(time.time())
    return jwt.encode(
        {"iss": ISS, "aud": aud, "iat": t, "exp": t + 280, "jti": uuid.uuid4().hex},
        key,
        algorithm="ES384",
        headers={"kid": "k1", "typ": "JWT"},
    )


ISS = "https://bench-ehr.example.org"
LAB_CODES = ["24325-3", "24323-8", "58410-2", "3016-3", "2951-2", "2160-0", "1742-6", "1920-8"]


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r} for r in resources],
    }


def request_body() -> dict[str, Any]:
    today = dt.date.today()
    draft = {
        "resourceType": "MedicationRequest",
        "id": "draft-ket",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "6130"}]},
        "subject": {"reference": "Patient/pat-1"},
        "dosageInstruction": [
            {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}}
        ],
    }
    conditions = [
        {
            "resourceType": "Condition",
            "id": f"c{i}",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": ICD, "code": code}]},
            "subject": {"reference": "Patient/pat-1"},
        }
        for i, code in enumerate(
            ["F33.2", "F41.1", "I10", "E55.9", "K21.9", "G47.00", "M54.5", "F43.10"]
        )
    ]
    meds = [
        {
            "resourceType": "MedicationRequest",
            "id": f"m{i}",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
            "subject": {"reference": "Patient/pat-1"},
            "authoredOn": (today - dt.timedelta(days=40 * i)).isoformat(),
        }
        for i, code in enumerate(["321988", "197361", "310798", "617312", "1049221"])
    ]
    labs = [
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": LAB_CODES[i % len(LAB_CODES)]}]},
            "subject": {"reference": "Patient/pat-1"},
            "effectiveDateTime": (today - dt.timedelta(days=7 * i)).isoformat(),
            "valueQuantity": {"value": 42, "unit": "U/L"},
        }
        for i in range(50)
    ]
    orders = [
        {
            "resourceType": "ServiceRequest",
            "id": f"s{i}",
            "status": "completed",
            "intent": "order",
            "code": {"coding": [{"system": LOINC, "code": LAB_CODES[i % len(LAB_CODES)]}]},
            "subject": {"reference": "Patient/pat-1"},
            "authoredOn": (today - dt.timedelta(days=30 + 11 * i)).isoformat(),
        }
        for i in range(20)
    ]
    return {
        "hook": "order-select",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/prac-1",
            "patientId": "pat-1",
            "selections": ["MedicationRequest/draft-ket"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": draft}],
            },
        },
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": "pat-1",
                "gender": "female",
                "birthDate": "1988-05-17",
            },
            "conditions": _bundle(conditions),
            "medications": _bundle(meds),
            "labs": _bundle(labs),
            "labOrders": _bundle(orders),
        },
    }


async def run(calls: int, database_url: str) -> dict[str, float]:
    settings = msgspec.convert(
        {
            "database_url": database_url,
            "demo": False,
            "sandbox": True,  # no lab is called (no dispatcher), but the app needs a choice
            "sandbox_token": "bench-sandbox-token-unused",  # set: nothing printed at start
            "dispatch_in_process": False,
            "log_level": "WARNING",
        },
        Settings,
    )
    await migrate_async(database_url)  # the app itself migrates SQLite only
    app = create_app(settings, configure_logs=False, run_worker=False, settle_heap=True)
    body = json.dumps(request_body()).encode()
    async with app.lifespan():
        container = app.state.container
        key = await register_bench_ehr(container, "bench")
        aud = settings.public_url.rstrip("/") + PATH
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            timings: list[float] = []
            for i in range(calls + 20):
                token = sign_token(key, aud)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                started = time.perf_counter()
                response = await client.post(PATH, content=body, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200 or len(response.json()["cards"]) != 1:
                    raise SystemExit(f"unexpected answer {response.status_code}: {response.text}")
                if i >= 20:  # warm-up excluded
                    timings.append(elapsed)
    timings.sort()
    return {
        "calls": float(len(timings)),
        "request_kb": len(body) / 1024,
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[int(0.95 * len(timings)) - 1],
        "p99_ms": timings[int(0.99 * len(timings)) - 1],
        "mean_ms": statistics.fmean(timings),
        "max_ms": timings[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        result = asyncio.run(run(args.calls, url))
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    print(
        f"order-select, full prefetch ({result['request_kb']:.0f} KiB), {backend}, "
        f"{int(result['calls'])} sequential calls in-process:\n"
        f"  p50 {result['p50_ms']:.1f} ms   p95 {result['p95_ms']:.1f} ms   "
        f"p99 {result['p99_ms']:.1f} ms   mean {result['mean_ms']:.1f} ms   "
        f"max {result['max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
