"""``labrec audit refusals``: the operator's view of refused credentials (no organisation owns
them, so they are not in any organisation's ``GET /v1/audit``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

from service.settings import Settings


def add_audit_parser(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit trail, for operators")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    refusals = audit_commands.add_parser(
        "refusals", help="requests without a valid API key, per client address and minute"
    )
    refusals.add_argument("--minutes", type=int, default=60, help="how far back (default 60)")


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from service.persistence.database import create_engine, session_factory
    from service.persistence.models import AuditRecord
    from service.persistence.refusals import ACTION

    async def run() -> int:
        engine = create_engine(settings.database_url)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=max(1, args.minutes))
        query = (
            select(AuditRecord.at, AuditRecord.object_id, AuditRecord.outcome, AuditRecord.count)
            .where(AuditRecord.action == ACTION, AuditRecord.at >= since)
            .order_by(AuditRecord.at, AuditRecord.object_id, AuditRecord.outcome)
        )
        try:
            async with session_factory(engine)() as session:
                rows = (await session.execute(query)).all()
        finally:
            await engine.dispose()
        print("minute (UTC)      address                   outcome          count")
        for at, address, outcome, count in rows:
            print(f"{at:%Y-%m-%d %H:%M}  {address or '':<25} {outcome:<16} {count}")
        return 0

    return asyncio.run(run())
