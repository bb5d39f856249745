"""Server processes freeze their start-up heap (service/heap.py) so full garbage collections
under load skip the catalog, mappers and app; test and CLI apps leave the collector alone."""

from __future__ import annotations

import gc

from tests.conftest import make_settings
from tests.support.app import running_app


async def test_a_server_app_freezes_its_start_up_heap_and_others_do_not(database_url: str) -> None:
    gc.unfreeze()
    try:
        async with running_app(make_settings(database_url), run_worker=False) as (client, _):
            assert gc.get_freeze_count() == 0
            assert (await client.get("/health/live")).status_code == 200
        async with running_app(make_settings(database_url), run_worker=False, settle_heap=True) as (
            client,
            container,
        ):
            frozen = gc.get_freeze_count()
            assert frozen > 10_000, "modules, catalog and app are out of the collector's way"
            assert (await client.get("/health/live")).status_code == 200
            assert container.catalog.panels, "frozen objects are alive and usable"
    finally:
        gc.unfreeze()  # later tests' garbage stays collectable
