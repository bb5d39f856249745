"""SSRF through ``fhirServer`` (issue 10, item 3): labrec reads only from a FHIR base URL
registered for the calling client, only at public addresses (or listed private hosts), and
connects to exactly the addresses it checked.

Refusals answer as if there were no FHIR server (412 when the patient is then missing, as the
CDS Hooks spec has it) and are logged as a reason code without patient data. "No connection"
is proved with a FHIR server on loopback that records every request and must stay untouched,
beside a positive control that reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from service.cds.discovery import PREFETCH
from service.cds.egress import (
    FhirServerGuard,
    FhirServerRefused,
    normalise_base_url,
    pinned_transport,
    private_hosts,
    refusal,
    within,
)
from service.cds.prefetch import FhirReader, Slot
from service.cds.wire import HookCall, parse_hook_request
from service.container import Container
from tests.cds.conftest import Cds
from tests.cds.support import FakeServer, Route, fake_server, full_prefetch, hook_request
from tests.cds.support import register_ehr as register
from tests.conftest import make_settings
from tests.support.app import running_app

# --- URLs -----------------------------------------------------------------------------------

NORMALISED = {
    "https://EHR.example.org/fhir/R4/": "https://ehr.example.org/fhir/R4",
    "HTTPS://ehr.example.org:443/fhir": "https://ehr.example.org/fhir",
    "http://ehr.example.org:80": "http://ehr.example.org",
    "https://ehr.example.org:8443/": "https://ehr.example.org:8443",
    "https://[2001:DB8:0::1]:9443/r4": "https://[2001:db8::1]:9443/r4",
    "http://127.0.0.1:8080/r4": "http://127.0.0.1:8080/r4",
    "https://fhir.epic.example/api/FHIR/R4": "https://fhir.epic.example/api/FHIR/R4",
}

MALFORMED_URLS = {
    "userinfo": "https://user:secret@ehr.example.org/r4",
    "user-only": "https://ehr.example.org@127.0.0.1/r4",
    "query": "https://ehr.example.org/r4?x=1",
    "fragment": "https://ehr.example.org/r4#x",
    "dot-dot": "https://ehr.example.org/r4/../admin",
    "dot": "https://ehr.example.org/./r4",
    "percent-dot-dot": "https://ehr.example.org/r4/%2e%2e/admin",
    "percent-slash": "https://ehr.example.org/r4%2F..%2Fadmin",
    "empty-segment": "https://ehr.example.org//r4",
    "backslash": "https://ehr.example.org/r4\\..\\admin",
    "space": "https://ehr.example.org/r 4",
    "control": "https://ehr.example.org/r4\x00",
    "not-http": "ftp://ehr.example.org/r4",
    "no-slashes": "https:ehr.example.org/r4",
    "relative": "/fhir",
    "no-host": "https:///r4",
    "unicode-host": "https://ehr.exämple.org/r4",
    "decimal-ipv4": "http://2130706433/r4",
    "hex-ipv4": "http://0x7f.1/r4",
    "short-ipv4": "http://127.1/r4",
    "ipv6-zone": "http://[fe80::1%25eth0]/r4",
    "broken-ipv6": "http://[::1/r4",
    "text-after-ipv6": "http://[::1]evil.example.org/r4",
    "bad-port": "https://ehr.example.org:99999/r4",
    "too-long": "https://ehr.example.org/" + "a" * 500,
}


@pytest.mark.parametrize(("given", "expected"), NORMALISED.items())
def test_base_urls_are_normalised(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize("name", MALFORMED_URLS)
def test_unsafe_or_ambiguous_urls_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        normalise_base_url(MALFORMED_URLS[name])


def test_prefix_match_is_on_whole_segments_host_and_port() -> None:
    assert within("https://ehr.org/r4", "https://ehr.org/r4")
    assert within("https://ehr.org/r4/tenant-1", "https://ehr.org/r4")
    assert within("https://ehr.org/r4", "https://ehr.org")
    assert not within("https://ehr.org/r4x", "https://ehr.org/r4")
    assert not within("https://ehr.org", "https://ehr.org/r4")
    assert not within("https://ehr.org.evil.example/r4", "https://ehr.org")
    assert not within("https://ehr.org:8443/r4", "https://ehr.org")
    assert not within("http://ehr.org/r4", "https://ehr.org/r4")


def test_private_hosts_setting() -> None:
    assert private_hosts(" EHR.local , 10.0.0.5,[FD00::1],,") == {
        "ehr.local",
        "10.0.0.5",
        "fd00::1",
    }
    assert private_hosts("") == frozenset()


# --- addresses ------------------------------------------------------------------------------

PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
PRIVATE = [
    "127.0.0.1",
    "127.5.6.7",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "::1",
    "fc00::1",  # ULA
    "fd12:3456::1",
    "fec0::1",  # site-local (deprecated)
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:192.168.0.1",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
NEVER = [
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "fe80::1",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
    "0.1.2.3",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), private_allowed=False) is None


@pytest.mark.parametrize("address", PRIVATE)
def test_private_addresses_only_for_listed_hosts(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), private_allowed=False) == "private-address"
    assert refusal(ipaddress.ip_address(address), private_allowed=True) is None


@pytest.mark.parametrize("address", NEVER)
def test_link_local_unspecified_and_multicast_are_never_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), private_allowed=True) is not None


# --- the guard, with a resolver the test controls --------------------------------------------


class Resolver:
    """``host -> addresses``; records every lookup (a raise/slow answer for failure cases)."""

    def __init__(self, table: dict[str, list[str]], *, delay: float = 0.0) -> None:
        self.table = table
        self.delay = delay
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        if self.delay:
            await asyncio.sleep(self.delay)
        if host not in self.table:
            raise OSError("name does not resolve")
        return self.table[host]


async def _refusal_of(guard: FhirServerGuard, url: str, registered: str) -> str:
    with pytest.raises(FhirServerRefused) as refused:
        await guard.check(url, [normalise_base_url(registered)])
    return refused.value.reason


async def test_the_guard_resolves_once_and_checks_every_address() -> None:
    resolver = Resolver(
        {
            "ehr.example.org": ["93.184.215.14", "2606:4700:4700::1111"],
            "mixed.example.org": ["93.184.215.14", "10.0.0.5"],
            "metadata.example.org": ["169.254.169.254"],
            "onprem.example.org": ["10.0.0.5"],
            "empty.example.org": [],
        }
    )
    guard = FhirServerGuard(
        allow_http=False, private_hosts={"onprem.example.org"}, resolver=resolver
    )
    pin = await guard.check("https://EHR.example.org/r4/", ["https://ehr.example.org/r4"])
    assert pin.base_url == "https://ehr.example.org/r4"
    assert (pin.host, pin.port) == ("ehr.example.org", 443)
    assert pin.addresses == ("93.184.215.14", "2606:4700:4700::1111")
    assert resolver.lookups == [("ehr.example.org", 443)]
    onprem = await guard.check("https://onprem.example.org/r4", ["https://onprem.example.org"])
    assert onprem.addresses == ("10.0.0.5",)

    cases = {
        "https://mixed.example.org/r4": "private-address",
        "https://metadata.example.org/r4": "link-local-or-unspecified",
        "https://nowhere.example.org/r4": "unresolvable",
        "https://empty.example.org/r4": "unresolvable",
        "http://ehr.example.org/r4": "http-not-allowed",
    }
    for url, reason in cases.items():
        assert await _refusal_of(guard, url, url.replace("http:", "https:")) == reason, url
    assert await _refusal_of(guard, "https://ehr.example.org/r5", "https://ehr.example.org/r4") == (
        "not-registered"
    )
    with pytest.raises(FhirServerRefused) as nothing_registered:
        await guard.check("https://ehr.example.org/r4", [])
    assert nothing_registered.value.reason == "not-registered"
    assert await _refusal_of(
        guard, "https://u:p@ehr.example.org/r4", "https://ehr.example.org"
    ) == ("malformed-url")
    # Refused before any lookup: only the two accepted checks and the four resolved cases asked.
    assert len(resolver.lookups) == 6


async def test_a_slow_resolver_is_cut_off() -> None:
    resolver = Resolver({"slow.example.org": ["93.184.215.14"]}, delay=5.0)
    guard = FhirServerGuard(allow_http=False, resolver=resolver, resolve_timeout=0.1)
    url = "https://slow.example.org/r4"
    assert await _refusal_of(guard, url, url) == "unresolvable"


# --- reading through pinned connections ------------------------------------------------------


def _call(fhir_server: str) -> HookCall:
    body = hook_request(fhir_server=fhir_server, access_token="fhir-token")
    return parse_hook_request(json.dumps(body).encode())


def _serve_patient(fhir: FakeServer) -> None:
    record = full_prefetch()
    fhir.routes["/r4/Patient/pat-1"] = Route(body=record["patient"])
    for key, resource in (
        ("Condition", "conditions"),
        ("MedicationRequest", "medications"),
        ("Observation", "labs"),
        ("ServiceRequest", "labOrders"),
    ):
        fhir.routes[f"/r4/{key}"] = Route(body=record[resource])


async def _read(
    http: httpx.AsyncClient, guard: FhirServerGuard, url: str, registered: str
) -> dict[str, Slot]:
    reader = FhirReader(http, budget=1.0, guard=guard)
    return await reader.resolve(
        _call(url), PREFETCH, fhir_servers=[normalise_base_url(registered)], client_id="c-1"
    )


@pytest.fixture
def fhir() -> Iterator[FakeServer]:
    with fake_server() as server:
        _serve_patient(server)
        yield server


def _port(server: FakeServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


async def test_connections_go_to_the_checked_address_with_the_original_host(
    fhir: FakeServer,
) -> None:
    """``ehr.test`` resolves nowhere but in the guard's resolver: reaching the server proves the
    connection used the checked address; the Host header still names the EHR's host."""
    port = _port(fhir)
    resolver = Resolver({"ehr.test": ["127.0.0.1"]})
    guard = FhirServerGuard(allow_http=True, private_hosts={"ehr.test"}, resolver=resolver)
    url = f"http://ehr.test:{port}/r4"
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(transport=pinned_transport(limits), trust_env=False) as http:
        slots = await _read(http, guard, url, url)
    assert slots["patient"].state == "data" and slots["patient"].fetched
    assert len(fhir.requests) == len(PREFETCH)
    assert {headers["Host"] for _, headers in fhir.requests} == {f"ehr.test:{port}"}
    assert resolver.lookups == [("ehr.test", port)]  # once per hook call, not per read


