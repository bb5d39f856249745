"""Settings of the sandbox lab, from code or from ``LABREC_SANDBOX_*`` environment variables.

``WEBHOOK_URL`` (unset: no webhooks), ``WEBHOOK_SECRET`` (else ``LABREC_LAB_WEBHOOK_SECRET``),
``STEP_DELAY`` s (2; 0 = manual only), ``ERROR_RATE``, ``DROP_RATE``, ``TIMEOUT_RATE`` (0..1),
``LATENCY_MS``, ``SEED``, ``RETRY_AFTER`` (``mixed``: each 503 draws none, seconds or an
HTTP-date; or always ``none``, ``seconds`` = ``Retry-After: 1``, ``http-date``), ``HANG_SECONDS``
(30; a timeout fault processes the request, then holds the answer back this long),
``WEBHOOK_ATTEMPTS`` (5), ``WEBHOOK_BACKOFF`` s (0.5, doubling, capped at 10),
``WEBHOOK_TIMEOUT`` s (5), ``TOKEN`` (bearer token the ``_sandbox/*`` control routes require;
unset: open, so bind the standalone lab to loopback or a private network only); each prefixed
``LABREC_SANDBOX_``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Final, Literal, TypeVar

import msgspec

from service.labs.webhooks import validate_secret

T = TypeVar("T")

ENV_PREFIX: Final = "LABREC_SANDBOX_"

#: How an injected 503 states ``Retry-After``: drawn per reply (``mixed``) or always one form.
RetryAfterMode = Literal["mixed", "none", "seconds", "http-date"]
_RETRY_AFTER_MODES: Final = ("mixed", "none", "seconds", "http-date")


class FaultSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Injected misbehaviour; rates are per FHIR request, drawn from a RNG seeded with ``seed``."""

    error_rate: float = 0.0
    latency_ms: int = 0
    drop_rate: float = 0.0
    timeout_rate: float = 0.0
    seed: int = 0
    retry_after: RetryAfterMode = "mixed"

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate", "timeout_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0 <= self.latency_ms <= 60_000:
            raise ValueError("latency_ms must be between 0 and 60000")


class SandboxConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``step_delay`` seconds between automatic status steps (0 = only manual ``advance``);
    ``hang_seconds`` is how long a timeout fault stalls (longer than any sane client timeout).
    """

    webhook_url: str | None = None
    webhook_secret: str | None = None
    step_delay: float = 2.0
    faults: FaultSettings = FaultSettings()
    hang_seconds: float = 30.0
    webhook_attempts: int = 5
    webhook_backoff: float = 0.5
    webhook_timeout: float = 5.0
    #: Bearer token required on ``_sandbox/*`` (faults, orders, advance); None leaves them open.
    control_token: str | None = None

    def __post_init__(self) -> None:
        if self.webhook_url is not None:
            if not self.webhook_url.startswith(("http://", "https://")):
                raise ValueError("webhook_url must be an http(s) URL")
            if not self.webhook_secret:
                raise ValueError("webhook_secret is required when webhook_url is set")
        if self.webhook_secret is not None:
            validate_secret(self.webhook_secret)
        if self.step_delay < 0 or self.hang_seconds < 0 or self.webhook_backoff < 0:
            raise ValueError("delays must not be negative")
        if self.webhook_attempts < 1 or self.webhook_timeout <= 0:
            raise ValueError("webhook_attempts must be >= 1 and webhook_timeout > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """Read ``LABREC_SANDBOX_*``; the secret falls back to ``LABREC_LAB_WEBHOOK_SECRET`` so a
        sandbox started next to labrec signs with the secret labrec verifies with.
        """
        env = os.environ if environ is None else environ

        def get(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(ENV_PREFIX + name, "").strip()
            if not raw:
                return default
            try:
                return parse(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX}{name} is not a valid value") from None

        faults = FaultSettings(
            error_rate=get("ERROR_RATE", float, 0.0),
            latency_ms=get("LATENCY_MS", int, 0),
            drop_rate=get("DROP_RATE", float, 0.0),
            timeout_rate=get("TIMEOUT_RATE", float, 0.0),
            seed=get("SEED", int, 0),
            retry_after=get("RETRY_AFTER", _retry_after_mode, "mixed"),
        )
        secret = env.get(ENV_PREFIX + "WEBHOOK_SECRET") or env.get("LABREC_LAB_WEBHOOK_SECRET")
        return cls(
            webhook_url=get("WEBHOOK_URL", str, None),
            webhook_secret=secret or None,
            step_delay=get("STEP_DELAY", float, 2.0),
            faults=faults,
            hang_seconds=get("HANG_SECONDS", float, 30.0),
            webhook_attempts=get("WEBHOOK_ATTEMPTS", int, 5),
            webhook_backoff=get("WEBHOOK_BACKOFF", float, 0.5),
            webhook_timeout=get("WEBHOOK_TIMEOUT", float, 5.0),
            control_token=get("TOKEN", str, None),
        )


def _retry_after_mode(raw: str) -> RetryAfterMode:
    if raw not in _RETRY_AFTER_MODES:
        raise ValueError(raw)
    return raw  # type: ignore[return-value]
