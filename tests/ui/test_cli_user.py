"""`labrec user create --password-stdin`: the account works in the UI; bad input is refused."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from service.cli import main
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.ui.helpers import sign_in

PASSWORD = "a long enough passphrase"


def _cli(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str, stdin: str = "") -> int:
    monkeypatch.setenv("LABREC_DATABASE_URL", url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(list(argv))


def test_user_create_then_sign_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert _cli(monkeypatch, url, "org", "create", "Clinic A") == 0
    create = ("user", "create", "--org", "Clinic A", "--email", "Jo@Clinic.test")
    assert (
        _cli(
            monkeypatch, url, *create, "--name", "Jo Lee", "--password-stdin", stdin=PASSWORD + "\n"
        )
        == 0
    )
    out = capsys.readouterr()
    assert "created practitioner jo@clinic.test" in out.out
    assert PASSWORD not in out.out + out.err

    assert _cli(monkeypatch, url, *create, "--password-stdin", stdin=PASSWORD + "\n") == 1
    assert "already exists" in capsys.readouterr().err
    other = ("user", "create", "--org", "Nowhere", "--email", "x@clinic.test", "--password-stdin")
    assert _cli(monkeypatch, url, *other, stdin=PASSWORD) == 1
    assert "No organisation" in capsys.readouterr().err
    short = ("user", "create", "--org", "Clinic A", "--email", "y@clinic.test", "--password-stdin")
    assert _cli(monkeypatch, url, *short, stdin="short\n") == 1
    assert "at least 12 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the password never goes on the command line
        _cli(monkeypatch, url, "user", "create", "--org", "Clinic A", "--email", "z@clinic.test")

    async def signs_in() -> int:
        async with running_app(make_settings(url), run_worker=False) as (client, _):
            response = await sign_in(client, "jo@clinic.test", PASSWORD)
            return int(response.status_code)

    import asyncio

    assert asyncio.run(signs_in()) == 303
