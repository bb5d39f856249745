"""The process-wide objects every face uses, built once by the app factory or the CLI."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from service.labs.client import FhirLabClient
from service.labs.webhooks import new_secret, validate_secret
from service.persistence.database import create_engine, session_factory
from service.persistence.key_cache import ApiKeyCache
from service.rate_limit import TokenBuckets
from service.settings import Settings
from service.usecases.admin import AdminService
from service.usecases.clock import Clock, utc_now
from service.usecases.orders import OrderService
from service.usecases.recommendations import RecommendationService


@dataclass(slots=True)
class Container:
    settings: Settings
    catalog: Catalog
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    recommendations: RecommendationService
    orders: OrderService
    admin: AdminService
    lab: FhirLabClient
    #: Standard Webhooks secret lab events are verified with (generated per process in sandbox mode)
    webhook_secret: str
    api_rate_limit: TokenBuckets
    api_keys: ApiKeyCache

    @property
    def uses_builtin_sandbox(self) -> bool:
        return self.settings.lab_base_url is None

    async def aclose(self) -> None:
        await self.lab.aclose()
        await self.engine.dispose()


SANDBOX_MOUNT = "/sandbox-lab/fhir"


def build_container(
    settings: Settings,
    clock: Clock = utc_now,
    lab_transport: httpx.AsyncBaseTransport | None = None,
) -> Container:
    """Build everything once; ``lab_transport`` lets tests put a mock at the true edge."""
    if settings.lab_webhook_secret:
        validate_secret(settings.lab_webhook_secret)
    catalog = load_catalog(settings.catalog_dir)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    lab_base_url = settings.lab_base_url or settings.public_url.rstrip("/") + SANDBOX_MOUNT
    lab = FhirLabClient(
        lab_base_url,
        timeout=httpx.Timeout(
            settings.lab_read_timeout, connect=settings.lab_connect_timeout, pool=5.0
        ),
        transport=lab_transport,
        max_connections=settings.lab_max_in_flight,
    )
    return Container(
        settings=settings,
        catalog=catalog,
        engine=engine,
        sessions=sessions,
        clock=clock,
        recommendations=RecommendationService(sessions, catalog, clock),
        orders=OrderService(
            sessions, catalog, clock, dt.timedelta(hours=settings.idempotency_ttl_hours)
        ),
        admin=AdminService(sessions, clock),
        lab=lab,
        webhook_secret=settings.lab_webhook_secret or new_secret(),
        api_rate_limit=TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst),
        api_keys=ApiKeyCache(sessions, settings.api_key_cache_seconds),
    )
