"""CDS Hooks refusals share the per-address refusal budget; the issuer cache never lets a flood
of made-up issuers evict registered clients. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import jwt
from sqlalchemy import event

from service.cds.clients import _MAX_CACHED, ClientRegistry
from tests.cds.support import new_ec_key, register_ehr
from tests.conftest import make_settings
from tests.support.app import running_app

BUDGET = 60
DISCOVERY = "/cds-services"
_KEY, _ = new_ec_key()


def _bogus(i: int) -> dict[str, str]:
    token = jwt.encode(
        {"iss": f"https://made-up-{i}.example", "aud": "x", "jti": str(i)},
        _KEY,
        algorithm="ES384",
        headers={"kid": "k", "typ": "JWT"},
    )
    return {"Authorization": f"Bearer {token}"}


async def test_cds_refusals_are_limited_per_address_and_known_clients_still_work(
    database_url: str,
) -> None:
    settings = make_settings(database_url)
    async with running_app(settings, run_worker=False) as (client, container):
        ehr = await register_ehr(container)
        first = await client.get(DISCOVERY, headers=ehr.headers(DISCOVERY))
        assert first.status_code == 200, first.text  # this process now knows the issuer
        statuses = [
            (await client.get(DISCOVERY, headers=_bogus(i))).status_code for i in range(BUDGET + 5)
        ]
        assert statuses == [401] * BUDGET + [429] * 5
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        event.listen(container.engine.sync_engine, "before_cursor_execute", count)
        try:
            refused = await client.get(DISCOVERY, headers=_bogus(10_000))
        finally:
            event.remove(container.engine.sync_engine, "before_cursor_execute", count)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["status"] == 429 and "retry in" in refused.json()["detail"]
        assert statements == []  # over budget, an unknown issuer costs no database work
        # A registered EHR behind the same address keeps working.
        again = await client.get(DISCOVERY, headers=ehr.headers(DISCOVERY))
        assert again.status_code == 200, again.text
        await container.refusals.flush(everything=True)


async def test_unknown_issuers_never_evict_registered_clients(database_url: str) -> None:
    settings = make_settings(database_url)
    async with running_app(settings, run_worker=False) as (_client, container):
        ehr = await register_ehr(container)
        queries = 0

        def count(*_args: Any) -> None:
            nonlocal queries
            queries += 1

        registry = ClientRegistry(container.sessions, ttl=3600, negative_ttl=3600)
        assert await registry.by_iss(ehr.iss) is not None
        for i in range(_MAX_CACHED + 50):  # more made-up issuers than the cache holds
            assert await registry.by_iss(f"https://made-up-{i}.example") is None
        event.listen(container.engine.sync_engine, "before_cursor_execute", count)
        try:
            assert await registry.by_iss(ehr.iss) is not None  # still cached: no query
            # Unknown issuers are evicted one at a time (LRU), not all at once.
            assert await registry.by_iss(f"https://made-up-{_MAX_CACHED + 49}.example") is None
        finally:
            event.remove(container.engine.sync_engine, "before_cursor_execute", count)
        assert queries == 0
