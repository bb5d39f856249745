"""CDS tokens live at most five minutes (issue 10, item 6).

``exp`` more than five minutes (plus leeway) after ``iat`` or after now is refused, absurd
``exp``/``iat`` values are the generic 401 (never a 500), and a refused token does not burn its
``jti``: a later valid token with the same id is still accepted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest

from service.cds.auth import (
    LEEWAY_SECONDS,
    LIFETIME_LEEWAY_SECONDS,
    MAX_LIFETIME_SECONDS,
    AuthFailure,
    CdsAuthenticator,
)
from service.cds.clients import ClientRegistry
from service.cds.jwks import JwksCache
from tests.cds.conftest import Cds
from tests.cds.support import full_prefetch, hook_request

SERVICE = "/cds-services/labrec-order-select"


def _absurd(now: int) -> dict[str, dict[str, Any]]:
    """Claim overrides that must each be refused, by name."""
    return {
        "exp-ten-minutes-after-now": {"exp": now + 600, "iat": now},
        "exp-just-over-the-now-bound": {
            "exp": now + MAX_LIFETIME_SECONDS + LEEWAY_SECONDS + 5,
            "iat": now + LEEWAY_SECONDS,
        },
        "lifetime-over-five-minutes-though-exp-is-near": {"exp": now + 120, "iat": now - 300},
        "exp-1e20": {"exp": 10**20, "iat": now},
        "exp-1e20-and-iat-1e20": {"exp": 10**20, "iat": 10**20 - 60},
        "exp-negative": {"exp": -(10**12), "iat": now},
        "exp-a-float": {"exp": now + 60.5, "iat": now},
        "exp-infinity": {"exp": float("inf"), "iat": now},
        "exp-nan": {"exp": float("nan"), "iat": now},
        "exp-a-string": {"exp": "soon", "iat": now},
        "exp-a-numeric-string": {"exp": str(now + 60), "iat": now},
        "exp-true": {"exp": True, "iat": now},
        "exp-an-object": {"exp": {"n": now + 60}, "iat": now},
        "iat-a-float": {"exp": now + 60, "iat": now + 0.5},
        "iat-a-string": {"exp": now + 60, "iat": "now"},
        "iat-very-negative": {"exp": now + 60, "iat": -(10**20)},
    }


async def _post(cds: Cds, token: str) -> httpx.Response:
    return await cds.client.post(
        SERVICE,
        json=hook_request(prefetch=full_prefetch()),
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_absurd_or_long_lived_tokens_are_401_and_do_not_burn_the_jti(cds: Cds) -> None:
    now = int(time.time())
    for name, claims in _absurd(now).items():
        token = cds.ehr.token(SERVICE, jti=f"jti-{name}", **claims)
        response = await _post(cds, token)
        assert response.status_code == 401, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), name
        # The same jti on a valid token still works: the refusal did not record it...
        valid = cds.ehr.token(SERVICE, jti=f"jti-{name}")
        assert (await _post(cds, valid)).status_code == 200, name
        # ...and now it is spent (the replay guard is live, so the line above proves something).
        assert (await _post(cds, cds.ehr.token(SERVICE, jti=f"jti-{name}"))).status_code == 401


async def test_five_minutes_and_the_leeway_are_accepted(cds: Cds) -> None:
    now = int(time.time())
    within = MAX_LIFETIME_SECONDS + LIFETIME_LEEWAY_SECONDS
    for claims in (
        {"exp": now + MAX_LIFETIME_SECONDS, "iat": now},  # the spec's recommendation
        {"exp": now + within, "iat": now},  # rounding / slow signing
        {"exp": now + 30, "iat": now - MAX_LIFETIME_SECONDS + 30},  # issued a while ago
        # An EHR clock 50 s ahead: iat in the future within the skew leeway, a 5-minute token.
        {"exp": now + 50 + MAX_LIFETIME_SECONDS, "iat": now + 50},
    ):
        response = await _post(cds, cds.ehr.token(SERVICE, **claims))
        assert response.status_code == 200, (claims, response.text)


async def test_the_refusal_reason_is_the_lifetime(
    cds: Cds, caplog: pytest.LogCaptureFixture
) -> None:
    """Unit level: the reason code (logs only) says the lifetime, not expiry or a crash."""
    async with httpx.AsyncClient() as http:
        authenticator = CdsAuthenticator(
            cds.container.sessions, ClientRegistry(cds.container.sessions), JwksCache(http)
        )
        audience = [cds.ehr.base_url + SERVICE]
        now = int(time.time())
        for claims in ({"exp": now + 3600, "iat": now}, {"exp": 10**20, "iat": now}):
            token = cds.ehr.token(SERVICE, **claims)
            with pytest.raises(AuthFailure) as failure:
                await authenticator.verify(f"Bearer {token}", audience)
            assert failure.value.reason == "lifetime", claims
        caplog.set_level(logging.INFO, logger="labrec.cds.auth")
        huge = cds.ehr.token(SERVICE, exp=10**20, iat=now)
        assert await authenticator.authenticate(f"Bearer {huge}", audience) is None
        assert [r.__dict__.get("reason") for r in caplog.records] == ["lifetime"]