async def test_a_second_dns_answer_is_never_used(fhir: FakeServer) -> None:
    """DNS rebinding: the guard's answer (127.0.0.2, nothing listens there) is what is dialled,
    not what the system resolver says now (127.0.0.1, the recording server)."""
    url = f"http://localhost:{_port(fhir)}/r4"
    resolver = Resolver({"localhost": ["127.0.0.2"]})
    guard = FhirServerGuard(allow_http=True, private_hosts={"localhost"}, resolver=resolver)
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(transport=pinned_transport(limits), trust_env=False) as http:
        slots = await _read(http, guard, url, url)
    assert slots["patient"].state == "missing"
    assert fhir.requests == []
    # Control: an ordinary client resolves again and reaches the server, so the test can fail.
    async with httpx.AsyncClient(trust_env=False) as ordinary:
        assert (await _read(ordinary, guard, url, url))["patient"].state == "data"
    assert fhir.requests


async def test_the_pinned_transport_refuses_requests_without_a_pin(fhir: FakeServer) -> None:
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(transport=pinned_transport(limits), trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(fhir.base_url + "/r4/Patient/pat-1")
    assert fhir.requests == []


# --- over HTTP, on SQLite and PostgreSQL ------------------------------------------------------


@contextlib.asynccontextmanager
async def _app(database_url: str, private: str) -> AsyncIterator[Cds]:
    settings = make_settings(
        database_url,
        cds_fhir_allow_http=True,
        cds_fhir_timeout=1.0,
        cds_fhir_allow_private_hosts=private,
    )
    async with running_app(settings, run_worker=False) as (client, container):
        yield Cds(client, container, await register(container))


async def _call_with(cds: Cds, container: Container, registered: str, requested: str) -> int:
    ehr = await register(container, fhir_servers=(registered,))
    body = hook_request(fhir_server=requested, access_token="fhir-token-secret")
    response = await cds.call(body, ehr=ehr)
    assert response.status_code in (200, 412), response.text
    if response.status_code == 412:
        assert response.json()["resourceType"] == "OperationOutcome"
    return response.status_code


def _reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.__dict__["reason"] for r in caplog.records if r.getMessage() == "fhir server refused"]


