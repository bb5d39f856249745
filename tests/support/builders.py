"""Builders for request bodies and tenants, so tests say only what matters to them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from service.container import Container
from service.persistence.organisations import create_api_key, create_organisation


def ketamine_context(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "therapy": "ketamine",
        "route": "iv",
        "phase": "baseline",
        "conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.2"}],
        "patient": {"sex": "female", "age": 34},
        "findings": ["gi_symptoms", "fatigue"],
    }
    body.update(overrides)
    return body


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient": {
            "reference": "ehr-patient-12345",
            "given_name": "Ana",
            "family_name": "Silva",
            "birth_date": "1990-04-02",
            "sex": "female",
        },
        "practitioner": {"npi": "1234567893", "name": "Jo Lee"},
        "panel_ids": ["hepatic-function-panel", "urinalysis"],
        "conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.2"}],
    }
    body.update(overrides)
    return body


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def tenant(container: Container, name: str | None = None, role: str = "integration") -> str:
    """Create an organisation with one API key; returns the raw key."""
    now = dt.datetime.now(dt.UTC)
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, name or f"org-{uuid.uuid4().hex[:8]}", now)
        _, raw = await create_api_key(session, org.id, now, role=role)
    return raw
