"""Feedback: validation (cds-fb-1..3), idempotent storage, and per-rule counts per organisation."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, select

from service.persistence.cds_models import CdsFeedback
from tests.cds.conftest import Cds
from tests.cds.support import fixtures_dir, full_prefetch, hook_request, register_ehr

SERVICE = "labrec-order-select"


async def _card(cds: Cds, **kwargs: Any) -> dict[str, Any]:
    response = await cds.call(hook_request(prefetch=full_prefetch()), **kwargs)
    assert response.status_code == 200, response.text
    card: dict[str, Any] = response.json()["cards"][0]
    return card


def _by_panel(card: dict[str, Any], name: str) -> dict[str, Any]:
    return next(
        s for s in card["suggestions"] if s["actions"][0]["resource"]["code"]["text"] == name
    )


async def _rows(cds: Cds) -> int:
    async with cds.container.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(CdsFeedback)) or 0)


async def _counts(cds: Cds, rule: str, api_key: str | None = None) -> dict[str, Any]:
    response = await cds.client.get(
        f"/v1/catalog/rules/{rule}/feedback",
        headers={"X-API-Key": api_key or cds.ehr.api_key},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_accepted_and_overridden_feedback_is_stored_once_and_counted(cds: Cds) -> None:
    card = await _card(cds)
    hepatic = _by_panel(card, "Hepatic function panel (LFT)")
    urinalysis = _by_panel(card, "Urinalysis, complete")
    accepted = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": hepatic["uuid"]}, {"id": urinalysis["uuid"]}],
                "outcomeTimestamp": "2026-11-20T10:05:31Z",
            }
        ]
    }
    for _ in range(3):  # clients may resend the same feedback
        response = await cds.feedback(SERVICE, accepted)
        assert response.status_code == 200, response.text
    assert await _rows(cds) == 2

    other_card = await _card(cds)
    overridden = {
        "feedback": [
            {
                "card": other_card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "code": "action-completed",
                        "system": "http://terminology.hl7.org/CodeSystem/"
                        "non-adherence-reason-codes",
                        "display": "Recommended action was already completed",
                    },
                    "userComment": "done last week at another lab",
                },
                "outcomeTimestamp": "2026-11-20T10:06:00.52+01:00",
            }
        ]
    }
    assert (await cds.feedback(SERVICE, overridden)).status_code == 200
    assert (await cds.feedback(SERVICE, overridden)).status_code == 200
    assert await _rows(cds) == 3

    counts = await _counts(cds, "ketamine-hepatic")
    assert counts == {
        "rule_id": "ketamine-hepatic",
        "suggestions_issued": 2,
        "cards_issued": 2,
        "accepted": 1,
        "overridden": 1,
        "override_reasons": [
            {
                "code": "action-completed",
                "count": 1,
                "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
            }
        ],
    }
    assert (await _counts(cds, "ketamine-urinalysis"))["accepted"] == 1
    untouched = await _counts(cds, "ketamine-cbc")
    assert untouched["accepted"] == 0 and untouched["overridden"] == 1
    assert (await _counts(cds, "lithium-level"))["suggestions_issued"] == 0


async def test_a_later_outcome_for_the_same_card_is_a_new_fact(cds: Cds) -> None:
    card = await _card(cds)
    suggestion = card["suggestions"][0]["uuid"]
    for timestamp in ("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"):
        body = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": suggestion}],
                    "outcomeTimestamp": timestamp,
                }
            ]
        }
        assert (await cds.feedback(SERVICE, body)).status_code == 200
    assert await _rows(cds) == 2


async def test_other_organisations_neither_see_nor_touch_the_counts(cds: Cds) -> None:
    card = await _card(cds)
    intruder = await register_ehr(cds.container)
    suggestion = card["suggestions"][0]["uuid"]
    body = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": "2026-11-20T10:00:00Z",
            }
        ]
    }
    assert (await cds.feedback(SERVICE, body, ehr=intruder)).status_code == 200
    assert await _rows(cds) == 0  # not their card: ignored
    assert (await cds.feedback("labrec-order-sign", body)).status_code == 200
    assert await _rows(cds) == 0  # not this service's card
    assert (await cds.feedback(SERVICE, body)).status_code == 200
    assert await _rows(cds) == 1
    rule = "ketamine-pregnancy-test"
    mine = await _counts(cds, rule)
    theirs = await _counts(cds, rule, api_key=intruder.api_key)
    assert mine["suggestions_issued"] == 1
    assert theirs == {**mine, "suggestions_issued": 0, "cards_issued": 0, "accepted": 0}


async def test_rule_counts_need_a_key_and_a_known_rule(cds: Cds) -> None:
    missing = await cds.client.get(
        "/v1/catalog/rules/nope/feedback", headers={"X-API-Key": cds.ehr.api_key}
    )
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    anonymous = await cds.client.get("/v1/catalog/rules/ketamine-hepatic/feedback")
    assert anonymous.status_code == 401


INVALID: dict[str, Any] = {
    "no-array": {"feedback": {}},
    "cds-fb-1-outcome": {
        "feedback": [
            {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
        ]
    },
    "cds-fb-2-accepted-without-suggestions": {
        "feedback": [
            {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
        ]
    },
    "cds-fb-3-empty-override-reason": {
        "feedback": [
            {
                "card": "c",
                "outcome": "overridden",
                "overrideReason": {},
                "outcomeTimestamp": "2026-11-20T10:00:00Z",
            }
        ]
    },
    "no-timestamp": {"feedback": [{"card": "c", "outcome": "overridden"}]},
    "timestamp-without-offset": {
        "feedback": [
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00"}
        ]
    },
    "not-json": "{",
}


async def test_invalid_feedback_is_400(cds: Cds) -> None:
    path = f"/cds-services/{SERVICE}/feedback"
    for kind, body in INVALID.items():
        headers = {**cds.ehr.headers(path), "Content-Type": "application/json"}
        if isinstance(body, str):
            response = await cds.client.post(path, content=body.encode(), headers=headers)
        else:
            response = await cds.client.post(path, json=body, headers=headers)
        assert response.status_code == 400, (kind, response.text)
        assert response.json()["resourceType"] == "OperationOutcome", kind


async def test_the_spec_feedback_examples_are_accepted(cds: Cds) -> None:
    """The three examples of the spec's Feedback section (their cards are not ours: ignored)."""
    examples = _spec_examples()
    assert len(examples) == 3
    for example in examples:
        response = await cds.feedback(SERVICE, example)
        assert response.status_code == 200, response.text
    assert await _rows(cds) == 0


def _spec_examples() -> list[dict[str, Any]]:
    spec = (fixtures_dir() / "hl7-cds-hooks" / "index.md").read_text(encoding="utf-8")
    section = spec[spec.index("### Feedback") : spec.index("#### Feedback on System Actions")]
    return [json.loads(block) for block in re.findall(r"```json\s*(\{.*?\})\s*```", section, re.S)]


async def test_feedback_with_a_token_for_discovery_is_401(cds: Cds) -> None:
    path = f"/cds-services/{SERVICE}/feedback"
    response = await cds.client.post(
        path, json={"feedback": []}, headers=cds.ehr.headers("/cds-services")
    )
    assert response.status_code == 401
