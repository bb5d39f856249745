"""The built-in sandbox lab is an explicit choice, loopback only, and answers nobody without its
token (issue 10, finding 1). Before, a missing LABREC_LAB_BASE_URL mounted it, open to anyone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import SettingsError, check_lab_choice, load_settings
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.processes import Process, free_port, wait_until_ready
from tests.ui.helpers import sign_in

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
SANDBOX = "/sandbox-lab/fhir"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (what a container serves on; these tests expect refusal)


def test_no_lab_and_no_sandbox_flag_refuses_to_build_the_app(sqlite_url: str) -> None:
    with pytest.raises(SettingsError, match="no lab configured"):
        create_app(make_settings(sqlite_url, sandbox=False), configure_logs=False)


def test_demo_or_sandbox_flag_is_the_only_way_to_the_sandbox() -> None:
    assert check_lab_choice(load_settings({"LABREC_SANDBOX": "true"})) is None
    assert check_lab_choice(load_settings({"LABREC_DEMO": "true"})) is None
    with pytest.raises(SettingsError, match="LABREC_SANDBOX=true"):
        check_lab_choice(load_settings({}))
    with pytest.raises(SettingsError, match="choose the real lab"):
        load_settings(
            {
                "LABREC_SANDBOX": "true",
                "LABREC_LAB_BASE_URL": "https://lab.example.org/fhir",
                "LABREC_LAB_WEBHOOK_SECRET": SECRET,
            }
        )


@pytest.mark.parametrize("host", [ANY_ADDRESS, "::", "192.168.1.20", "labrec.example.org"])
def test_sandbox_refused_on_a_non_loopback_address_unless_forced(host: str) -> None:
    settings = load_settings({"LABREC_SANDBOX": "true"})
    with pytest.raises(SettingsError, match="loopback only"):
        check_lab_choice(settings, bind_host=host)
    with pytest.raises(SettingsError, match="LABREC_PUBLIC_URL"):
        check_lab_choice(
            load_settings({"LABREC_SANDBOX": "true", "LABREC_PUBLIC_URL": f"http://{host}:8000"})
        )
    forced = load_settings({"LABREC_SANDBOX": "true", "LABREC_SANDBOX_ALLOW_PUBLIC": "true"})
    assert check_lab_choice(forced, bind_host=host) is None
    for loopback in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert check_lab_choice(settings, bind_host=loopback) is None


async def test_with_a_real_lab_there_is_no_sandbox_route(database_url: str) -> None:
    settings = make_settings(
        database_url, lab_base_url="http://lab.invalid/fhir", lab_webhook_secret=SECRET
    )
    async with running_app(settings) as (client, container):
        assert container.sandbox_token is None
        for path in ("/_sandbox/orders", "/_sandbox/faults", "/_sandbox/stats", "/Task"):
            response = await client.get(SANDBOX + path)
            assert response.status_code == 404, path
        advance = await client.post(SANDBOX + "/_sandbox/advance/x", params={"to": "rejected"})
        assert advance.status_code == 404


async def test_explicit_sandbox_needs_its_token_on_every_route(database_url: str) -> None:
    async with running_app(make_settings(database_url, sandbox=True)) as (client, container):
        token = container.sandbox_token
        assert token
        refused = [
            await client.get(SANDBOX + "/_sandbox/orders"),
            await client.post(SANDBOX + "/_sandbox/faults", json={"error_rate": 1}),
            await client.post(SANDBOX + "/_sandbox/advance/x", params={"to": "rejected"}),
            await client.get(SANDBOX + "/Task", params={"identifier": "x"}),
            # an admin API key of labrec is no sandbox credential either
            await client.get(SANDBOX + "/_sandbox/orders", headers={"X-API-Key": token}),
        ]
        allowed = await client.get(
            SANDBOX + "/_sandbox/orders", headers={"Authorization": f"Bearer {token}"}
        )
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert allowed.status_code == 200 and allowed.json() == []


def _exit_of(process: Process) -> tuple[int, str]:
    try:
        code = process.popen.wait(60)
    finally:
        process.stop()
    return code, process.output()


def test_serve_refuses_to_start_without_a_lab_or_the_sandbox_flag(tmp_path: Path) -> None:
    env = {"LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    port = free_port()
    code, output = _exit_of(Process(["serve", "--port", str(port)], env, tmp_path / "s.log"))
    assert code == 2
    assert "no lab configured" in output and "LABREC_LAB_BASE_URL" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)


def test_serve_refuses_the_sandbox_on_a_public_address(tmp_path: Path) -> None:
    env = {
        "LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        "LABREC_SANDBOX": "true",
    }
    args = ["serve", "--host", ANY_ADDRESS, "--port", str(free_port())]
    code, output = _exit_of(Process(args, env, tmp_path / "s.log"))
    assert code == 2
    assert "loopback only" in output and "LABREC_SANDBOX_ALLOW_PUBLIC" in output


async def test_demo_path_prints_a_working_sign_in_and_sandbox_token(tmp_path: Path) -> None:
    """``labrec serve --demo``: one command, then the printed password signs in to the UI, the
    printed admin key works, and the printed sandbox token is what the sandbox asks for."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        "LABREC_PUBLIC_URL": base,
    }
    process = Process(["serve", "--demo", "--port", str(port)], env, tmp_path / "demo.log")
    try:
        wait_until_ready(f"{base}/health/ready", process)
        output = process.output()
        found = re.search(r"email (\S+) password (\S+)", output)
        token = re.search(r"\(Authorization: Bearer, shown once\): (\S+)", output)
        key = re.search(r"admin API key \(X-API-Key\):\n(\S+)", output)
        assert found and token and key, output
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            wrong = await sign_in(client, found.group(1), "not-the-password")
            signed = await sign_in(client, found.group(1), found.group(2))
            page = await client.get("/ui/recommendations/new")
            keys = await client.get("/v1/admin/api-keys", headers={"X-API-Key": key.group(1)})
            bare = await client.get(f"{SANDBOX}/_sandbox/orders")
            with_token = await client.get(
                f"{SANDBOX}/_sandbox/orders",
                headers={"Authorization": f"Bearer {token.group(1)}"},
            )
    finally:
        process.stop()
    assert wrong.status_code == 401
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/recommendations/new"
    assert page.status_code == 200
    assert keys.status_code == 200
    assert bare.status_code == 401 and with_token.status_code == 200
    assert output.count(found.group(2)) == 1  # the password is printed once, and never logged


