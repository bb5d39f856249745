"""Group commit: the writes of many concurrent requests share one transaction.

A request stages its writes (``Staging.insert`` for new rows, ``Staging.execute`` for a prepared
statement with parameters) and awaits ``GroupInserter.commit(staging)``, which returns once they
are committed, exactly as a transaction of its own would: callers keep "stored before answered".
While one batch commits, the writes that arrive queue up and go in the next batch, so under load
one commit (and one round trip per statement, as an executemany) carries dozens of requests, and
an idle service waits for nobody. Statements run in the order they were first staged. If a batch
fails, its requests are retried one by one, each in its own transaction, so only the request at
fault sees the error (and nothing of it is committed).

A staging may also *claim* a unique row (``Staging.claim``: the CDS face's JWT ids): its writes
commit only if that row is new, and ``GroupInserter.claim_and_commit`` says whether it was. The
claims of a batch are one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in the same transaction,
so uniqueness is the database's, across processes; the same key twice in one batch is won by the
first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Executable, Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

_MAX_BATCH: Final = 256
_INSERTS: dict[Table, Executable] = {}
_CLAIMS: dict[tuple[Table, str], Executable] = {}


class Staging:
    """The writes of one request (plain values, no ORM instances: those cost more than the SQL),
    committed together by ``GroupInserter.commit``."""

    __slots__ = ("claimed", "writes")

    def __init__(self) -> None:
        self.writes: list[tuple[Executable, dict[str, Any]]] = []
        #: (table, row, primary key): the row that must be new for the writes to commit
        self.claimed: tuple[Table, dict[str, Any], tuple[Any, ...]] | None = None

    def claim(self, model: type[DeclarativeBase], values: dict[str, Any]) -> None:
        """Commit the writes only if no row with this primary key exists (one claim a staging)."""
        table: Table = model.__table__  # type: ignore[assignment]
        self.claimed = (table, values, tuple(values[c.name] for c in table.primary_key))

    def insert(self, model: type[DeclarativeBase], values: dict[str, Any]) -> None:
        table: Table = model.__table__  # type: ignore[assignment]
        statement = _INSERTS.get(table)
        if statement is None:
            statement = _INSERTS[table] = insert(table)
        self.writes.append((statement, values))

    def execute(self, statement: Executable, params: dict[str, Any]) -> None:
        """A prepared statement (``bindparam`` placeholders), built once at import time."""
        self.writes.append((statement, params))


In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Queues concurrent calls and runs them in batches; ``_run`` handles one batch.

    While a batch runs, new calls queue for the next one (no timer: an idle service runs each
    call at once). A failed batch is re-run one call at a time so only the call at fault fails.
    """

    def __init__(self, max_batch: int = _MAX_BATCH) -> None:
        self._max = max_batch
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Out] = loop.create_future()
        self._queue.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        try:
            return await asyncio.shield(done)  # a cancelled caller does not cancel the batch
        except asyncio.CancelledError:
            # The batch goes on without this caller: wait for its outcome, so ``_abandoned`` and
            # the caller's own clean-up (e.g. releasing an idempotency key) see what happened.
            with contextlib.suppress(Exception):
                await self._abandoned(item, await asyncio.shield(done))
            raise

    async def _run(self, items: list[In]) -> list[Out]:
        raise NotImplementedError

    async def _abandoned(self, item: In, result: Out) -> None:
        """Called when ``item`` succeeded but its caller was cancelled meanwhile."""

    async def _flush(self) -> None:
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._process(batch)
                batch = []
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            _fail([*batch, *self._queue], RuntimeError("the batch writer was stopped"))
            self._queue = []
            raise

    async def _process(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            for one in batch:
                try:
                    alone = await self._run([one[0]])
                except Exception as single:
                    _fail([one], single)
                else:
                    _succeed(one[1], alone[0])
        else:
            for (_, done), result in zip(batch, results, strict=True):
                _succeed(done, result)


def _succeed(done: asyncio.Future[Out], result: Out) -> None:
    if not done.done():
        done.set_result(result)


def _fail(batch: list[tuple[In, asyncio.Future[Out]]], error: Exception) -> None:
    for _, done in batch:
        if not done.done():
            done.set_exception(error)


class GroupInserter(Batcher[Staging, bool]):
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], max_batch: int = _MAX_BATCH
    ) -> None:
        super().__init__(max_batch)
        self._sessions = sessions

    async def commit(self, staging: Staging) -> None:
        """Run the staged writes; returns when committed, raises what they raised."""
        await self.submit(staging)

    async def claim_and_commit(self, staging: Staging) -> bool:
        """Like ``commit``; False (and nothing written) when the claimed row already existed."""
        return await self.submit(staging)

    async def _run(self, items: list[Staging]) -> list[bool]:
        async with self._sessions() as session, session.begin():
            won = await _claim(session, items)
            # Per statement (in first-staged order), one executemany per set of parameter names.
            groups: dict[Executable, dict[frozenset[str], list[dict[str, Any]]]] = {}
            for staging, ok in zip(items, won, strict=True):
                if ok:
                    for statement, params in staging.writes:
                        variants = groups.setdefault(statement, {})
                        variants.setdefault(frozenset(params), []).append(params)
            for statement, variants in groups.items():
                for params_list in variants.values():
                    await session.execute(statement, params_list)
        return won


async def _claim(session: AsyncSession, items: list[Staging]) -> list[bool]:
    """Insert the batch's claimed rows; which stagings won theirs (True when none claimed)."""
    won = [True] * len(items)
    first: dict[Table, dict[tuple[Any, ...], tuple[int, dict[str, Any]]]] = {}
    for i, staging in enumerate(items):
        if staging.claimed is not None:
            table, values, key = staging.claimed
            seen = first.setdefault(table, {})
            if key in seen:
                won[i] = False  # the same key earlier in this batch has it
            else:
                seen[key] = (i, values)
    dialect = session.get_bind().dialect.name
    for table, seen in first.items():
        statement = _CLAIMS.get((table, dialect))
        if statement is None:
            insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
            statement = _CLAIMS[table, dialect] = (
                insert_(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
            )
        # In key order: two batches claiming overlapping keys never wait on each other in a cycle.
        keys = sorted(seen)
        rows = await session.execute(statement, [seen[key][1] for key in keys])
        inserted = {tuple(row) for row in rows}
        for key in keys:
            if key not in inserted:
                won[seen[key][0]] = False
    return won
