"""The garbage collector in a long-running server process.

Everything built at start-up (modules, the catalog and its indexes, SQLAlchemy's mappers, the
Litestar app: ~140,000 tracked objects) lives as long as the process. Left to the collector, it is
traversed by every full collection, and request bodies (a CDS prefetch decodes into thousands of
dicts) trigger one every ~100 requests under load: about a third of a CDS call's CPU went there.
``gc.freeze()`` moves what exists after start-up out of the collector's generations; objects made
later are collected as before.
"""

from __future__ import annotations

import gc


def settle_after_startup() -> None:
    """Collect start-up garbage once, then exempt the survivors from later collections."""
    gc.collect()
    gc.freeze()
