"""CDS test helpers: the shared fixtures folder, EHR keys and tokens, hook-request builders and a
small HTTP server on loopback (a fake FHIR server or JWKS endpoint at the true network edge).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from service.cds.egress import normalise_base_url
from service.persistence.cds import upsert_cds_client
from service.persistence.organisations import create_api_key, create_organisation
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "cds-hooks"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
KETAMINE_RXCUI = "6130"
ESKETAMINE_RXCUI = "2201623"


def fixtures_dir() -> Path:
    """The shared CDS Hooks fixtures; skip when absent locally, fail in CI (CI=true)."""
    if not FIXTURES.is_dir():
        message = (
            f"CDS Hooks fixtures not found at {FIXTURES} (they live in ../shared beside the "
            "checkout; a fresh clone has none)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must provide them, these tests may not be skipped")
        pytest.skip(message)
    return FIXTURES


def fixture_json(relative: str) -> Any:
    return json.loads((fixtures_dir() / relative).read_text(encoding="utf-8"))


# --- the spec's example key pair and token (hl7-cds-hooks/index.md, "Security and Safety") ---


def _spec_text() -> str:
    return (fixtures_dir() / "hl7-cds-hooks" / "index.md").read_text(encoding="utf-8")


def _json_block_after(text: str, heading: str) -> dict[str, Any]:
    start = text.index(heading)
    block = re.search(r"```json\s*(\{.*?\})\s*```", text[start:], re.S)
    assert block is not None, heading
    parsed: dict[str, Any] = json.loads(block.group(1))
    return parsed


def spec_public_jwks() -> dict[str, Any]:
    return _json_block_after(_spec_text(), "JSON Web Key Set (public key)")


def spec_private_jwk() -> dict[str, Any]:
    return _json_block_after(_spec_text(), "JSON Web Key (private key)")


def spec_example_token() -> str:
    match = re.search(r"Authorization: Bearer (\S+)", _spec_text())
    assert match is not None
    return match.group(1)


SPEC_ISS = "https://fhir-ehr.example.com/"
SPEC_JKU = "https://fhir-ehr.example.com/jwk_uri"


# --- EHR identities -----------------------------------------------------------------------


@dataclass
class Ehr:
    """A registered CDS client that signs tokens for the test's calls."""

    iss: str
    kid: str
    private_key: Any
    base_url: str
    organisation_id: str
    api_key: str
    jku: str | None = None
    alg: str = "ES384"

    def token(self, path: str, **overrides: Any) -> str:
        """A valid token for ``{base}{path}``; ``overrides`` change or drop (None) claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "aud": self.base_url + path,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        header: dict[str, Any] = {"kid": self.kid, "typ": "JWT"}
        if self.jku:
            header["jku"] = self.jku
        for name, value in overrides.pop("header", {}).items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers=header)

    def headers(self, path: str, **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path, **overrides)}"}


def new_ec_key() -> tuple[Any, dict[str, Any]]:
    """A fresh P-384 key and its public JWK (kid set by the caller)."""
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return key, public


async def register_ehr(
    container: Any,
    *,
    iss: str | None = None,
    kid: str = "test-kid",
    private_key: Any = None,
    public_jwk: dict[str, Any] | None = None,
    jwks_url: str | None = None,
    origins: tuple[str, ...] = (),
    org_name: str | None = None,
    fhir_servers: tuple[str, ...] = (),
) -> Ehr:
    """An organisation with an API key and a CDS client (JWKS stored, or at ``jwks_url``),
    allowed to name the ``fhir_servers`` base URLs as fhirServer."""
    if private_key is None:
        private_key, public_jwk = new_ec_key()
    assert public_jwk is not None
    jwk = {**public_jwk, "kid": kid, "use": "sig", "alg": "ES384"}
    iss = iss or f"https://ehr-{uuid.uuid4().hex[:8]}.example.org"
    now = dt.datetime.now(dt.UTC)
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, org_name or f"org-{uuid.uuid4().hex[:8]}", now)
        _, api_key = await create_api_key(session, org.id, now)
        await upsert_cds_client(
            session,
            organisation_id=org.id,
            iss=iss,
            jwks_url=jwks_url,
            jwks=None if jwks_url else {"keys": [jwk]},
            origins=origins,
            now=now,
            fhir_servers=[normalise_base_url(url) for url in fhir_servers],
        )
    return Ehr(
        iss=iss,
        kid=kid,
        private_key=private_key,
        base_url=container.settings.public_url.rstrip("/"),
        organisation_id=org.id,
        api_key=api_key,
        jku=jwks_url,
    )


# --- hook requests --------------------------------------------------------------------------


def medication_request(
    code: str = KETAMINE_RXCUI,
    *,
    rid: str = "draft-1",
    status: str = "draft",
    route: tuple[str, str] | None = (SNOMED, "47625008"),
    authored: str | None = None,
    system: str = RXNORM,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/pat-1"},
    }
    if route is not None:
        resource["dosageInstruction"] = [
            {"route": {"coding": [{"system": route[0], "code": route[1]}]}}
        ]
    if authored is not None:
        resource["authoredOn"] = authored
    return resource


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
    }
    if resources:
        bundle["entry"] = [{"resource": r} for r in resources]
    return bundle


def full_prefetch(
    *,
    gender: str = "female",
    birth_date: str = "1990-04-02",
    conditions: tuple[str, ...] = ("F33.2",),
    medications: tuple[dict[str, Any], ...] = (),
    labs: tuple[tuple[str, str], ...] = (),
    lab_orders: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    return {
        "patient": {
            "resourceType": "Patient",
            "id": "pat-1",
            "gender": gender,
            "birthDate": birth_date,
        },
        "conditions": searchset(
            *(
                {
                    "resourceType": "Condition",
                    "id": f"c{i}",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/"
                                "condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {"coding": [{"system": ICD10CM, "code": code}]},
                    "subject": {"reference": "Patient/pat-1"},
                }
                for i, code in enumerate(conditions)
            )
        ),
        "medications": searchset(*medications),
        "labs": searchset(
            *(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "observation-category",
                                    "code": "laboratory",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": LOINC, "code": code}]},
                    "subject": {"reference": "Patient/pat-1"},
                    "effectiveDateTime": when,
                }
                for i, (code, when) in enumerate(labs)
            )
        ),
        "labOrders": searchset(*lab_orders),
    }


def hook_request(
    hook: str = "order-select",
    *,
    drafts: tuple[dict[str, Any], ...] | None = None,
    prefetch: dict[str, Any] | None = None,
    selections: tuple[str, ...] | None = None,
    fhir_server: str | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/prac-1", "patientId": "pat-1"}
    if hook != "patient-view":
        drafts = drafts if drafts is not None else (medication_request(),)
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
        if hook == "order-select":
            context["selections"] = list(
                selections
                if selections is not None
                else [f"{d['resourceType']}/{d['id']}" for d in drafts]
            )
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if access_token is not None:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "labrec",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


SERVICE_FOR = {
    "order-select": "labrec-order-select",
    "order-sign": "labrec-order-sign",
    "patient-view": "labrec-patient-view",
}


# --- a tiny HTTP server on loopback ------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    content_type: str = "application/fhir+json"


@dataclass
class FakeServer:
    """Answers GETs from ``routes`` (path with query -> Route) and records every request."""

    base_url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def hits(self, prefix: str = "") -> int:
        return sum(1 for path, _ in self.requests if path.startswith(prefix))


@contextlib.contextmanager
def fake_server() -> Iterator[FakeServer]:
    state = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            route = state.routes.get(self.path) or state.routes.get(self.path.split("?")[0])
            if route is None:
                route = Route(404, {"resourceType": "OperationOutcome", "issue": []})
            if route.delay:
                time.sleep(route.delay)
            body = route.body if isinstance(route.body, bytes) else json.dumps(route.body).encode()
            try:
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
