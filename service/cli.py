"""The ``labrec`` command line (DESIGN.md "Published contract")."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from service.settings import Settings, SettingsError, is_loopback_host, load_settings

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labrec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API, CDS Hooks and UI (granian)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="the one-command demo (LABREC_DEMO=true): built-in sandbox lab, demo organisation, "
        "admin key and practitioner sign-in printed once; loopback only",
    )

    commands.add_parser("worker", help="run the outbox dispatcher and reconciliation only")
    commands.add_parser("migrate", help="bring the database schema up to date")

    catalog = commands.add_parser("catalog", help="catalog tools")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    catalog_commands.add_parser("check", help="validate the catalog without serving")

    openapi = commands.add_parser("openapi", help="write openapi/openapi.json")
    openapi.add_argument("--check", action="store_true", help="fail if the file is out of date")

    org = commands.add_parser("org", help="organisations")
    org_commands = org.add_subparsers(dest="org_command", required=True)
    org_create = org_commands.add_parser("create", help="create an organisation")
    org_create.add_argument("name")

    apikey = commands.add_parser("apikey", help="API keys")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True)
    apikey_create = apikey_commands.add_parser("create", help="create a key (printed once)")
    apikey_create.add_argument("--org", required=True)
    apikey_create.add_argument("--role", choices=["integration", "admin"], default="integration")

    orders = commands.add_parser("orders", help="order operations")
    orders_commands = orders.add_subparsers(dest="orders_command", required=True)
    requeue = orders_commands.add_parser("requeue", help="send a failed order to the lab again")
    requeue.add_argument("order_id")

    sandbox = commands.add_parser("sandbox-lab", help="run the sandbox FHIR lab on its own")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.add_argument(
        "--allow-public",
        action="store_true",
        help="serve on a non-loopback --host (also LABREC_SANDBOX_ALLOW_PUBLIC=true); set "
        "LABREC_SANDBOX_TOKEN then, or anyone who reaches it reads and changes lab orders",
    )

    from service.cli_user import add_user_parser  # practitioner accounts for the UI

    add_user_parser(commands)

    from service.cli_cds import add_cds_client_parser  # EHRs allowed to call CDS Hooks

    add_cds_client_parser(commands)

    from service.cli_audit import add_audit_parser  # refused credentials, for operators

    add_audit_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "demo", False):
        os.environ["LABREC_DEMO"] = "true"  # read by every Granian worker's settings too
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"labrec: {exc}", file=sys.stderr)
        return 2
    handler = _COMMANDS[args.command]
    return handler(args, settings)


def granian_server(target: str, *, host: str, port: int, workers: int) -> Any:
    """The production Granian settings (also used by bench/ for its trivial-handler ceiling)."""
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    return Server(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.auto,
        factory=True,
        log_access=False,
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.settings import check_lab_choice, uses_sandbox

    if "LABREC_PUBLIC_URL" not in os.environ:
        os.environ["LABREC_PUBLIC_URL"] = f"http://{args.host}:{args.port}"
        settings = msgspec.structs.replace(settings, public_url=os.environ["LABREC_PUBLIC_URL"])
    try:
        check_lab_choice(settings, bind_host=args.host)
    except SettingsError as exc:
        print(f"labrec: {exc}", file=sys.stderr)
        return 2
    if uses_sandbox(settings) and settings.sandbox_token is None:
        import secrets

        # One token for all Granian workers (they read it from the environment), printed once.
        os.environ["LABREC_SANDBOX_TOKEN"] = secrets.token_urlsafe(32)
        print(
            "labrec built-in sandbox lab at "
            f"{os.environ['LABREC_PUBLIC_URL'].rstrip('/')}/sandbox-lab/fhir; its token "
            f"(Authorization: Bearer, shown once): {os.environ['LABREC_SANDBOX_TOKEN']}",
            flush=True,
        )
    granian_server(
        "service.app:app_from_env", host=args.host, port=args.port, workers=args.workers
    ).serve()
    return 0


def _worker(_args: argparse.Namespace, settings: Settings) -> int:
    from service.container import build_container
    from service.logs import configure_logging
    from service.worker import run_background

    configure_logging(settings.log_level)
    if settings.lab_base_url is None:
        print(
            "labrec worker needs LABREC_LAB_BASE_URL (the lab it hands orders to)", file=sys.stderr
        )
        return 2

    async def run() -> None:
        container = build_container(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_background(container, stop)
        finally:
            await container.aclose()

    import uvloop  # the loop Granian runs `serve` on; about twice as cheap per database round trip

    uvloop.run(run())
    return 0


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from service.persistence.database import migrate

    migrate(settings.database_url)
    print("database is up to date")
    return 0


def _catalog(_args: argparse.Namespace, settings: Settings) -> int:
    from service.catalog_loader import load_catalog
    from service.domain.catalog import CatalogError

    try:
        catalog = load_catalog(settings.catalog_dir)
    except CatalogError as exc:
        print(f"catalog invalid: {exc}", file=sys.stderr)
        return 1
    print(
        f"catalog {catalog.version} OK: {len(catalog.panels)} panels, {len(catalog.rules)} rules, "
        f"{len(catalog.evidence)} evidence entries, {len(catalog.therapies)} therapies"
    )
    return 0


def openapi_document(settings: Settings) -> bytes:
    from service.app import create_app

    app = create_app(settings, configure_logs=False)
    return (
        msgspec.json.format(msgspec.json.encode(app.openapi_schema.to_schema()), indent=2) + b"\n"
    )


def _openapi(args: argparse.Namespace, settings: Settings) -> int:
    document = openapi_document(
        msgspec.structs.replace(
            settings, lab_base_url=None, sandbox=True, sandbox_allow_public=True, demo=False
        )
    )
    if args.check:
        if not OPENAPI_PATH.exists() or OPENAPI_PATH.read_bytes() != document:
            print("openapi/openapi.json is out of date; run `labrec openapi`", file=sys.stderr)
            return 1
        print("openapi/openapi.json is up to date")
        return 0
    OPENAPI_PATH.write_bytes(document)
    print(f"wrote {OPENAPI_PATH}")
    return 0


def _org(args: argparse.Namespace, settings: Settings) -> int:
    from service.persistence.database import create_engine, migrate, session_factory
    from service.persistence.organisations import create_organisation, organisation_by_name

    migrate(settings.database_url)

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                if await organisation_by_name(session, args.name) is not None:
                    print(f"organisation '{args.name}' already exists", file=sys.stderr)
                    return 1
                org = await create_organisation(session, args.name, dt.datetime.now(dt.UTC))
                print(f"created organisation '{org.name}' ({org.id})")
                return 0
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    from service.persistence.database import create_engine, migrate, session_factory
    from service.persistence.organisations import create_api_key, organisation_by_name

    migrate(settings.database_url)

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                org = await organisation_by_name(session, args.org)
                if org is None:
                    print(
                        f"no organisation '{args.org}'; create it with `labrec org create`",
                        file=sys.stderr,
                    )
                    return 1
                _, raw = await create_api_key(
                    session, org.id, dt.datetime.now(dt.UTC), role=args.role
                )
                print(f"API key for '{org.name}' (role {args.role}); it is shown only once:")
                print(raw)
                return 0
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _orders(args: argparse.Namespace, settings: Settings) -> int:
    from service.container import build_container
    from service.usecases.errors import UseCaseError

    async def run() -> int:
        container = build_container(settings)
        try:
            order = await container.orders.requeue(args.order_id)
            print(f"order {order.id} is {order.status}")
            return 0
        except UseCaseError as exc:
            print(f"labrec: {exc.detail}", file=sys.stderr)
            return 1
        finally:
            await container.aclose()

    return asyncio.run(run())


def _sandbox_lab(args: argparse.Namespace, settings: Settings) -> int:
    from granian.constants import Interfaces
    from granian.server import Server

    forced = args.allow_public or settings.sandbox_allow_public
    if not is_loopback_host(args.host) and not forced:
        print(
            f"labrec: the sandbox lab is for loopback only, but --host is {args.host!r}: anyone "
            "who reaches it could read and change lab orders. Serve on 127.0.0.1, or force it "
            "with --allow-public (or LABREC_SANDBOX_ALLOW_PUBLIC=true) and set "
            "LABREC_SANDBOX_TOKEN (never in production)",
            file=sys.stderr,
        )
        return 2

    Server(
        "service.labs.sandbox:sandbox_app_from_env",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        factory=True,
    ).serve()
    return 0


def _user(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli_user import run_user

    return run_user(args, settings)


def _cds_client(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli_cds import run_cds_client

    return run_cds_client(args, settings)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli_audit import run_audit

    return run_audit(args, settings)


_COMMANDS = {
    "serve": _serve,
    "worker": _worker,
    "migrate": _migrate,
    "catalog": _catalog,
    "openapi": _openapi,
    "org": _org,
    "apikey": _apikey,
    "orders": _orders,
    "sandbox-lab": _sandbox_lab,
    "user": _user,
    "cds-client": _cds_client,
    "audit": _audit,
}

if __name__ == "__main__":
    raise SystemExit(main())
