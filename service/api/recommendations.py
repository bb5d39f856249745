"""POST /v1/recommendations."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from service.api.deps import container_of
from service.api.problems import problem_responses
from service.domain.principal import Principal
from service.usecases.dto import RecommendationOut, RecommendationRequest


class RecommendationController(Controller):
    path = "/v1/recommendations"
    tags = ["recommendations"]

    @post(
        summary="Suggest lab panels for a therapy context",
        description="Returns suggested panels with rationale and evidence, what was left out and "
        "why, and advisories. The result is stored and can be cited by an order.",
        status_code=200,
        responses=problem_responses(400, 401, 413, 422, 429),
    )
    async def recommend(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RecommendationRequest],
        principal: NamedDependency[Principal],
    ) -> RecommendationOut:
        return await container_of(request).recommendations.recommend(principal, data)
