"""``labrec cds-client add`` and the 0002 and 0005 migrations."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from alembic import command

from service.cli import main
from service.persistence.cds import cds_client_by_iss, upsert_cds_client
from service.persistence.cds_models import CdsClient
from service.persistence.database import alembic_config, create_engine, session_factory
from service.persistence.organisations import create_organisation
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


def test_migrations_0002_and_0005_downgrade_and_upgrade(tmp_path: Path) -> None:
    config = alembic_config(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    command.upgrade(config, "head")
    command.downgrade(config, "0004")
    command.downgrade(config, "0001")
    command.upgrade(config, "head")


def test_register_fhir_servers(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["cds-client", "add", "--org", "clinic-a", "--iss", "urn:ehr:f"]
    base += ["--jwks-url", "https://ehr.example.org/jwks"]
    servers = [
        "https://EHR.example.org/fhir/r4/",
        "https://ehr.example.org:443/fhir/r4",  # the same, once normalised
        "http://onprem.local:8080/r4",
    ]
    assert main([*base, *(arg for url in servers for arg in ("--fhir-server", url))]) == 0
    out, err = capsys.readouterr()
    assert "FHIR server: https://ehr.example.org/fhir/r4" in out
    assert "LABREC_CDS_FHIR_ALLOW_HTTP" in err  # an http server is development only
    row = _client(cli_db, "urn:ehr:f")
    assert row is not None
    assert row.fhir_servers == ["https://ehr.example.org/fhir/r4", "http://onprem.local:8080/r4"]
    assert main(base) == 0  # an update replaces the list: no FHIR server any more
    row = _client(cli_db, "urn:ehr:f")
    assert row is not None and row.fhir_servers == []
    for bad in (
        "https://user:secret@ehr.example.org/r4",
        "https://ehr.example.org/r4?tenant=1",
        "https://ehr.example.org/r4/../admin",
        "ftp://ehr.example.org/r4",
        "ehr.example.org/r4",
    ):
        assert main([*base, "--fhir-server", bad]) == 2, bad
        err = capsys.readouterr().err
        assert "--fhir-server" in err and "secret" not in err, bad


async def test_migration_0005_gives_existing_clients_no_fhir_server(database_url: str) -> None:
    """Up from 0004 on both databases: existing clients keep working, with an empty list."""
    now = dt.datetime.now(dt.UTC)
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            org = await create_organisation(session, "clinic-m", now)
            await upsert_cds_client(
                session,
                organisation_id=org.id,
                iss="urn:ehr:m",
                jwks_url="https://ehr.example.org/jwks",
                jwks=None,
                origins=(),
                now=now,
                fhir_servers=["https://ehr.example.org/r4"],
            )
    finally:
        await engine.dispose()
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0004")
    await asyncio.to_thread(command.upgrade, config, "head")
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            row = await cds_client_by_iss(session, "urn:ehr:m")
    finally:
        await engine.dispose()
    assert row is not None and row.fhir_servers == []