async def test_loopback_is_refused_unless_listed(
    database_url: str, fhir: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="labrec.cds.prefetch")
    base = fhir.base_url + "/r4"
    async with _app(database_url, private="") as cds:
        assert await _call_with(cds, cds.container, base, base) == 412
    assert fhir.requests == []
    assert _reasons(caplog) == ["private-address"]
    async with _app(database_url, private="127.0.0.1") as cds:
        assert await _call_with(cds, cds.container, base, base) == 200
    assert len(fhir.requests) == len(PREFETCH)


async def test_refused_fhir_servers_are_never_contacted(
    database_url: str, fhir: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="labrec.cds.prefetch")
    port = _port(fhir)
    base = f"http://127.0.0.1:{port}/r4"
    with fake_server() as other:
        # (registered, requested, reason)
        cases = {
            "userinfo": (base, f"http://user:pw@127.0.0.1:{port}/r4", "malformed-url"),
            "userinfo-host-confusion": (
                base,
                f"http://ehr.example.org@127.0.0.1:{port}/r4",
                "malformed-url",
            ),
            "unregistered-path": (base, f"http://127.0.0.1:{port}/admin", "not-registered"),
            "sibling-prefix": (base, f"http://127.0.0.1:{port}/r4x", "not-registered"),
            "dot-segments": (base, f"http://127.0.0.1:{port}/r4/../admin", "malformed-url"),
            "escaped-dot-segments": (base, f"{base}/%2e%2e/admin", "malformed-url"),
            "unregistered-port": (base, other.base_url + "/r4", "not-registered"),
            "decimal-ip": (base, f"http://2130706433:{port}/r4", "malformed-url"),
            "ipv4-mapped-loopback": (
                f"http://[::ffff:127.0.0.1]:{port}/r4",
                f"http://[::ffff:127.0.0.1]:{port}/r4",
                "private-address",
            ),
            "loopback-by-name": (
                f"http://localhost:{port}/r4",
                f"http://localhost:{port}/r4",
                "private-address",
            ),
            "unspecified-reaches-loopback": (
                f"http://0.0.0.0:{port}/r4",
                f"http://0.0.0.0:{port}/r4",
                "link-local-or-unspecified",
            ),
            "cloud-metadata": (
                "http://169.254.169.254/latest",
                "http://169.254.169.254/latest/meta-data",
                "link-local-or-unspecified",
            ),
        }
        # 0.0.0.0 and the metadata address are listed: they stay refused all the same.
        async with _app(database_url, private="127.0.0.1,0.0.0.0,169.254.169.254") as cds:
            for name, (registered, requested, reason) in cases.items():
                caplog.clear()
                status = await _call_with(cds, cds.container, registered, requested)
                assert status == 412, name
                assert _reasons(caplog) == [reason], name
                logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
                for secret in ("pat-1", "fhir-token-secret", "pw@", "/admin", "meta-data"):
                    assert secret not in logged, (name, secret)
            assert fhir.requests == [] and other.requests == []
            # Positive control: the same server, registered and requested properly, is read.
            assert await _call_with(cds, cds.container, base, base + "/") == 200
    assert len(fhir.requests) == len(PREFETCH)


