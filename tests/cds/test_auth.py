"""The JWT matrix with the spec's own key material (hl7-cds-hooks/index.md), CORS, and logs.

The EHR is registered with a JWKS URL served by a real HTTP server on loopback, so key fetching,
caching and refresh are exercised over the network edge; a second server plays an attacker's
``jku`` and must never be contacted.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.cds.auth import AuthFailure, CdsAuthenticator
from service.cds.clients import ClientRegistry
from service.cds.jwks import JwksCache
from service.persistence.cds import cds_client_by_iss, upsert_cds_client
from service.persistence.organisations import create_organisation
from tests.cds.conftest import Cds
from tests.cds.support import (
    SPEC_ISS,
    SPEC_JKU,
    Ehr,
    FakeServer,
    Route,
    fake_server,
    full_prefetch,
    hook_request,
    new_ec_key,
    register_ehr,
    spec_example_token,
    spec_private_jwk,
    spec_public_jwks,
)
from tests.conftest import make_settings
from tests.support.app import running_app

SERVICE = "/cds-services/labrec-order-select"


@pytest.fixture
def jwks_server() -> Iterator[FakeServer]:
    with fake_server() as server:
        server.routes["/jwks.json"] = Route(
            body=spec_public_jwks(), content_type="application/json"
        )
        yield server


@pytest.fixture
async def spec_cds(database_url: str, jwks_server: FakeServer) -> AsyncIterator[Cds]:
    """An EHR that signs with the spec's example private key (kid example-kid)."""
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        private = jwt.PyJWK(spec_private_jwk()).key
        ehr = await register_ehr(
            container,
            iss=SPEC_ISS,
            kid="example-kid",
            private_key=private,
            public_jwk=spec_public_jwks()["keys"][0],
            jwks_url=jwks_server.base_url + "/jwks.json",
            origins=("https://ehr.example.org",),
        )
        yield Cds(client, container, ehr)


async def _post(cds: Cds, token: str | None, path: str = SERVICE) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return await cds.client.post(path, json=hook_request(prefetch=full_prefetch()), headers=headers)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(ehr: Ehr, path: str = SERVICE) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ehr.iss,
        "aud": ehr.base_url + path,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }


async def test_a_fresh_token_from_the_spec_key_is_accepted_everywhere(spec_cds: Cds) -> None:
    ehr = spec_cds.ehr
    assert (await _post(spec_cds, ehr.token(SERVICE))).status_code == 200
    discovery = await spec_cds.client.get("/cds-services", headers=ehr.headers("/cds-services"))
    assert discovery.status_code == 200
    feedback_path = SERVICE + "/feedback"
    feedback = await spec_cds.client.post(
        feedback_path, json={"feedback": []}, headers=ehr.headers(feedback_path)
    )
    assert feedback.status_code == 200
    # Some clients reuse the service URL as aud for feedback; accepted (jti is single-use anyway).
    reused = await spec_cds.client.post(
        feedback_path, json={"feedback": []}, headers=ehr.headers(SERVICE)
    )
    assert reused.status_code == 200


