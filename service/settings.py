"""Configuration: every ``LABREC_*`` environment variable, parsed once into ``Settings``."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from service.api.forwarded import parse_trusted_proxies
from service.catalog_loader import DEFAULT_CATALOG_DIR

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Typed settings; field ``x`` is read from ``LABREC_X``. The README lists every one."""

    database_url: str = "sqlite+aiosqlite:///labrec.db"
    catalog_dir: Path = DEFAULT_CATALOG_DIR
    #: External lab FHIR base URL. Unset, ``serve`` refuses to start unless the built-in sandbox
    #: lab is asked for explicitly (``sandbox`` or ``demo``): a missing setting never opens it.
    lab_base_url: str | None = None
    #: Standard Webhooks secret (``whsec_...``) shared with the lab; required with an external lab.
    lab_webhook_secret: str | None = None
    #: Sent as ``Authorization: Bearer`` to the external lab (e.g. a standalone ``labrec
    #: sandbox-lab`` with LABREC_SANDBOX_TOKEN); unset: no Authorization header.
    lab_bearer_token: str | None = None
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
    #: The demo path (``labrec serve --demo``): the built-in sandbox lab unless a lab is set, and on
    #: an empty database a demo organisation, admin API key and practitioner sign-in printed once.
    demo: bool = False
    #: Mount the built-in sandbox lab under ``/sandbox-lab/fhir`` (development and demos only).
    sandbox: bool = False
    #: Allow the built-in sandbox when serving on a non-loopback address (it is open to anyone
    #: holding its token; never in production).
    sandbox_allow_public: bool = False
    #: Bearer token for the built-in sandbox lab's routes; unset: random per start, printed once.
    sandbox_token: str | None = None
    sandbox_step_seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    log_level: str = "INFO"
    #: Requests per second each API key may make (token bucket, per process), and its burst.
    rate_limit_per_second: PositiveFloat = 50.0
    rate_limit_burst: PositiveFloat = 100.0
    #: Refused credentials (no, unknown or revoked API key) per client address and minute before
    #: that address gets 429 without any database work (also the burst), per process.
    auth_refusals_per_minute: PositiveFloat = 60.0
    #: Reverse proxies (IPs or CIDRs, comma-separated) whose ``X-Forwarded-For`` names the client
    #: for refusal budgets, the sign-in throttle and refusal audit rows; empty: the direct peer.
    trusted_proxies: str = ""
    #: Seconds a valid API key stays cached per process (0 = off): a revoked key works that long.
    api_key_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    #: CDS Hooks: hard time budget (seconds) for reads from an EHR's ``fhirServer`` per hook call.
    cds_fhir_timeout: PositiveFloat = 2.0
    #: CDS Hooks: accept ``http://`` fhirServer URLs (development only; production needs https).
    cds_fhir_allow_http: bool = False
    #: CDS Hooks: comma-separated fhirServer hosts that may resolve to private addresses
    #: (on-premise EHRs); every other fhirServer must resolve to public addresses only.
    cds_fhir_allow_private_hosts: str = ""
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
    if settings.lab_base_url and settings.sandbox:
        raise SettingsError(
            "LABREC_SANDBOX=true and LABREC_LAB_BASE_URL are both set; choose the real lab "
            "or the built-in sandbox"
        )
    try:
        parse_trusted_proxies(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"LABREC_TRUSTED_PROXIES: {exc}") from None
    if settings.sandbox_token is not None and len(settings.sandbox_token) < 16:
        raise SettingsError("LABREC_SANDBOX_TOKEN must have at least 16 characters")
    return settings


def uses_sandbox(settings: Settings) -> bool:
    """The built-in sandbox lab is mounted only when asked for: ``sandbox``, or ``demo`` without
    a real lab. A missing ``LABREC_LAB_BASE_URL`` alone never implies it."""
    return settings.lab_base_url is None and (settings.sandbox or settings.demo)


NO_LAB_MESSAGE = (
    "no lab configured: set LABREC_LAB_BASE_URL and LABREC_LAB_WEBHOOK_SECRET to hand orders to "
    "your lab, or ask for the built-in sandbox lab explicitly with LABREC_SANDBOX=true (or "
    "`labrec serve --demo` for the one-command demo); labrec never falls back to the sandbox"
)


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1 (brackets allowed); everything else counts as public."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_lab_choice(settings: Settings, bind_host: str | None = None) -> None:
    """Raise ``SettingsError`` unless a real lab or the sandbox is chosen, and the sandbox is
    reachable only on loopback (``bind_host`` and the public URL) unless explicitly forced."""
    if settings.lab_base_url is None and not uses_sandbox(settings):
        raise SettingsError(NO_LAB_MESSAGE)
    if not uses_sandbox(settings) or settings.sandbox_allow_public:
        return
    public_host = urlsplit(settings.public_url).hostname or ""
    for where, host in (("--host", bind_host), ("LABREC_PUBLIC_URL", public_host)):
        if host is not None and not is_loopback_host(host):
            raise SettingsError(
                f"the built-in sandbox lab is for loopback only, but {where} is {host!r}: anyone "
                "who reaches it could read and change lab orders. Serve on 127.0.0.1, configure "
                "a real lab (LABREC_LAB_BASE_URL), or force it with "
                "LABREC_SANDBOX_ALLOW_PUBLIC=true (never in production)"
            )