async def test_a_listed_private_host_name_works(database_url: str, fhir: FakeServer) -> None:
    url = f"http://LOCALHOST:{_port(fhir)}/r4/"
    async with _app(database_url, private="localhost") as cds:
        assert await _call_with(cds, cds.container, url, url) == 200
    assert len(fhir.requests) == len(PREFETCH)


async def test_complete_prefetch_needs_no_fhir_server(cds: Cds, fhir: FakeServer) -> None:
    """A refused fhirServer costs nothing when the EHR prefetched everything."""
    body = hook_request(
        prefetch=full_prefetch(), fhir_server=fhir.base_url + "/r4", access_token="t"
    )
    response = await cds.call(body)
    assert response.status_code == 200 and response.json()["cards"]
    assert fhir.requests == []


# --- TLS: the pinned connection still presents and verifies the original name ----------------


def _certificates(tmp_path: Path, name: str) -> tuple[bytes, Path, Path]:
    """A throwaway CA (PEM) and a server certificate for ``name`` signed by it (files)."""
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("labrec test CA", ca_key, "labrec test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, key, "labrec test CA", ca_key, ca=False)
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


@contextlib.contextmanager
def _tls_server(
    fhir: FakeServer, cert_file: Path, key_file: Path
) -> Iterator[tuple[int, list[str]]]:
    """``fhir``'s routes over TLS on another loopback port; yields it and the SNI names sent."""
    names: list[str] = []

    def remember_sni(_socket: Any, name: str | None, _context: Any) -> None:
        names.append(name or "")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = remember_sni

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fhir.requests.append((self.path, dict(self.headers.items())))
            route = fhir.routes.get(self.path.split("?")[0])
            body = json.dumps(route.body if route else {}).encode()
            self.send_response(200 if route else 404)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], names
    finally:
        server.shutdown()
        server.server_close()


