"""Administration within one organisation: API keys and the audit trail. Admins only."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.principal import Principal
from service.persistence import organisations
from service.persistence.audit import record_audit, record_not_found
from service.persistence.audit_reads import list_audit
from service.persistence.models import ApiKey
from service.usecases.clock import Clock
from service.usecases.dto import ApiKeyOut, AuditPage, AuditRecordOut, NewApiKeyOut
from service.usecases.errors import Forbidden, InvalidInput, NotFound, field_error, shown


class AdminService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def require_admin(self, principal: Principal, action: str) -> None:
        """403 for any other role; the refusal is audited."""
        if principal.role == "admin":
            return
        async with self._sessions() as session, session.begin():
            record_audit(
                session,
                principal=principal,
                action=action,
                object_type="admin",
                object_id=None,
                patient_reference=None,
                outcome="forbidden",
                now=self._clock(),
            )
        raise Forbidden(f"Only an organisation admin may {action.replace('.', ' ')}.")

    async def list_keys(self, principal: Principal) -> list[ApiKeyOut]:
        await self.require_admin(principal, "apikey.list")
        async with self._sessions() as session:
            keys = await organisations.list_api_keys(session, principal.organisation_id)
        return [_key_out(k) for k in keys]

    async def create_key(self, principal: Principal, role: str) -> NewApiKeyOut:
        await self.require_admin(principal, "apikey.create")
        async with self._sessions() as session, session.begin():
            row, raw = await organisations.create_api_key(
                session, principal.organisation_id, self._clock(), role=role
            )
            self._audit(session, principal, "apikey.create", row.id)
        return NewApiKeyOut(key=_key_out(row), secret=raw)

    async def revoke_key(self, principal: Principal, key_id: str) -> ApiKeyOut:
        """Revoked keys stop working at the next request (keys are looked up every request)."""
        await self.require_admin(principal, "apikey.revoke")
        async with self._sessions() as session, session.begin():
            row = await organisations.api_key_in(session, principal.organisation_id, key_id)
            if row is not None:
                if row.revoked_at is None:
                    row.revoked_at = self._clock()
                self._audit(session, principal, "apikey.revoke", row.id)
                return _key_out(row)
        raise await self._key_not_found(principal, "apikey.revoke", key_id)

    async def rotate_key(self, principal: Principal, key_id: str) -> NewApiKeyOut:
        """A new key with the same role; the old one is revoked in the same transaction."""
        await self.require_admin(principal, "apikey.rotate")
        async with self._sessions() as session, session.begin():
            old = await organisations.api_key_in(session, principal.organisation_id, key_id)
            if old is None:
                missing = True
            elif old.revoked_at is not None:
                raise InvalidInput(
                    "A revoked key cannot be rotated; create a new key instead.",
                    errors=[field_error("key_id", "is revoked")],
                )
            else:
                missing = False
                old.revoked_at = self._clock()
                row, raw = await organisations.create_api_key(
                    session, principal.organisation_id, self._clock(), role=old.role
                )
                self._audit(session, principal, "apikey.rotate", old.id)
        if missing:
            raise await self._key_not_found(principal, "apikey.rotate", key_id)
        return NewApiKeyOut(key=_key_out(row), secret=raw)

    async def audit_trail(
        self,
        principal: Principal,
        *,
        limit: int,
        cursor: int | None,
        action: str | None,
        object_id: str | None,
        patient_reference: str | None,
    ) -> AuditPage:
        await self.require_admin(principal, "audit.read")
        async with self._sessions() as session, session.begin():
            rows = await list_audit(
                session,
                principal.organisation_id,
                limit=limit,
                before_id=cursor,
                action=action,
                object_id=object_id,
                patient_reference=patient_reference,
            )
            self._audit(session, principal, "audit.read", None)
        return AuditPage(
            items=[
                AuditRecordOut(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    object_type=r.object_type,
                    outcome=r.outcome,
                    object_id=r.object_id,
                    patient_reference=r.patient_reference,
                    request_id=r.request_id,
                )
                for r in rows
            ],
            next_cursor=str(rows[-1].id) if len(rows) == limit else None,
        )

    async def _key_not_found(self, principal: Principal, action: str, key_id: str) -> NotFound:
        """Audit a refused action on an unknown or another organisation's key (in its own
        transaction, after the caller's read ended) and return the 404 to raise."""
        await record_not_found(
            self._sessions,
            principal=principal,
            action=action,
            object_type="api_key",
            object_id=key_id,
            now=self._clock(),
        )
        return NotFound(f"No API key {shown(key_id)} in your organisation.")

    def _audit(
        self, session: AsyncSession, principal: Principal, action: str, object_id: str | None
    ) -> None:
        record_audit(
            session,
            principal=principal,
            action=action,
            object_type="api_key" if action.startswith("apikey") else "audit",
            object_id=object_id,
            patient_reference=None,
            outcome="success",
            now=self._clock(),
        )


def _key_out(row: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=row.id,
        prefix=row.prefix,
        role=row.role,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
