"""The app with one registered EHR, on SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from service.container import Container
from tests.cds.support import SERVICE_FOR, Ehr, register_ehr
from tests.conftest import make_settings
from tests.support.app import running_app


@dataclass
class Cds:
    client: httpx.AsyncClient
    container: Container
    ehr: Ehr

    async def call(
        self, body: dict[str, Any], *, service: str | None = None, ehr: Ehr | None = None
    ) -> httpx.Response:
        service = service or SERVICE_FOR[body["hook"]]
        path = f"/cds-services/{service}"
        return await self.client.post(path, json=body, headers=(ehr or self.ehr).headers(path))

    async def feedback(
        self, service: str, body: dict[str, Any], *, ehr: Ehr | None = None
    ) -> httpx.Response:
        path = f"/cds-services/{service}/feedback"
        return await self.client.post(path, json=body, headers=(ehr or self.ehr).headers(path))


@pytest.fixture
async def cds(database_url: str) -> AsyncIterator[Cds]:
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        yield Cds(client, container, await register_ehr(container))