async def test_tls_uses_the_original_name_for_sni_and_the_certificate(
    fhir: FakeServer, tmp_path: Path
) -> None:
    ca_pem, cert_file, key_file = _certificates(tmp_path, "ehr.test")
    with _tls_server(fhir, cert_file, key_file) as (port, names):
        url = f"https://ehr.test:{port}/r4"
        guard = FhirServerGuard(
            allow_http=False,
            private_hosts={"ehr.test", "other.test"},
            resolver=Resolver({"ehr.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}),
        )
        trusted = ssl.create_default_context(cadata=ca_pem.decode())
        transport = pinned_transport(httpx.Limits(max_connections=10), ssl_context=trusted)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
            slots = await _read(http, guard, url, url)
            assert slots["patient"].state == "data"
            assert set(names) == {"ehr.test"}  # SNI: the name, though we dialled 127.0.0.1
            assert {h["Host"] for _, h in fhir.requests} == {f"ehr.test:{port}"}
            # The certificate is checked against the name the EHR gave: another name on the
            # same address is refused by TLS, and nothing is read.
            fhir.requests.clear()
            other = f"https://other.test:{port}/r4"
            assert (await _read(http, guard, other, other))["patient"].state == "missing"
            assert fhir.requests == []


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["https://", "http://", "HTTPS://", ""]),
    st.text(max_size=80) | st.text(alphabet="aZ09.-:/[]@%?#_~=\\", max_size=40),
)
def test_normalising_any_text_is_a_value_error_or_a_fixed_point(scheme: str, rest: str) -> None:
    """Whatever an EHR sends: refused (ValueError, never another exception) or a URL that
    normalises to itself, so a registered URL and a request compare like with like."""
    try:
        normal = normalise_base_url(scheme + rest)
    except ValueError:
        return
    assert normalise_base_url(normal) == normal
    assert "@" not in normal.split("/")[2] and "?" not in normal and "#" not in normal
