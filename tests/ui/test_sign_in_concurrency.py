"""Sign-in lock-out and the per-address throttle under real concurrency.

Bursts of simultaneous wrong passwords, sent over real loopback HTTP to ``labrec serve``
processes (two of them on one database for the lock-out), on SQLite and PostgreSQL. "Evaluated"
means checked against the account's real hash; each such check writes one ``denied`` audit row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.container import Container, build_container
from service.labs.webhooks import new_secret
from service.persistence.models import AuditRecord
from service.persistence.ui_models import User
from service.ui.throttle import ConcurrencyCap, FailureThrottle, SignInBusy
from service.usecases.accounts import MAX_FAILED_ATTEMPTS, AccountService, SignInRefused
from tests.conftest import make_settings
from tests.support.processes import labrec_server
from tests.ui.helpers import PASSWORD, make_user

BURST = 30
ADDRESS_LIMIT = 20  # FailureThrottle's default


def _env(database_url: str) -> dict[str, str]:
    """A server with an (unused) external lab, so nothing but the UI matters here."""
    return {
        "LABREC_DATABASE_URL": database_url,
        "LABREC_DEMO": "false",
        "LABREC_LAB_BASE_URL": "http://127.0.0.1:9/fhir",
        "LABREC_LAB_WEBHOOK_SECRET": new_secret(),
        "LABREC_DISPATCH_IN_PROCESS": "false",
        "LABREC_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def _servers(tmp: Path, database_url: str, count: int) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(labrec_server(tmp, _env(database_url), name=f"serve{i}"))
            for i in range(count)
        ]


async def _burst(bases: list[str], emails: list[str], password: str) -> Counter[int]:
    """All sign-ins at once (one login-CSRF token, double-submitted); returns status counts."""
    token = secrets.token_urlsafe(16)
    async with httpx.AsyncClient(timeout=60) as client:
        ready = asyncio.Event()

        async def one(i: int) -> int:
            await ready.wait()
            response = await client.post(
                f"{bases[i % len(bases)]}/ui/login",
                data={"email": emails[i], "password": password, "login_csrf": token},
                headers={"cookie": f"labrec_login_csrf={token}"},
            )
            return response.status_code

        tasks = [asyncio.create_task(one(i)) for i in range(len(emails))]
        await asyncio.sleep(0)
        ready.set()
        return Counter(await asyncio.gather(*tasks))


async def _sign_in_audit(container: Container) -> Counter[str]:
    async with container.sessions() as session:
        rows = await session.execute(
            select(AuditRecord.outcome, func.count())
            .where(AuditRecord.action == "ui.sign_in")
            .group_by(AuditRecord.outcome)
        )
        return Counter({outcome: count for outcome, count in rows.all()})


async def _locked_until(container: Container, email: str) -> dt.datetime | None:
    async with container.sessions() as session:
        return (
            await session.execute(select(User.locked_until).where(User.email == email))
        ).scalar_one()


async def test_a_burst_of_wrong_passwords_over_two_servers_locks_the_account(
    database_url: str, tmp_path: Path
) -> None:
    container = build_container(make_settings(database_url))
    try:
        _, email = await make_user(container)
        with _servers(tmp_path, database_url, 2) as bases:
            statuses = await _burst(bases, [email] * BURST, "wrong password")
            assert set(statuses) <= {401, 429}, statuses
            audit = await _sign_in_audit(container)
            # Never more real checks than the lock-out allows, whatever the concurrency...
            assert audit["denied"] == MAX_FAILED_ATTEMPTS, audit
            assert audit["success"] == 0
            # ...and the account is locked: the right password is refused too.
            locked_until = await _locked_until(container, email)
            assert locked_until is not None and locked_until > dt.datetime.now(dt.UTC)
            after = await _burst(bases[:1], [email], PASSWORD)
            assert after == Counter({401: 1})
    finally:
        await container.aclose()


async def test_the_address_throttle_admits_no_more_than_its_limit_at_once(
    database_url: str, tmp_path: Path
) -> None:
    emails = [f"guess{i}@clinic.test" for i in range(BURST)]  # many accounts, one address
    with _servers(tmp_path, database_url, 1) as bases:
        statuses = await _burst(bases, emails, "wrong password")
    assert statuses[401] == ADDRESS_LIMIT, statuses
    assert statuses[429] == BURST - ADDRESS_LIMIT, statuses


async def test_concurrent_attempts_at_the_use_case_are_counted_before_the_check(
    database_url: str,
) -> None:
    """The database reservation alone (no per-process gate in front) holds the limit."""
    container = build_container(make_settings(database_url))
    try:
        _, email = await make_user(container)
        accounts = AccountService(container.sessions, container.clock)
        results = await asyncio.gather(
            *(accounts.sign_in(email, "wrong password") for _ in range(BURST)),
            return_exceptions=True,
        )
        assert all(isinstance(r, SignInRefused) for r in results), results
        audit = await _sign_in_audit(container)
        assert audit["denied"] == MAX_FAILED_ATTEMPTS, audit
        assert audit["locked"] == BURST - MAX_FAILED_ATTEMPTS
        with pytest.raises(SignInRefused):
            await accounts.sign_in(email, PASSWORD)
    finally:
        await container.aclose()


async def test_a_right_password_among_the_reserved_attempts_unlocks(database_url: str) -> None:
    """The attempt that reaches the limit locks at once; if it is the right one, it unlocks."""
    container = build_container(make_settings(database_url))
    try:
        _, email = await make_user(container)
        accounts = AccountService(container.sessions, container.clock)
        for _ in range(MAX_FAILED_ATTEMPTS - 1):
            with pytest.raises(SignInRefused):
                await accounts.sign_in(email, "wrong password")
        await accounts.sign_in(email, PASSWORD)
        assert await _locked_until(container, email) is None
        for _ in range(MAX_FAILED_ATTEMPTS - 1):  # the count started again from zero
            with pytest.raises(SignInRefused):
                await accounts.sign_in(email, "wrong password")
        await accounts.sign_in(email, PASSWORD)
    finally:
        await container.aclose()


def test_the_failure_throttle_counts_attempts_in_flight() -> None:
    throttle = FailureThrottle(limit=3)
    assert [throttle.reserve("a") for _ in range(4)] == [True, True, True, False]
    assert throttle.reserve("b")  # other addresses are not affected
    throttle.settle("a", failed=False)  # a success frees its place
    assert throttle.reserve("a")
    for _ in range(3):
        throttle.settle("a", failed=True)
    assert not throttle.reserve("a")  # three failures: the limit


async def test_the_concurrency_cap_queues_then_refuses() -> None:
    cap = ConcurrencyCap(1, max_wait=0.05)
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def holder() -> None:
        async with cap.hold("acct"):
            inside.set()
            await leave.wait()

    task = asyncio.create_task(holder())
    await inside.wait()
    with pytest.raises(SignInBusy):
        async with cap.hold("acct"):
            pass
    async with cap.hold("other"):  # another key has its own slot
        pass
    leave.set()
    await task
    async with cap.hold("acct"):  # free again
        pass
    assert cap.in_use("acct") == 0
