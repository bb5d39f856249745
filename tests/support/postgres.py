"""Per-test PostgreSQL databases cloned from a migrated template (fast and isolated)."""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.engine import make_url


class PostgresDatabases:
    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._template = f"labrec_tpl_{uuid.uuid4().hex[:8]}"
        self._created: list[str] = []

    def url_for(self, name: str) -> str:
        return self._url.set(database=name).render_as_string(hide_password=False)

    async def _admin(self) -> asyncpg.Connection:
        url = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await asyncpg.connect(url)

    async def prepare_template(self) -> None:
        from service.persistence.database import migrate_async

        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{self._template}"')
        finally:
            await admin.close()
        self._created.append(self._template)
        await migrate_async(self.url_for(self._template))

    async def create_from_template(self, name: str) -> str:
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        finally:
            await admin.close()
        return self.url_for(name)

    async def drop(self, name: str) -> None:
        admin = await self._admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def drop_all(self) -> None:
        for name in self._created:
            await self.drop(name)
