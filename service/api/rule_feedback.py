"""GET /v1/catalog/rules/{rule_id}/feedback: what clinicians did with CDS suggestions of a rule."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from service.api.deps import container_of
from service.api.problems import problem_responses
from service.domain.principal import Principal
from service.usecases.cds_feedback import CdsFeedbackService, RuleFeedbackOut


class RuleFeedbackController(Controller):
    path = "/v1/catalog/rules"
    tags = ["catalog"]

    @get(
        "/{rule_id:str}/feedback",
        summary="CDS Hooks feedback counts for one catalog rule",
        description="Suggestions issued through CDS Hooks cards that this rule produced, and how "
        "many were accepted or had their card overridden (with override reason codes), for the "
        "caller's organisation only. 404 for a rule the catalog does not have.",
        responses=problem_responses(400, 401, 404, 429),
    )
    async def rule_feedback(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        rule_id: FromPath[str],
    ) -> RuleFeedbackOut:
        container = container_of(request)
        service = CdsFeedbackService(container.sessions, container.catalog, container.clock)
        return await service.rule_counts(principal, rule_id)
