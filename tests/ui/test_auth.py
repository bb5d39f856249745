"""Sign-in, sessions, lock-out, CSRF and security headers of the practitioner UI."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from service.persistence.ui_models import UiSession
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.ui.conftest import MovableClock
from tests.ui.helpers import (
    PASSWORD,
    csrf_of,
    hidden_fields,
    make_user,
    recommendation_form,
    sign_in,
)

GENERIC = "The email or password is wrong."
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


async def test_good_password_starts_a_session_with_a_hardened_cookie(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    response = await sign_in(client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/recommendations/new"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("labrec_session=")
    )
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/ui" in cookie
    assert "Secure" not in cookie  # the public URL is http in tests
    token = cookie.split(";")[0].split("=", 1)[1]
    async with container.sessions() as session:
        ids = list((await session.execute(select(UiSession.id))).scalars())
    assert ids == [hashlib.sha256(token.encode()).hexdigest()]  # only the hash is stored
    page = await client.get("/ui/recommendations/new")
    assert page.status_code == 200
    assert "Jo Lee" in page.text


async def test_wrong_password_and_unknown_email_get_one_generic_message(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    wrong = await sign_in(client, email, "not the password")
    unknown = await sign_in(client, "nobody@clinic.test", PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert GENERIC in response.text
        assert "labrec_session=" not in response.headers.get("set-cookie", "")
    assert (await client.get("/ui/orders")).status_code == 303


async def test_five_failures_lock_the_account_for_fifteen_minutes(ui, clock: MovableClock) -> None:
    client, container = ui
    _, email = await make_user(container)
    for _ in range(5):
        assert (await sign_in(client, email, "wrong password")).status_code == 401
    locked = await sign_in(client, email)  # the right password, but locked
    assert locked.status_code == 401
    assert GENERIC in locked.text
    clock.advance(minutes=14)
    assert (await sign_in(client, email)).status_code == 401
    clock.advance(minutes=2)
    assert (await sign_in(client, email)).status_code == 303


async def test_a_success_resets_the_failure_count(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    for _ in range(4):
        await sign_in(client, email, "wrong password")
    assert (await sign_in(client, email)).status_code == 303
    client.cookies.clear()
    for _ in range(4):
        await sign_in(client, email, "wrong password")
    assert (await sign_in(client, email)).status_code == 303


async def test_many_failures_from_one_address_are_throttled(sqlite_url: str) -> None:
    async with running_app(make_settings(sqlite_url), run_worker=False) as (client, container):
        _, email = await make_user(container)
        for i in range(20):
            await sign_in(client, f"guess{i}@clinic.test", "wrong password")
        throttled = await sign_in(client, email)
        assert throttled.status_code == 429
        assert "Too many failed sign-ins" in throttled.text


async def test_sign_in_form_needs_its_own_token(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    forged = await client.post(
        "/ui/login", data={"email": email, "password": PASSWORD, "login_csrf": "forged"}
    )
    assert forged.status_code == 403
    assert "labrec_session=" not in forged.headers.get("set-cookie", "")


async def test_post_without_the_session_csrf_token_is_rejected(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    await sign_in(client, email)
    for token in (None, "forged-token"):
        form = recommendation_form(token or "")
        if token is None:
            del form["_csrf"]
        response = await client.post("/ui/recommendations", data=form)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "This form has expired" in response.text
    logout = await client.post("/ui/logout", data={})
    assert logout.status_code == 403  # logout is a POST with CSRF too
    page = await client.get("/ui/recommendations/new")
    assert page.status_code == 200  # still signed in


async def test_sign_out_ends_the_session_on_the_server(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    signed_in = await sign_in(client, email)
    token = signed_in.cookies["labrec_session"]
    page = await client.get("/ui/orders")
    out = await client.post("/ui/logout", data={"_csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/login?signed_out=1"
    client.cookies.set("labrec_session", token, path="/ui")  # a stolen copy no longer works
    again = await client.get("/ui/orders")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/ui/login")


async def test_pages_send_to_sign_in_and_back(ui) -> None:
    client, container = ui
    _, email = await make_user(container)
    response = await client.get("/ui/orders")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Forders"
    login = await client.get(response.headers["location"])
    assert hidden_fields(login.text)["next"] == ["/ui/orders"]
    for target, expected in (
        ("/ui/orders", "/ui/orders"),
        ("//evil.test/x", "/ui/recommendations/new"),
        ("https://evil.test/ui/", "/ui/recommendations/new"),
    ):
        client.cookies.clear()
        login = await client.get("/ui/login")
        token = hidden_fields(login.text)["login_csrf"][0]
        done = await client.post(
            "/ui/login",
            data={"email": email, "password": PASSWORD, "login_csrf": token, "next": target},
        )
        assert done.headers["location"] == expected


async def test_security_headers_on_every_ui_response(ui) -> None:
    client, _ = ui
    for path in ("/ui/login", "/ui/no-such-page", "/ui/static/ui.js"):
        response = await client.get(path)
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in response.headers
    login = await client.get("/ui/login")
    assert "<script>" not in login.text and " style=" not in login.text  # CSP-safe markup
    assert login.headers["cache-control"] == "no-store"


async def test_https_public_url_means_secure_cookies_and_hsts(sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url,
        public_url="https://labrec.example",  # a public host: a real lab, never the sandbox
        lab_base_url="https://lab.invalid/fhir",
        lab_webhook_secret="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )
    async with running_app(settings, run_worker=False) as (client, container):
        _, email = await make_user(container)
        login = await client.get("/ui/login")
        assert "Secure" in login.headers["set-cookie"]
        assert login.headers["strict-transport-security"].startswith("max-age=")
        token = hidden_fields(login.text)["login_csrf"][0]
        signed_in = await client.post(  # the test client sends no Secure cookie over http
            "/ui/login",
            data={"email": email, "password": PASSWORD, "login_csrf": token},
            headers={"Cookie": f"labrec_login_csrf={token}"},
        )
        assert signed_in.status_code == 303
        session_cookie = next(
            c for c in signed_in.headers.get_list("set-cookie") if "labrec_session=" in c
        )
        assert "Secure" in session_cookie
