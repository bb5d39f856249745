"""``labrec cds-client add``: register an EHR allowed to call the CDS Hooks services.

The issuer (``iss``) maps to exactly one organisation; its keys come from a JWKS URL (preferred:
it allows key rotation, and a token's ``jku`` must equal it) or from a JWK Set file read once at
registration. Running ``add`` again for the same issuer and organisation replaces keys, origins
and FHIR servers.

``--fhir-server`` lists the FHIR base URLs the EHR may name as ``fhirServer`` in a hook request;
labrec reads missing prefetch from nowhere else (see ``service.cds.egress``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.settings import Settings

_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def add_cds_client_parser(commands: Any) -> None:
    client = commands.add_parser("cds-client", help="EHRs allowed to call the CDS Hooks services")
    client_commands = client.add_subparsers(dest="cds_client_command", required=True)
    add = client_commands.add_parser("add", help="register (or update) an EHR by its JWT issuer")
    add.add_argument("--org", required=True, help="organisation name")
    add.add_argument("--iss", required=True, help="the EHR's JWT issuer, exactly as it signs it")
    keys = add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-url", help="the EHR's JWK Set URL (a token's jku must equal it)")
    keys.add_argument("--jwks-file", type=Path, help="a public JWK Set file, read once now")
    add.add_argument(
        "--origin",
        action="append",
        default=[],
        help="browser origin allowed by CORS, e.g. https://ehr.example.org (repeatable)",
    )
    add.add_argument(
        "--fhir-server",
        action="append",
        default=[],
        help="FHIR base URL the EHR may send as fhirServer, e.g. https://ehr.example.org/fhir/r4; "
        "its sub-paths match too (repeatable; none = labrec never reads from the EHR)",
    )


def run_cds_client(args: argparse.Namespace, settings: Settings) -> int:
    try:
        iss = _issuer(args.iss)
        jwks_url = _jwks_url(args.jwks_url) if args.jwks_url else None
        jwks = _jwks_file(args.jwks_file) if args.jwks_file else None
        origins = [_origin(o) for o in args.origin]
        fhir_servers = list(dict.fromkeys(_fhir_server(url) for url in args.fhir_server))
    except ValueError as exc:
        print(f"labrec: {exc}", file=sys.stderr)
        return 2
    if jwks_url is not None and urlsplit(jwks_url).scheme == "http":
        print(
            "labrec: warning: the JWKS URL is not https (acceptable for development only)",
            file=sys.stderr,
        )
    if any(url.startswith("http://") for url in fhir_servers):
        print(
            "labrec: warning: an http FHIR server is used only with LABREC_CDS_FHIR_ALLOW_HTTP "
            "(development only)",
            file=sys.stderr,
        )
    return asyncio.run(_register(settings, args.org, iss, jwks_url, jwks, origins, fhir_servers))


async def _register(
    settings: Settings,
    org_name: str,
    iss: str,
    jwks_url: str | None,
    jwks: dict[str, Any] | None,
    origins: list[str],
    fhir_servers: list[str],
) -> int:
    from service.persistence.cds import upsert_cds_client
    from service.persistence.database import create_engine, migrate_async, session_factory
    from service.persistence.organisations import organisation_by_name

    await migrate_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            org = await organisation_by_name(session, org_name)
            if org is None:
                print(
                    f"labrec: no organisation '{org_name}'; create it with `labrec org create`",
                    file=sys.stderr,
                )
                return 1
            try:
                row, created = await upsert_cds_client(
                    session,
                    organisation_id=org.id,
                    iss=iss,
                    jwks_url=jwks_url,
                    jwks=jwks,
                    origins=origins,
                    now=dt.datetime.now(dt.UTC),
                    fhir_servers=fhir_servers,
                )
            except ValueError as exc:
                print(f"labrec: {exc}", file=sys.stderr)
                return 1
            verb = "registered" if created else "updated"
            print(f"{verb} CDS client {iss} for organisation '{org.name}' ({row.id})")
            for url in fhir_servers:
                print(f"  FHIR server: {url}")
            return 0
    finally:
        await engine.dispose()


def _issuer(value: str) -> str:
    value = value.strip()
    if not 0 < len(value) <= 255:
        raise ValueError("--iss must be 1 to 255 characters")
    return value


def _jwks_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or len(value) > 500:
        raise ValueError("--jwks-url must be an absolute https URL")
    return value


def _jwks_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} as JSON: {type(exc).__name__}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError(f"{path} is not a JWK Set (an object with a non-empty 'keys' array)")
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kid"), str):
            raise ValueError(f"{path}: every key needs a 'kid'")
        if _PRIVATE & set(key):
            raise ValueError(f"{path}: key '{key['kid']}' holds private key material")
    return {"keys": keys}


def _fhir_server(value: str) -> str:
    from service.cds.egress import normalise_base_url

    try:
        return normalise_base_url(value.strip())
    except ValueError as exc:
        raise ValueError(f"--fhir-server {exc}, e.g. https://ehr.example.org/fhir/r4") from None


def _origin(value: str) -> str:
    parts = urlsplit(value.strip())
    if (
        parts.scheme not in ("https", "http")
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError(f"--origin must look like https://ehr.example.org, not {value!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"
