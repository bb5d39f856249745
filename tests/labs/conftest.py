"""Loopback servers shared by the sandbox HTTP tests (started once per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.labs.webhooks import new_secret

from .servers import WebhookReceiver, granian

SANDBOX = "service.labs.sandbox:sandbox_app_from_env"


@pytest.fixture(scope="module")
def webhook_secret() -> str:
    return new_secret()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def sandbox_url(receiver: WebhookReceiver, webhook_secret: str) -> Iterator[str]:
    """The sandbox under granian, stepped by hand (no timer), webhooks to ``receiver``."""
    env = {
        "LABREC_SANDBOX_STEP_DELAY": "0",
        "LABREC_SANDBOX_WEBHOOK_URL": receiver.url,
        "LABREC_SANDBOX_WEBHOOK_SECRET": webhook_secret,
        "LABREC_SANDBOX_WEBHOOK_ATTEMPTS": "4",
        "LABREC_SANDBOX_WEBHOOK_BACKOFF": "0.05",
        "LABREC_SANDBOX_HANG_SECONDS": "5",
    }
    with granian(SANDBOX, env, "/_sandbox/stats") as base:
        yield base
