"""Admin-only REST routes: API keys (list, create, revoke, rotate) and the audit trail."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.api.deps import container_of
from service.api.problems import problem_responses
from service.domain.principal import Principal
from service.usecases.dto import ApiKeyOut, AuditPage, NewApiKeyIn, NewApiKeyOut


class ApiKeyController(Controller):
    path = "/v1/admin/api-keys"
    tags = ["admin"]

    @get(
        summary="List the organisation's API keys (prefixes only)",
        responses=problem_responses(401, 403, 429),
    )
    async def list_keys(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> list[ApiKeyOut]:
        return await container_of(request).admin.list_keys(principal)

    @post(
        summary="Create an API key; the secret is returned once",
        status_code=201,
        responses=problem_responses(400, 401, 403, 422, 429),
    )
    async def create_key(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        data: JSONBody[NewApiKeyIn],
    ) -> NewApiKeyOut:
        return await container_of(request).admin.create_key(principal, data.role)

    @post(
        "/{key_id:str}/revoke",
        summary="Revoke a key; it stops working at once",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 429),
    )
    async def revoke_key(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        key_id: FromPath[str],
    ) -> ApiKeyOut:
        return await container_of(request).admin.revoke_key(principal, key_id)

    @post(
        "/{key_id:str}/rotate",
        summary="Replace a key with a new one of the same role",
        status_code=201,
        responses=problem_responses(400, 401, 403, 404, 422, 429),
    )
    async def rotate_key(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        key_id: FromPath[str],
    ) -> NewApiKeyOut:
        return await container_of(request).admin.rotate_key(principal, key_id)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["admin"]

    @get(
        summary="The organisation's audit trail, newest first (reading it is audited)",
        responses=problem_responses(400, 401, 403, 429),
    )
    async def audit(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
        action: Annotated[str | None, QueryParameter(max_length=40)] = None,
        object_id: Annotated[str | None, QueryParameter(max_length=64)] = None,
        patient_reference: Annotated[str | None, QueryParameter(max_length=128)] = None,
    ) -> AuditPage:
        return await container_of(request).admin.audit_trail(
            principal,
            limit=limit,
            cursor=cursor,
            action=action,
            object_id=object_id,
            patient_reference=patient_reference,
        )