def _rejections(ehr: Ehr, evil_jku: str) -> dict[str, str | None]:
    other_key, _ = new_ec_key()
    public_pem = spec_public_pem()
    claims = _claims(ehr)
    header_none = _b64({"alg": "none", "typ": "JWT", "kid": "example-kid"})
    tampered = ehr.token(SERVICE).split(".")
    tampered[1] = _b64({**claims, "iss": ehr.iss, "jti": "tampered"})
    return {
        "missing": None,
        "spec-example-token-expired": spec_example_token(),
        "expired": ehr.token(SERVICE, exp=int(time.time()) - 3600, iat=int(time.time()) - 3900),
        "wrong-aud": ehr.token(SERVICE, aud="https://cds.example.org/cds-services/some-service"),
        "aud-of-another-service": ehr.token("/cds-services/labrec-order-sign"),
        "aud-of-discovery": ehr.token("/cds-services"),
        "unknown-kid": ehr.token(SERVICE, header={"kid": "rotated-away"}),
        "no-kid": ehr.token(SERVICE, header={"kid": None}),
        "bad-signature": jwt.encode(
            claims, other_key, algorithm="ES384", headers={"kid": "example-kid", "jku": ehr.jku}
        ),
        "tampered-payload": ".".join(tampered),
        "hs256-with-public-key": _forge_hs256(claims, public_pem),
        "alg-none": f"{header_none}.{_b64(claims)}.",
        "jku-not-allow-listed": ehr.token(SERVICE, header={"jku": evil_jku}),
        "unknown-iss": ehr.token(SERVICE, iss="https://evil.example.org/"),
        "no-jti": ehr.token(SERVICE, jti=None),
        "no-iat": ehr.token(SERVICE, iat=None),
        "no-exp": ehr.token(SERVICE, exp=None),
        "typ-not-jwt": ehr.token(SERVICE, header={"typ": "at+jwt"}),
        "iat-in-the-future": ehr.token(SERVICE, iat=int(time.time()) + 3600),
        "garbage": "not.a.jwt",
    }


def spec_public_pem() -> bytes:
    key = jwt.PyJWK(spec_public_jwks()["keys"][0]).key
    return bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _forge_hs256(claims: dict[str, Any], secret: bytes) -> str:
    """The classic key-confusion forgery, built by hand (PyJWT refuses PEM HMAC secrets)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'example-kid'})}.{_b64(claims)}"
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_every_bad_token_is_the_same_generic_401(
    spec_cds: Cds, jwks_server: FakeServer
) -> None:
    with fake_server() as evil:
        evil.routes["/jwks.json"] = Route(body=spec_public_jwks(), content_type="application/json")
        cases = _rejections(spec_cds.ehr, evil.base_url + "/jwks.json")
        bodies = set()
        for name, token in cases.items():
            response = await _post(spec_cds, token)
            assert response.status_code == 401, (name, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            bodies.add(response.content)
        assert evil.requests == [], "a non-allow-listed jku was fetched"
    assert len(bodies) == 1, "401 bodies must not reveal the reason"
    assert b"expired" not in bodies.pop()


async def test_a_replayed_jti_is_refused(spec_cds: Cds) -> None:
    token = spec_cds.ehr.token(SERVICE)
    assert (await _post(spec_cds, token)).status_code == 200
    assert (await _post(spec_cds, token)).status_code == 401
    path = "/cds-services"
    same_jti = spec_cds.ehr.token(path, jti="fixed-jti")
    assert (
        await spec_cds.client.get(path, headers={"Authorization": f"Bearer {same_jti}"})
    ).status_code == 200
    again = spec_cds.ehr.token(SERVICE, jti="fixed-jti")
    assert (await _post(spec_cds, again)).status_code == 401


async def test_jwks_is_cached_and_refreshed_once_on_an_unknown_kid(
    spec_cds: Cds, jwks_server: FakeServer
) -> None:
    ehr = spec_cds.ehr
    for _ in range(3):
        assert (await _post(spec_cds, ehr.token(SERVICE))).status_code == 200
    assert jwks_server.hits("/jwks.json") == 1
    assert (await _post(spec_cds, ehr.token(SERVICE, header={"kid": "new-1"}))).status_code == 401
    assert jwks_server.hits("/jwks.json") == 2  # refreshed once for the unknown kid
    assert (await _post(spec_cds, ehr.token(SERVICE, header={"kid": "new-2"}))).status_code == 401
    assert jwks_server.hits("/jwks.json") == 2  # not again within the refresh interval


async def test_other_algorithms_and_key_types(cds: Cds) -> None:
    container = cds.container
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ehr = await register_ehr(container, private_key=rsa_key, public_jwk=rsa_jwk, kid="rsa")
    async with container.sessions() as session, session.begin():  # RS384 key, no alg member
        row = await cds_client_by_iss(session, ehr.iss)
        assert row is not None
        row.jwks = {"keys": [{**rsa_jwk, "kid": "rsa", "use": "sig"}]}
    for alg, expected in (("RS384", 200), ("RS256", 200), ("PS256", 401), ("ES384", 401)):
        ehr.alg = alg
        token = (
            ehr.token(SERVICE)
            if alg != "ES384"
            else jwt.encode(
                _claims(ehr),
                ec.generate_private_key(ec.SECP384R1()),
                algorithm="ES384",
                headers={"kid": "rsa"},
            )
        )
        status = (await _post(cds, token)).status_code
        assert status == expected, alg


async def test_the_spec_example_token_fails_only_because_it_expired(database_url: str) -> None:
    """Unit level: with the spec's issuer, jku and JWKS registered, the reason is expiry."""
    settings = make_settings(database_url)
    async with running_app(settings, run_worker=False) as (_client, container):
        async with container.sessions() as session, session.begin():
            org = await create_organisation(session, "spec-org", dt.datetime.now(dt.UTC))
            await upsert_cds_client(
                session,
                organisation_id=org.id,
                iss=SPEC_ISS,
                jwks_url=SPEC_JKU,
                jwks=None,
                origins=(),
                now=dt.datetime.now(dt.UTC),
            )
        fetched: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            fetched.append(str(request.url))
            return httpx.Response(200, json=spec_public_jwks())

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            authenticator = CdsAuthenticator(
                container.sessions, ClientRegistry(container.sessions), JwksCache(http)
            )
            audience = ["https://cds.example.org/cds-services/some-service"]
            with pytest.raises(AuthFailure) as failure:
                await authenticator.verify(f"Bearer {spec_example_token()}", audience)
            assert failure.value.reason == "expired"
            assert fetched == [SPEC_JKU]
            with pytest.raises(AuthFailure) as other:
                await authenticator.verify(f"Bearer {spec_example_token()}", ["https://x/y"])
            assert other.value.reason == "expired"  # exp is checked before aud


