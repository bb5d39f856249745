"""(e) The CDS Hooks ``order-select`` call: a registered EHR (P-384 key, JWKS file), one signed
token per request (labrec accepts each ``jti`` once), the 30 KiB full-prefetch hook request of
``bench.cds_latency`` (patient, 8 conditions, 5 medications, 50 lab Observations, 20 lab orders),
driven by wrk like the other runs.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from bench.cds_latency import request_body
from bench.contexts import write_lines
from bench.procs import labrec_cli

if TYPE_CHECKING:
    from bench.run import Bench

SERVICE = "/cds-services/labrec-order-select"
ISSUER = "https://ehr.bench.example.org"


def prepare(
    bench: Bench, env: dict[str, str], base: str, tokens: list[int], tag: str = ""
) -> tuple[list[Path], Path]:
    """Register the bench EHR for organisation 'bench'; one token file per count in ``tokens``
    (warm-up, check, measured run: a token is good once) and the hook bodies."""
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = bench.bodies / f"ehr-jwks{tag}.json"
    jwks.write_text(
        json.dumps({"keys": [{**public, "kid": "bench", "use": "sig", "alg": "ES384"}]})
    )
    labrec_cli(
        env, "cds-client", "add", "--org", "bench", "--iss", ISSUER, "--jwks-file", str(jwks)
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": base + SERVICE, "exp": now + 280, "iat": now}
    files = []
    for n, count in enumerate(tokens):
        signed = [
            jwt.encode(
                {**claims, "jti": uuid.uuid4().hex},
                key,
                algorithm="ES384",
                headers={"kid": "bench", "typ": "JWT"},
            )
            for _ in range(count)
        ]
        files.append(write_lines(bench.bodies / f"cds-tokens{tag}-{n}.txt", signed))
    bodies = []
    for _ in range(20):
        body = request_body()
        bodies.append(json.dumps(body, separators=(",", ":")))
    return files, write_lines(bench.bodies / f"cds-bodies{tag}.jsonl", bodies)
