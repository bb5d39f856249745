"""The app factory: one place that wires settings, the container, routes, errors and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from service.api.admin import ApiKeyController, AuditController
from service.api.catalog import CatalogController
from service.api.deps import principal_of, require_api_key
from service.api.headers import response_headers
from service.api.health import live, ready
from service.api.lab_events import LabEventController
from service.api.orders import OrderController
from service.api.problems import EXCEPTION_HANDLERS
from service.api.recommendations import RecommendationController
from service.api.request import LabrecRequest, reject_control_characters
from service.api.rule_feedback import RuleFeedbackController
from service.cds.plugin import CdsHooksPlugin
from service.container import SANDBOX_MOUNT, Container, build_container
from service.heap import settle_after_startup
from service.labs.sandbox import sandbox_mount
from service.labs.sandbox_config import SandboxConfig
from service.logs import configure_logging, request_context_middleware
from service.persistence.bootstrap import ensure_demo_organisation
from service.persistence.database import migrate_async
from service.settings import Settings, check_lab_choice, load_settings
from service.ui.router import ui_handlers
from service.ui.templating import ui_template_config
from service.usecases.accounts import hash_password
from service.usecases.clock import Clock, utc_now
from service.worker import run_background

log = logging.getLogger("labrec.app")
VERSION = "0.1.0"


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utc_now,
    lab_transport: httpx.AsyncBaseTransport | None = None,
    run_worker: bool | None = None,
    configure_logs: bool = True,
    settle_heap: bool = False,
) -> Litestar:
    """Build the ASGI app. ``run_worker`` overrides ``LABREC_DISPATCH_IN_PROCESS`` (tests);
    ``settle_heap`` freezes the start-up heap (``service/heap.py``), for server processes."""
    settings = settings or load_settings()
    check_lab_choice(settings)  # no lab and no explicit sandbox: refuse (SettingsError)
    if configure_logs:
        configure_logging(settings.log_level)
    container = build_container(settings, clock, lab_transport)
    in_process = settings.dispatch_in_process if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.database_url.startswith("sqlite"):
            await migrate_async(settings.database_url)
        if settings.demo:
            await _create_demo(container, settings)
        with contextlib.suppress(Exception):  # no database yet: read when first needed
            await container.api_keys.load_prefixes()  # for over-budget addresses (api/deps.py)
        if container.sandbox_token is not None and settings.sandbox_token is None:
            # `labrec serve` generates and prints the token itself (one for all its workers).
            print(f"labrec sandbox lab token (shown once): {container.sandbox_token}", flush=True)
        if settle_heap:
            settle_after_startup()
        stop = asyncio.Event()
        background = asyncio.create_task(run_background(container, stop)) if in_process else None
        try:
            yield
        finally:
            stop.set()
            if background is not None:
                await background
            await container.aclose()

    v1 = Router(
        path="/",
        route_handlers=[
            RecommendationController,
            CatalogController,
            OrderController,
            RuleFeedbackController,
            ApiKeyController,
            AuditController,
        ],
        guards=[require_api_key],
        dependencies={"principal": Provide(principal_of)},
        security=[{"ApiKey": []}],
    )
    handlers: list[Any] = [v1, LabEventController, live, ready]
    handlers.extend(ui_handlers())  # /ui pages, /ui/static, and / -> /ui/
    lifespans: list[Any] = [lifespan]
    if container.sandbox_token is not None:
        sandbox = sandbox_mount(
            SANDBOX_MOUNT,
            SandboxConfig(
                webhook_url=settings.public_url.rstrip("/") + "/v1/lab-events",
                webhook_secret=container.webhook_secret,
                step_delay=settings.sandbox_step_seconds,
            ),
            token=container.sandbox_token,
        )
        handlers.append(sandbox.handler)
        lifespans.append(sandbox.lifespan)
    app = Litestar(
        route_handlers=handlers,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        template_config=ui_template_config(),
        lifespan=lifespans,
        plugins=[CdsHooksPlugin(settings)],  # /cds-services (service/cds/)
        middleware=[request_context_middleware, reject_control_characters],
        request_class=LabrecRequest,  # refuses over-deep JSON bodies on every face
        before_send=[response_headers],  # no-store on /v1 and CDS, no Granian banner
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="labrec",
            version=VERSION,
            description="Lab-order recommendations for ketamine / esketamine therapy practices, "
            "and reliable hand-off of orders to an external FHIR R4 lab. Decision support for "
            "licensed practitioners; never a diagnosis.",
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    )
                }
            ),
            # The JSON document only: no HTML documentation pages (swagger, redoc, elements,
            # rapidoc) loading scripts from public CDNs on the practitioner UI's origin.
            render_plugins=[JsonRenderPlugin()],
            path="/schema",
        ),
        logging_config=None,  # ours (service/logs.py) never logs headers or bodies
        debug=False,
    )
    app.state.container = container
    return app


async def _create_demo(container: Container, settings: Settings) -> None:
    """The demo path on an empty database: print the admin key and a UI sign-in, once."""
    password = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(hash_password, password)
    access = await ensure_demo_organisation(container.sessions, container.clock(), password_hash)
    if access is None:
        return
    ui = settings.public_url.rstrip("/") + "/ui/"
    print(
        "labrec demo organisation created (shown once, keep them):\n"
        f"  practitioner sign-in at {ui}: email {access.email} password {password}\n"
        f"  admin API key (X-API-Key):\n{access.api_key}",
        flush=True,
    )


def app_from_env() -> Litestar:
    """Factory for granian: ``granian --interface asgi --factory service.app:app_from_env``."""
    return create_app(settle_heap=True)