async def test_tokens_and_access_tokens_never_reach_the_logs(
    spec_cds: Cds, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = spec_cds.ehr.token(SERVICE)
    bad = spec_cds.ehr.token(SERVICE, aud="https://elsewhere.example.org")
    body = hook_request(fhir_server="https://fhir.example.org/r4", access_token="sekrit-fhir-tok")
    body["prefetch"] = full_prefetch()
    for token in (good, bad, spec_example_token()):
        await spec_cds.client.post(SERVICE, json=body, headers={"Authorization": f"Bearer {token}"})
    assert caplog.records, "expected some log records (e.g. the refused tokens)"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (good, bad, spec_example_token(), "sekrit-fhir-tok"):
        assert secret not in logged
        assert secret.split(".")[-1] not in logged


async def test_cors_for_registered_browser_origins_only(spec_cds: Cds) -> None:
    client = spec_cds.client
    preflight = {
        "Origin": "https://ehr.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    for path in ("/cds-services", SERVICE, SERVICE + "/feedback"):
        allowed = await client.options(path, headers=preflight)
        assert allowed.status_code in (200, 204)
        assert allowed.headers["access-control-allow-origin"] == "https://ehr.example.org"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "Authorization" in allowed.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in allowed.headers
    other = await client.options(SERVICE, headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    response = await client.post(
        SERVICE,
        json=hook_request(prefetch=full_prefetch()),
        headers={**spec_cds.ehr.headers(SERVICE), "Origin": "https://ehr.example.org"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://ehr.example.org"
    unauthorised = await client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert unauthorised.status_code == 401
    assert "access-control-allow-origin" not in unauthorised.headers
    rest = await client.options("/v1/recommendations", headers=preflight)
    assert "access-control-allow-origin" not in rest.headers
