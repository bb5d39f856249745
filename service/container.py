"""The process-wide objects every face uses, built once by the app factory or the CLI."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from service.labs.client import FhirLabClient
from service.labs.webhooks import new_secret, validate_secret
from service.persistence.database import create_engine, session_factory
from service.persistence.key_cache import ApiKeyCache
from service.persistence.refusals import RefusalLog
from service.rate_limit import TokenBuckets
from service.settings import Settings, uses_sandbox
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
    #: Refused credentials per client address: a budget (429 beyond it, before any database
    #: work) and their aggregated audit rows.
    refusal_limit: TokenBuckets
    refusals: RefusalLog

    #: Bearer token the built-in sandbox lab requires on every route (None: no sandbox mounted)
    sandbox_token: str | None = None

    @property
    def uses_builtin_sandbox(self) -> bool:
        return self.sandbox_token is not None

    async def aclose(self) -> None:
        await self.refusals.aclose()
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
    sandbox_token = (
        (settings.sandbox_token or secrets.token_urlsafe(32)) if uses_sandbox(settings) else None
    )
    lab_base_url = settings.lab_base_url or settings.public_url.rstrip("/") + SANDBOX_MOUNT
    lab = FhirLabClient(
        lab_base_url,
        timeout=httpx.Timeout(
            settings.lab_read_timeout, connect=settings.lab_connect_timeout, pool=5.0
        ),
        transport=lab_transport,
        bearer_token=sandbox_token or settings.lab_bearer_token,
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
        sandbox_token=sandbox_token,
        refusal_limit=TokenBuckets(
            settings.auth_refusals_per_minute / 60, settings.auth_refusals_per_minute
        ),
        refusals=RefusalLog(sessions, clock),
    )
