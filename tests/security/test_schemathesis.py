"""Schemathesis fuzzes the live app from its own OpenAPI document with a valid API key.

Bounded by example count. Every check runs except two, for stated reasons:
- ``positive_data_acceptance``: schema-valid requests that name things that do not exist (an
  unknown panel id, a therapy coding the catalog does not map) are rightly refused with 422;
- ``allow_header_conformance``: Litestar 2.25's automatic OPTIONS answer for a path served by
  both GET and POST lists one method; OPTIONS is not part of our documented API.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import Process, free_port, wait_until_ready

MAX_EXAMPLES = "25"


def test_no_server_errors_and_no_schema_violations(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}",
        "LABREC_PUBLIC_URL": base,
        "LABREC_DEMO": "true",  # the demo path: sandbox lab and an admin key printed once
        "LABREC_RATE_LIMIT_PER_SECOND": "10000",
        "LABREC_RATE_LIMIT_BURST": "10000",
        "LABREC_AUTH_REFUSALS_PER_MINUTE": "10000",
    }
    server = Process(["serve", "--port", str(port)], env, tmp_path / "server.log")
    try:
        wait_until_ready(f"{base}/health/ready", server)
        api_key = next(line for line in server.output().splitlines() if line.startswith("lrk_"))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/schema/openapi.json",
                "--header",
                f"X-API-Key: {api_key}",
                "--max-examples",
                MAX_EXAMPLES,
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance,allow_header_conformance",
                "--seed",
                "20261124",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.stop()
    summary = result.stdout[-4000:]
    print(summary)
    assert result.returncode == 0, summary
    assert "generated" in summary
    assert " 500 " not in server.output()
