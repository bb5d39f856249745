"""Configuration: every ``LABREC_*`` environment variable, parsed once into ``Settings``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from service.catalog_loader import DEFAULT_CATALOG_DIR

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Typed settings; field ``x`` is read from ``LABREC_X``. The README lists every one."""

    database_url: str = "sqlite+aiosqlite:///labrec.db"
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    #: External lab FHIR base URL; unset means the built-in sandbox lab mounted in-process.
    lab_base_url: str | None = None
    #: Standard Webhooks secret (``whsec_...``) shared with the lab; required with an external lab.
    lab_webhook_secret: str | None = None
    #: This service's own base URL as clients reach it (CDS ``aud`` checks, sandbox webhooks).
    public_url: str = "http://127.0.0.1:8000"
    lab_connect_timeout: PositiveFloat = 3.0
    lab_read_timeout: PositiveFloat = 15.0
    dispatch_backoff_base: PositiveFloat = 2.0
    dispatch_backoff_max: PositiveFloat = 3600.0
    dispatch_max_attempts: PositiveInt = 15
    dispatch_lease_seconds: PositiveFloat = 60.0
    dispatch_poll_interval: PositiveFloat = 0.5
    #: Deliveries one dispatcher keeps in flight at once (claimed as slots free up).
    dispatch_concurrency: PositiveInt = 64
    #: Calls in flight to one lab connection at once (and its HTTP connection pool size).
    lab_max_in_flight: PositiveInt = 32
    #: Consecutive failed calls (timeouts, transport errors, 5xx/429) that back a lab off...
    lab_breaker_failures: PositiveInt = 10
    #: ...for this many seconds, after which one probe call decides whether it is back.
    lab_breaker_cooldown: PositiveFloat = 10.0
    #: Run the outbox dispatcher inside ``serve`` (turn off when running ``labrec worker``s).
    dispatch_in_process: bool = True
    reconcile_after_seconds: PositiveFloat = 900.0
    idempotency_ttl_hours: PositiveInt = 72
    max_body_bytes: PositiveInt = 262_144
    #: On an empty database, ``serve`` creates a demo organisation and prints its API key once.
    demo: bool = True
    sandbox_step_seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    log_level: str = "INFO"
    #: Requests per second each API key may make (token bucket, per process), and its burst.
    rate_limit_per_second: PositiveFloat = 50.0
    rate_limit_burst: PositiveFloat = 100.0
    #: Seconds a valid API key stays cached per process (0 = off): a revoked key works that long.
    api_key_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    #: CDS Hooks: hard time budget (seconds) for reads from an EHR's ``fhirServer`` per hook call.
    cds_fhir_timeout: PositiveFloat = 2.0
    #: CDS Hooks: accept ``http://`` fhirServer URLs (development only; production needs https).
    cds_fhir_allow_http: bool = False
    #: CDS Hooks: largest hook request accepted (prefetch bundles can be large).
    cds_max_body_bytes: PositiveInt = 2_097_152


def _paths(kind: type, value: Any) -> Any:
    """``LABREC_CATALOG_DIR`` and other ``Path`` settings arrive as strings."""
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used; the message names it."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``LABREC_*`` variables; unknown ``LABREC_`` names are an error (typos surface early)."""
    env = os.environ if environ is None else environ
    fields = set(Settings.__struct_fields__)
    raw: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("LABREC_"):
            continue
        name = key.removeprefix("LABREC_").lower()
        # LABREC_TEST_* belong to the tests, LABREC_SANDBOX_* to the standalone sandbox lab.
        if name not in fields and key.startswith(("LABREC_TEST_", "LABREC_SANDBOX_")):
            continue
        if name not in fields:
            raise SettingsError(f"{key} is not a labrec setting; see the README's configuration")
        raw[name] = value
    try:
        settings = msgspec.convert(raw, type=Settings, strict=False, dec_hook=_paths)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid configuration: {exc} (the field is LABREC_<NAME>)") from None
    if settings.lab_base_url and not settings.lab_webhook_secret:
        raise SettingsError("LABREC_LAB_WEBHOOK_SECRET is required when LABREC_LAB_BASE_URL is set")
    return settings
