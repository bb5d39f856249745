"""Read-only catalog browsing: panels (filters, text search) and therapies."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.deps import container_of
from service.api.problems import problem_responses
from service.domain.vocabulary import SpecimenType, Tier
from service.usecases.dto import PanelDetailOut, PanelOut, TherapyOut
from service.usecases.errors import NotFound, shown
from service.usecases.recommendations import panel_detail_out, panel_out


class CatalogController(Controller):
    path = "/v1/catalog"
    tags = ["catalog"]

    @get(
        "/panels",
        summary="List and search panels",
        responses=problem_responses(400, 401, 429),
    )
    async def list_panels(
        self,
        request: Request[Any, Any, Any],
        family: Annotated[str | None, QueryParameter(max_length=64)] = None,
        tier: FromQuery[Tier | None] = None,
        specimen: FromQuery[SpecimenType | None] = None,
        vendor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        q: Annotated[
            str | None, QueryParameter(max_length=200, description="words to search")
        ] = None,
    ) -> list[PanelOut]:
        catalog = container_of(request).catalog
        words = q.casefold().split() if q else []
        return [
            panel_out(p)
            for p in sorted(catalog.panels.values(), key=lambda p: (p.tier, p.family, p.name))
            if (family is None or p.family == family)
            and (tier is None or p.tier == tier)
            and (specimen is None or p.specimen.type == specimen)
            and (vendor is None or vendor.casefold() in p.vendor.casefold())
            and all(word in catalog.search_text[p.id] for word in words)
        ]

    @get(
        "/panels/{panel_id:str}",
        summary="One panel with analytes, caveats and unknowns",
        responses=problem_responses(400, 401, 404, 429),
    )
    async def get_panel(
        self, request: Request[Any, Any, Any], panel_id: FromPath[str]
    ) -> PanelDetailOut:
        panel = container_of(request).catalog.panels.get(panel_id)
        if panel is None:
            raise NotFound(
                f"No panel {shown(panel_id)} in the catalog; see GET /v1/catalog/panels."
            )
        return panel_detail_out(panel)

    @get(
        "/therapies",
        summary="Therapies with their routes and codings",
        responses=problem_responses(401, 429),
    )
    async def therapies(self, request: Request[Any, Any, Any]) -> list[TherapyOut]:
        catalog = container_of(request).catalog
        return [
            TherapyOut(
                id=t.id,
                name=t.name,
                routes=list(t.routes),
                codings=[
                    {
                        "system": c.system,
                        "code": c.code,
                        "display": c.display,
                        "verification": c.verification,
                    }
                    for c in t.codings
                ],
                note=t.note,
            )
            for t in catalog.therapies.values()
        ]
