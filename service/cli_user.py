"""``labrec user create``: UI accounts. The password only ever comes on stdin, never in argv."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service.settings import Settings


def add_user_parser(commands: Any) -> None:
    user = commands.add_parser("user", help="practitioner accounts for the web UI")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    create = user_commands.add_parser(
        "create", help="create a user; the password is read from stdin (first line)"
    )
    create.add_argument("--org", required=True, help="organisation name")
    create.add_argument("--email", required=True)
    create.add_argument("--role", choices=["practitioner", "admin"], default="practitioner")
    create.add_argument("--name", help="display name, prefilled as the ordering practitioner")
    create.add_argument("--npi", help="10-digit NPI, prefilled on order forms")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from stdin (never from the command line)",
    )


def run_user(args: argparse.Namespace, settings: Settings) -> int:
    from service.persistence.database import create_engine, migrate, session_factory
    from service.usecases.accounts import AccountService
    from service.usecases.clock import utc_now
    from service.usecases.errors import UseCaseError

    password = sys.stdin.readline().rstrip("\r\n")
    migrate(settings.database_url)

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            accounts = AccountService(session_factory(engine), utc_now)
            user_id = await accounts.create_user(
                organisation=args.org,
                email=args.email,
                password=password,
                role=args.role,
                display_name=args.name,
                npi=args.npi,
            )
        except UseCaseError as exc:
            problems = "; ".join(f"{e['field']} {e['message']}" for e in exc.errors)
            print(f"labrec: {exc.detail}{' ' + problems if problems else ''}", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()
        print(f"created {args.role} {args.email.strip().lower()} ({user_id})")
        return 0

    return asyncio.run(run())
