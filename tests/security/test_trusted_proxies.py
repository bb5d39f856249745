"""``LABREC_TRUSTED_PROXIES``: behind a reverse proxy, refusal budgets count per real client.

Without the setting ``X-Forwarded-For`` is ignored (anyone can send it); with the proxy listed,
the rightmost hop that is not a trusted proxy is the client. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.datastructures import Headers
from sqlalchemy import select

from service.api.forwarded import client_host, parse_trusted_proxies
from service.persistence.models import AuditRecord
from service.settings import SettingsError, load_settings
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import tenant

BUDGET = 60


class _Connection:
    def __init__(self, peer: str, forwarded: list[str]) -> None:
        self.client = type("Client", (), {"host": peer})()
        self.headers = Headers([(b"x-forwarded-for", v.encode()) for v in forwarded])


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ("", "10.0.0.1", ["203.0.113.5"], "10.0.0.1"),  # not configured: header ignored
        ("10.0.0.1", "198.51.100.7", ["203.0.113.5"], "198.51.100.7"),  # peer not a proxy
        ("10.0.0.1", "10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        (
            "10.0.0.0/8",
            "10.0.0.1",
            ["1.1.1.1, 203.0.113.5, 10.0.0.2"],
            "203.0.113.5",
        ),  # spoofed left
        ("10.0.0.0/8", "10.0.0.1", ["1.1.1.1", "203.0.113.5"], "203.0.113.5"),  # two headers
        ("10.0.0.1", "10.0.0.1", ["garbage"], "10.0.0.1"),  # malformed: the last trusted hop
        ("10.0.0.1", "10.0.0.1", [], "10.0.0.1"),
        ("::1, 10.0.0.1", "::1", ["2001:db8::5"], "2001:db8::5"),
    ],
)
def test_client_host(trusted: str, peer: str, forwarded: list[str], client: str) -> None:
    assert client_host(_Connection(peer, forwarded), trusted) == client  # type: ignore[arg-type]


def test_a_bad_entry_is_a_settings_error() -> None:
    assert len(parse_trusted_proxies("10.0.0.1, 192.168.0.0/16")) == 2
    with pytest.raises(SettingsError, match="LABREC_TRUSTED_PROXIES"):
        load_settings({"LABREC_TRUSTED_PROXIES": "10.0.0.1, proxy.local"})


async def _flood(client: Any, forwarded: str) -> None:
    for i in range(BUDGET + 5):
        await client.get(
            "/v1/orders", headers={"X-API-Key": f"lrk_guess{i}", "X-Forwarded-For": forwarded}
        )


async def test_budgets_are_per_forwarded_client_behind_a_trusted_proxy(database_url: str) -> None:
    settings = make_settings(database_url, trusted_proxies="127.0.0.1")
    async with running_app(settings, run_worker=False) as (client, container):
        await _flood(client, "203.0.113.5")
        flooded = {"X-API-Key": "lrk_other", "X-Forwarded-For": "203.0.113.5"}
        assert (await client.get("/v1/orders", headers=flooded)).status_code == 429
        other = {"X-API-Key": "lrk_other", "X-Forwarded-For": "203.0.113.6"}
        assert (await client.get("/v1/orders", headers=other)).status_code == 401
        await container.refusals.flush(everything=True)
        async with container.sessions() as session:
            rows = (
                await session.execute(
                    select(AuditRecord.object_id).where(AuditRecord.action == "auth.refused")
                )
            ).scalars()
            assert set(rows) == {"203.0.113.5", "203.0.113.6"}


async def test_forwarded_for_is_ignored_without_trusted_proxies(database_url: str) -> None:
    settings = make_settings(database_url)
    async with running_app(settings, run_worker=False) as (client, container):
        good = await tenant(container)
        await _flood(client, "203.0.113.5")
        # Changing the header does not buy a fresh budget: the peer is the client.
        other = {"X-API-Key": "lrk_other", "X-Forwarded-For": "203.0.113.6"}
        assert (await client.get("/v1/orders", headers=other)).status_code == 429
        # A valid key (prefix known) still works from the flooded address.
        assert (await client.get("/v1/orders", headers={"X-API-Key": good})).status_code == 200


async def test_sign_in_throttle_is_per_forwarded_client_behind_a_trusted_proxy(
    database_url: str,
) -> None:
    from tests.ui.helpers import make_user, sign_in

    settings = make_settings(database_url, trusted_proxies="127.0.0.1")
    async with running_app(settings, run_worker=False) as (client, container):
        _, email = await make_user(container)
        client.headers["X-Forwarded-For"] = "203.0.113.5"
        for i in range(20):
            await sign_in(client, f"guess{i}@clinic.test", "wrong password")
        assert (await sign_in(client, email)).status_code == 429  # that client is throttled
        client.headers["X-Forwarded-For"] = "203.0.113.6"
        signed = await sign_in(client, email)  # another client behind the same proxy is not
        assert signed.status_code in (302, 303), signed.status_code
