"""A stand-in for labrec's app that embeds the sandbox exactly as the main app should.

Served by granian in the mount test: ``tests.labs.hostapp:create`` (reads LABREC_SANDBOX_*; the
mount requires ``LABREC_SANDBOX_TOKEN`` on every route).
"""

from __future__ import annotations

from litestar import Litestar, get

from service.labs.sandbox import sandbox_mount
from service.labs.sandbox_config import SandboxConfig


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


def create() -> Litestar:
    config = SandboxConfig.from_env()
    assert config.control_token, "set LABREC_SANDBOX_TOKEN"
    sandbox = sandbox_mount("/sandbox-lab/fhir", config, token=config.control_token)
    return Litestar(route_handlers=[live, sandbox.handler], lifespan=[sandbox.lifespan])
