"""Driving the UI over HTTP like a browser would: forms, hidden CSRF fields, cookies."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any

import httpx

from service.container import Container
from service.persistence.organisations import create_organisation
from service.usecases.accounts import AccountService

PASSWORD = "correct horse battery staple"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


async def make_user(
    container: Container,
    *,
    org: str | None = None,
    email: str | None = None,
    password: str = PASSWORD,
    name: str | None = "Jo Lee",
    npi: str | None = "1234567893",
) -> tuple[str, str]:
    """Creates the organisation when new, then a practitioner; returns (org name, email)."""
    org = org or f"org-{uuid.uuid4().hex[:8]}"
    email = email or f"{uuid.uuid4().hex[:8]}@clinic.test"
    async with container.sessions() as session, session.begin():
        from service.persistence.organisations import organisation_by_name

        if await organisation_by_name(session, org) is None:
            await create_organisation(session, org, dt.datetime.now(dt.UTC))
    await AccountService(container.sessions, container.clock).create_user(
        organisation=org, email=email, password=password, display_name=name, npi=npi
    )
    return org, email


def hidden_fields(page: str, action: str | None = None) -> dict[str, list[str]]:
    """Hidden inputs of the form posting to ``action`` (or of the whole page)."""
    if action is not None:
        start = page.index(f'action="{action}"')
        page = page[start : page.index("</form>", start)]
    fields: dict[str, list[str]] = {}
    for name, value in _HIDDEN.findall(page):
        fields.setdefault(name, []).append(html.unescape(value))
    return fields


def csrf_of(page: str) -> str:
    return hidden_fields(page)["_csrf"][0]


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    login = await client.get("/ui/login")
    token = hidden_fields(login.text)["login_csrf"][0]
    return await client.post(
        "/ui/login",
        data={"email": email, "password": password, "login_csrf": token, "next": ""},
    )


def recommendation_form(csrf: str, **overrides: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "_csrf": csrf,
        "therapy": "ketamine",
        "route": "iv",
        "phase": "baseline",
        "condition": ["F33.2", "", ""],
        "sex": "female",
        "age": "34",
        "pregnancy": "no",
        "finding": ["gi_symptoms", "fatigue"],
        "recent_panel": ["", "", ""],
        "recent_date": ["", "", ""],
        "vendors": "",
    }
    form.update(overrides)
    return form


def order_form(csrf: str, panels: list[str], **overrides: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "_csrf": csrf,
        "panel": panels,
        "patient_reference": "ehr-patient-12345",
        "given_name": "Ana",
        "family_name": "Silva",
        "birth_date": "1990-04-02",
        "patient_sex": "female",
        "npi": "1234567893",
        "practitioner_name": "Jo Lee",
        "notes": "",
    }
    form.update(overrides)
    return form
