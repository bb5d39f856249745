"""What one order-select call writes, now that the writes of concurrent calls share transactions
(group commit): every answered card is stored with its suggestions, their rules, the stored
recommendation and its audit row before the EHR sees it, and a token is still good once even
when the same token arrives many times at once.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from service.persistence.cds_models import (
    CdsCard,
    CdsFeedback,
    CdsSeenJti,
    CdsSuggestion,
    CdsSuggestionRule,
)
from service.persistence.models import AuditRecord, StoredRecommendation
from tests.cds.conftest import Cds
from tests.cds.support import full_prefetch, hook_request

SERVICE = "/cds-services/labrec-order-select"


async def test_the_same_token_sent_concurrently_is_accepted_once(cds: Cds) -> None:
    token = cds.ehr.token(SERVICE)
    responses = await asyncio.gather(
        *(
            cds.client.post(
                SERVICE,
                json=hook_request(prefetch=full_prefetch()),
                headers={"Authorization": f"Bearer {token}"},
            )
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [401] * 7
    async with cds.container.sessions() as session:
        cards = await session.scalar(select(func.count()).select_from(CdsCard))
        seen = await session.scalar(select(func.count()).select_from(CdsSeenJti))
    assert cards == 1, "the refused calls stored nothing"
    assert seen == 1


async def test_every_answered_card_is_stored_with_what_feedback_needs(cds: Cds) -> None:
    responses = await asyncio.gather(
        *(
            cds.call(hook_request(prefetch=full_prefetch(conditions=("F33.2", "I10"))))
            for _ in range(12)
        )
    )
    assert [r.status_code for r in responses] == [200] * 12
    cards = [card for r in responses for card in r.json()["cards"]]
    assert len(cards) == 12
    async with cds.container.sessions() as session:
        for card in cards:
            row = await session.get(CdsCard, card["uuid"])
            assert row is not None and row.organisation_id == cds.ehr.organisation_id
            assert await session.get(StoredRecommendation, row.recommendation_id) is not None
            audited = await session.scalar(
                select(func.count()).where(
                    AuditRecord.action == "recommendation.create",
                    AuditRecord.object_id == row.recommendation_id,
                )
            )
            assert audited == 1
            stored = set(
                await session.scalars(
                    select(CdsSuggestion.uuid).where(CdsSuggestion.card_uuid == card["uuid"])
                )
            )
            assert stored == {s["uuid"] for s in card["suggestions"]}
            rules = await session.scalar(
                select(func.count()).where(CdsSuggestionRule.suggestion_uuid.in_(stored))
            )
            assert rules and rules >= len(stored), "each suggestion names the rules behind it"
    # Feedback on a card answered in a shared batch finds it.
    card = cards[5]
    accepted = card["suggestions"][0]["uuid"]
    feedback = await cds.feedback(
        "labrec-order-select",
        {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": accepted}],
                    "outcomeTimestamp": "2026-11-30T10:00:00Z",
                }
            ]
        },
    )
    assert feedback.status_code == 200, feedback.text
    async with cds.container.sessions() as session:
        stored_feedback = await session.scalar(
            select(func.count()).where(CdsFeedback.card_uuid == card["uuid"])
        )
    assert stored_feedback == 1