def _image_command() -> list[str]:
    """The container image's ``CMD`` (its entrypoint is ``labrec``), read from the Dockerfile."""
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    line = next(x for x in dockerfile.splitlines() if x.startswith("CMD "))
    return list(json.loads(line.removeprefix("CMD ")))


@pytest.mark.parametrize(
    ("env", "message"),
    [({}, "no lab configured"), ({"LABREC_SANDBOX": "true"}, "loopback only")],
)
def test_the_image_command_refuses_without_a_lab_or_on_public_sandbox(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    command = _image_command()
    assert command[:3] == ["serve", "--host", ANY_ADDRESS]
    command[command.index("--port") + 1] = str(free_port())
    env = {"LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **env}
    code, output = _exit_of(Process(command, env, tmp_path / "image.log"))
    assert code == 2 and message in output


STANDALONE_TOKEN = "standalone-token-0123456789"


async def test_standalone_sandbox_with_a_token_needs_it_on_every_route() -> None:
    """``labrec sandbox-lab`` with LABREC_SANDBOX_TOKEN: the FHIR routes (every order, patient
    data) need the token as much as the ``_sandbox/*`` control routes; labrec's lab client sends
    it (LABREC_LAB_BEARER_TOKEN)."""
    from service.labs.sandbox import create_sandbox_app
    from service.labs.sandbox_config import SandboxConfig
    from tests.support.app import lifespan_of

    app = create_sandbox_app(SandboxConfig(step_delay=0, control_token=STANDALONE_TOKEN))
    transport = httpx.ASGITransport(app=app)
    async with lifespan_of(app), httpx.AsyncClient(transport=transport, base_url="http://lab") as c:
        for method, path in (
            ("GET", "/Task?identifier=x"),
            ("POST", "/"),
            ("POST", "/ServiceRequest/$cancel-requisition"),
            ("GET", "/_sandbox/orders"),
        ):
            response = await c.request(method, path, content=b"{}")
            assert response.status_code == 401, (path, response.text)
            wrong = {"Authorization": "Bearer not-the-token-000000"}
            assert (await c.request(method, path, headers=wrong)).status_code == 401
        bearer = {"Authorization": f"Bearer {STANDALONE_TOKEN}"}
        assert (await c.get("/Task?identifier=x", headers=bearer)).status_code == 200


async def test_labrec_sends_lab_bearer_token_to_the_standalone_sandbox(sqlite_url: str) -> None:
    from service.container import build_container
    from service.labs.sandbox import create_sandbox_app
    from service.labs.sandbox_config import SandboxConfig
    from tests.support.app import lifespan_of

    lab_app = create_sandbox_app(SandboxConfig(step_delay=0, control_token=STANDALONE_TOKEN))
    seen: list[int] = []

    class Recording(httpx.ASGITransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            seen.append(response.status_code)
            return response

    settings = make_settings(
        sqlite_url,
        lab_base_url="http://lab",
        lab_webhook_secret=SECRET,
        lab_bearer_token=STANDALONE_TOKEN,
    )
    container = build_container(settings, lab_transport=Recording(app=lab_app))
    async with lifespan_of(lab_app):
        try:
            assert await container.lab.fetch_status("no-such-order") is None
        finally:
            await container.aclose()
    assert seen == [200]  # without the token this is a 401


def test_standalone_sandbox_refuses_a_public_host_unless_forced(tmp_path: Path) -> None:
    env = {"LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    args = ["sandbox-lab", "--host", ANY_ADDRESS, "--port", str(free_port())]
    code, output = _exit_of(Process(args, env, tmp_path / "s.log"))
    assert code == 2
    assert "loopback only" in output and "--allow-public" in output
