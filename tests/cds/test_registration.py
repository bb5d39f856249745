"""``labrec cds-client add`` and the 0002 migration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alembic import command

from service.cli import main
from service.persistence.cds import cds_client_by_iss
from service.persistence.cds_models import CdsClient
from service.persistence.database import alembic_config, create_engine, session_factory
from tests.cds.support import new_ec_key


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LABREC_DATABASE_URL", url)
    assert main(["org", "create", "clinic-a"]) == 0
    assert main(["org", "create", "clinic-b"]) == 0
    return url


def _client(url: str, iss: str) -> CdsClient | None:
    async def read() -> CdsClient | None:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                return await cds_client_by_iss(session, iss)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_register_with_a_jwks_url_and_origins(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "cds-client", "add", "--org", "clinic-a", "--iss", "https://ehr.example.org",
            "--jwks-url", "https://ehr.example.org/.well-known/jwks.json",
            "--origin", "https://EHR.example.org", "--origin", "https://sandbox.cds-hooks.org",
        ]
    )  # fmt: skip
    assert code == 0
    assert "registered CDS client https://ehr.example.org" in capsys.readouterr().out
    row = _client(cli_db, "https://ehr.example.org")
    assert row is not None
    assert row.jwks_url == "https://ehr.example.org/.well-known/jwks.json"
    assert row.origins == ["https://ehr.example.org", "https://sandbox.cds-hooks.org"]


def test_register_with_a_jwks_file_then_update(cli_db: str, tmp_path: Path) -> None:
    _, public = new_ec_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1"}]}))
    args = [
        "cds-client",
        "add",
        "--org",
        "clinic-a",
        "--iss",
        "urn:ehr:a",
        "--jwks-file",
        str(path),
    ]
    assert main(args) == 0
    assert main([*args, "--origin", "https://ehr.example.org"]) == 0  # same iss and org: update
    row = _client(cli_db, "urn:ehr:a")
    assert row is not None and row.jwks == {"keys": [{**public, "kid": "k1"}]}
    assert row.origins == ["https://ehr.example.org"]


def test_registration_errors(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["cds-client", "add", "--iss", "urn:ehr:b"]
    url = ["--jwks-url", "https://ehr.example.org/jwks"]
    assert main([*base, "--org", "nobody", *url]) == 1
    assert main([*base, "--org", "clinic-a", *url]) == 0
    assert main([*base, "--org", "clinic-b", *url]) == 1  # one issuer, one organisation
    assert "another organisation" in capsys.readouterr().err
    assert main([*base, "--org", "clinic-a", "--jwks-url", "ftp://x"]) == 2
    assert main([*base, "--org", "clinic-a", *url, "--origin", "https://x.org/path"]) == 2
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [{"kty": "EC", "kid": "k", "d": "secret"}]}))
    assert main([*base, "--org", "clinic-a", "--jwks-file", str(private)]) == 2
    assert "private key material" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: exactly one key source
        main([*base, "--org", "clinic-a"])


def test_migration_0002_downgrades_and_upgrades(tmp_path: Path) -> None:
    config = alembic_config(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    command.upgrade(config, "head")
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
