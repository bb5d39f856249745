"""Catalog browser: search and filter panels; one panel with analytes, codes and evidence."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from service.domain.catalog import Catalog, Panel
from service.ui import presenters
from service.ui.context import Ui
from service.usecases.errors import NotFound
from service.usecases.recommendations import panel_detail_out, panel_out

Filter = Annotated[str | None, QueryParameter(max_length=200)]


def _matches(
    catalog: Catalog,
    panel: Panel,
    words: list[str],
    tier: str | None,
    family: str | None,
    specimen: str | None,
) -> bool:
    """The same filters as GET /v1/catalog/panels (tier, family, specimen, every word)."""
    return (
        (not tier or panel.tier == tier)
        and (not family or panel.family == family)
        and (not specimen or panel.specimen.type == specimen)
        and all(word in catalog.search_text[panel.id] for word in words)
    )


@get("/catalog", name="ui:catalog")
async def catalog_page(
    ui: Ui,
    q: Filter = None,
    tier: Filter = None,
    family: Filter = None,
    specimen: Filter = None,
) -> Template:
    catalog = ui.container.catalog
    words = q.casefold().split() if q else []
    panels = [
        panel_out(p)
        for p in sorted(catalog.panels.values(), key=lambda p: (p.tier, p.family, p.name))
        if _matches(catalog, p, words, tier, family, specimen)
    ]
    return ui.page(
        "catalog.html",
        panels=panels,
        families=sorted(catalog.families.values(), key=lambda f: (f.tier, f.name)),
        specimens=sorted({p.specimen.type for p in catalog.panels.values()}),
        query={
            "q": q or "",
            "tier": tier or "",
            "family": family or "",
            "specimen": specimen or "",
        },
        catalog_version=catalog.version,
        total=len(catalog.panels),
    )


@get("/catalog/{panel_id:str}", name="ui:panel")
async def panel_page(ui: Ui, panel_id: FromPath[str]) -> Template:
    catalog = ui.container.catalog
    panel = catalog.panels.get(panel_id)
    if panel is None:
        raise NotFound("No such panel in the catalog.")
    return ui.page(
        "panel.html",
        panel=panel_detail_out(panel),
        family=catalog.families.get(panel.family),
        evidence=presenters.citing_evidence(catalog, panel),
        therapies=presenters.therapies_suggesting(catalog, panel),
        evidence_links=presenters.evidence_links,
        fallback=catalog.panels.get(panel.specimen_fallback or ""),
    )
