"""The app factory: one place that wires settings, the container, routes, errors and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from service.api.admin import ApiKeyController, AuditController
from service.api.catalog import CatalogController
from service.api.deps import principal_of, require_api_key
from service.api.health import live, ready
from service.api.lab_events import LabEventController
from service.api.orders import OrderController
from service.api.problems import EXCEPTION_HANDLERS
from service.api.recommendations import RecommendationController
from service.api.request import LabrecRequest, reject_control_characters
from service.api.rule_feedback import RuleFeedbackController
from service.cds.plugin import CdsHooksPlugin
from service.container import SANDBOX_MOUNT, build_container
from service.labs.sandbox import sandbox_mount
from service.labs.sandbox_config import SandboxConfig
from service.logs import configure_logging, request_context_middleware
from service.persistence.bootstrap import ensure_demo_organisation
from service.persistence.database import migrate_async
from service.settings import Settings, load_settings
from service.ui.router import ui_handlers
from service.ui.templating import ui_template_config
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
) -> Litestar:
    """Build the ASGI app. ``run_worker`` overrides ``LABREC_DISPATCH_IN_PROCESS`` (tests)."""
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(settings.log_level)
    container = build_container(settings, clock, lab_transport)
    in_process = settings.dispatch_in_process if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.database_url.startswith("sqlite"):
            await migrate_async(settings.database_url)
        if settings.demo:
            key = await ensure_demo_organisation(container.sessions, clock())
            if key is not None:
                print(
                    f"labrec demo organisation created; its API key (shown once):\n{key}",
                    flush=True,
                )
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
    if container.uses_builtin_sandbox:
        sandbox = sandbox_mount(
            SANDBOX_MOUNT,
            SandboxConfig(
                webhook_url=settings.public_url.rstrip("/") + "/v1/lab-events",
                webhook_secret=container.webhook_secret,
                step_delay=settings.sandbox_step_seconds,
            ),
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
            render_plugins=[],
            path="/schema",
        ),
        logging_config=None,  # ours (service/logs.py) never logs headers or bodies
        debug=False,
    )
    app.state.container = container
    return app


def app_from_env() -> Litestar:
    """Factory for granian: ``granian --interface asgi --factory service.app:app_from_env``."""
    return create_app()
