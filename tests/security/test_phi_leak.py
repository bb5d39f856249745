"""Patient data never reaches logs, error bodies or outbox error text.

The whole flow runs on a real server (recommend, order, lab hand-off through a faulty sandbox lab,
signed lab events, cancel, bad input) with marker values in every patient field; then every log
line, every error body and every stored error text is searched for the markers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from service.labs.webhooks import new_secret
from tests.support.processes import Process, free_port, sandbox_lab, wait_until_ready

MARKERS = {
    "reference": "ZZCANARYREF",
    "given_name": "ZZCANARYGIVEN",
    "family_name": "ZZCANARYFAMILY",
    "notes": "ZZCANARYNOTE taking ketamine for PTSD",
}


def _order(panel_ids: list[str]) -> dict:
    return {
        "patient": {
            "reference": MARKERS["reference"],
            "given_name": MARKERS["given_name"],
            "family_name": MARKERS["family_name"],
            "birth_date": "1971-03-09",
            "sex": "female",
        },
        "practitioner": {"npi": "1234567893", "name": "Jo Lee"},
        "panel_ids": panel_ids,
        "conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F43.10"}],
        "notes": MARKERS["notes"],
    }


def _assert_clean(where: str, text_: str) -> None:
    for name, marker in MARKERS.items():
        assert marker.split()[0] not in text_, f"{name} leaked into {where}"
    assert "1971-03-09" not in text_, f"birth date leaked into {where}"


def test_no_patient_data_in_logs_errors_or_outbox(tmp_path: Path) -> None:
    secret = new_secret()
    db = tmp_path / "phi.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with sandbox_lab(
        tmp_path,
        error_rate="0.4",
        drop_rate="0.2",
        step_delay="0.2",
        seed="3",
        webhook_url=f"{base}/v1/lab-events",
        webhook_secret=secret,
    ) as lab:
        env = {
            "LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "LABREC_LAB_BASE_URL": lab,
            "LABREC_LAB_WEBHOOK_SECRET": secret,
            "LABREC_PUBLIC_URL": base,
            "LABREC_DEMO": "true",  # prints an admin key (the lab stays the external one)
            "LABREC_DISPATCH_BACKOFF_BASE": "0.05",
            "LABREC_DISPATCH_BACKOFF_MAX": "0.2",
            "LABREC_DISPATCH_POLL_INTERVAL": "0.05",
            "LABREC_LOG_LEVEL": "DEBUG",
        }
        server = Process(["serve", "--port", str(port)], env, tmp_path / "server.log")
        try:
            wait_until_ready(f"{base}/health/ready", server)
            key = server.output().strip().splitlines()
            api_key = next(line for line in key if line.startswith("lrk_"))
            bodies = _exercise(base, api_key)
        finally:
            server.stop()
        log = server.output()
    assert "request" in log, "the server did log"
    _assert_clean("server log", log)
    for body in bodies:
        _assert_clean("an error body", body)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        errors = connection.execute(text("SELECT coalesce(last_error, '') FROM outbox")).scalars()
        details = connection.execute(
            text("SELECT coalesce(detail, '') FROM order_attempts")
        ).scalars()
        stored = "\n".join([*errors, *details])
    engine.dispose()
    assert stored.strip(), "faults left error text to check"
    _assert_clean("outbox and attempt error text", stored)


def _exercise(base: str, api_key: str) -> list[str]:
    """Run the flow; returns every non-2xx body for inspection."""
    errors: list[str] = []
    with httpx.Client(base_url=base, headers={"X-API-Key": api_key}, timeout=10) as client:
        rec = client.post(
            "/v1/recommendations",
            json={
                "therapy": "ketamine",
                "route": "iv",
                "phase": "baseline",
                "conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F43.10"}],
                "patient": {"sex": "female", "age": 55},
                "findings": ["substance_use_concern"],
            },
        )
        assert rec.status_code == 200
        panels = [s["panel"]["id"] for s in rec.json()["suggestions"][:3]]
        ids = []
        for i in range(6):
            placed = client.post(
                "/v1/orders", json=_order(panels), headers={"Idempotency-Key": f"phi-{i}"}
            )
            assert placed.status_code == 201
            ids.append(placed.json()["id"])
        bad_inputs = [
            {
                **_order(panels),
                "patient": {**_order(panels)["patient"], "birth_date": MARKERS["given_name"]},
            },
            {**_order(panels), "panel_ids": [MARKERS["family_name"]]},
            {
                **_order(panels),
                "patient": {**_order(panels)["patient"], "sex": MARKERS["reference"]},
            },
            {**_order(panels), MARKERS["notes"]: 1},
        ]
        for i, body in enumerate(bad_inputs):
            response = client.post("/v1/orders", json=body, headers={"Idempotency-Key": f"bad-{i}"})
            assert response.status_code == 422, response.text
            errors.append(response.text)
        errors.append(
            client.get(f"/v1/orders?patient_reference={MARKERS['reference']}x&cursor=zz").text
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = [client.get(f"/v1/orders/{i}").json()["status"] for i in ids]
            if all(s not in ("queued",) for s in statuses) and "received" in json.dumps(statuses):
                break
            time.sleep(0.2)
        assert any(s != "queued" for s in statuses), statuses
        client.post(f"/v1/orders/{ids[0]}/cancel")
    return errors
