"""Where labrec may connect when it reads from an EHR's ``fhirServer`` (the SSRF defence).

A hook request names a FHIR server and carries a bearer token for it. Taken at its word, a
registered EHR (or whoever holds its signing key) could point labrec at loopback, the private
network or a cloud metadata endpoint and read the answer back through a card. So, per call:

1. the URL, normalised, must lie under a base URL registered for that client
   (``labrec cds-client add --fhir-server``); userinfo, dot segments, ``%``-escapes, queries
   and fragments are refused outright;
2. the host is resolved once and every address must be public: not loopback, RFC 1918,
   CGNAT, ULA, link-local (169.254.169.254 included), unspecified, multicast or otherwise
   reserved, nor such an IPv4 address wrapped in IPv6 (mapped, compatible, NAT64, 6to4). Hosts
   listed in ``LABREC_CDS_FHIR_ALLOW_PRIVATE_HOSTS`` (on-premise EHRs) may be private, never
   link-local, unspecified or multicast;
3. the connection goes to exactly the addresses checked (``PinnedBackend``) while the Host
   header, TLS SNI and certificate check keep the original name, so a second DNS answer (DNS
   rebinding) is never used.

A refusal is a ``FhirServerRefused`` with a short reason code for the log; the caller then
treats the server as unreadable, as the CDS Hooks spec does for an unusable ``fhirServer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit

import httpcore
import httpx
import msgspec

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; the system resolver in production, a table in tests.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_MAX_URL: Final = 500
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
#: RFC 3986 ``pchar`` without ``%``: percent-escapes could hide ``/`` or ``..`` from the prefix
#: match while the FHIR server decodes them.
_SEGMENT: Final = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@]+$")
_LABEL: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_ALWAYS: Final = "link-local-or-unspecified"


class FhirServerRefused(Exception):
    """labrec will not connect there; ``reason`` is a short code for the log (no URL, no PHI)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Pin(msgspec.Struct, frozen=True):
    """A checked FHIR base URL and the only addresses a connection for it may use."""

    base_url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def normalise_base_url(value: str) -> str:
    """``scheme://host[:port][/path]`` lower-cased, default port and trailing ``/`` dropped.

    Raises ``ValueError`` (the message is for an operator) for anything that is not a plain
    http(s) base URL; the same function reads registrations and hook requests, so a prefix
    match compares like with like.
    """
    if len(value) > _MAX_URL or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must be a URL of at most 500 printable characters without spaces")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not value.lower().startswith(f"{scheme}://"):
        raise ValueError("must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise ValueError("must not contain user:password@")
    if "?" in value or "#" in value:
        raise ValueError("must not have a query or fragment")
    host = _host(parts.netloc)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    segments = parts.path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise ValueError("path may use letters, digits and -._~!$&'()*+,;=:@ between '/'")
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}" + "".join(f"/{s}" for s in segments)


def _host(netloc: str) -> str:
    """The host of a netloc without userinfo: a DNS name, a dotted IPv4 or a bracketed IPv6."""
    if netloc.startswith("["):
        literal, bracket, rest = netloc[1:].partition("]")
        try:
            if not bracket or "%" in literal or rest[:1] not in ("", ":"):
                raise ValueError
            return str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise ValueError("has an invalid IPv6 address") from None
    host = netloc.rpartition(":")[0] if ":" in netloc else netloc
    host = host.lower()
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if not 0 < len(host) <= 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("must name a host (letters, digits, '-' and '.') or an IP address")
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        raise ValueError("writes an IPv4 address in a non-standard form")
    return host


def within(base_url: str, registered: str) -> bool:
    """Whether a normalised URL is ``registered`` or lies under it (whole path segments)."""
    return base_url == registered or base_url.startswith(registered + "/")


def private_hosts(setting: str) -> frozenset[str]:
    """``LABREC_CDS_FHIR_ALLOW_PRIVATE_HOSTS``: comma-separated host names or IP addresses."""
    hosts = set()
    for item in setting.split(","):
        item = item.strip().lower().removeprefix("[").removesuffix("]")
        if item:
            with contextlib.suppress(ValueError):
                item = str(ipaddress.ip_address(item))
            hosts.add(item)
    return frozenset(hosts)


def refusal(address: IPAddress, *, private_allowed: bool) -> str | None:
    """Why labrec must not connect to ``address`` (None: it may)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        address = embedded
    if (
        address.is_unspecified
        or address.is_link_local
        or address.is_multicast
        or (
            isinstance(address, ipaddress.IPv4Address)
            and (address.is_reserved or address in _THIS_NETWORK)  # 240/4, 0/8
        )
    ):
        return _ALWAYS
    private = (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
    return "private-address" if private and not private_allowed else None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if (address in _IPV4_COMPATIBLE and int(address) > 1) or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class FhirServerGuard:
    """Decides whether (and to which addresses) labrec may connect for a hook's fhirServer."""

    def __init__(
        self,
        *,
        allow_http: bool,
        private_hosts: Iterable[str] = (),
        resolver: Resolver = system_resolver,
        resolve_timeout: float = 2.0,
    ) -> None:
        self._allow_http = allow_http
        self._private_hosts = frozenset(private_hosts)
        self._resolver = resolver
        self._resolve_timeout = resolve_timeout

    async def check(self, fhir_server: str, registered: Sequence[str]) -> Pin:
        """The pin to read through, or ``FhirServerRefused``; no connection is made here."""
        try:
            base_url = normalise_base_url(fhir_server)
        except ValueError:
            raise FhirServerRefused("malformed-url") from None
        scheme = base_url.partition(":")[0]
        if scheme == "http" and not self._allow_http:
            raise FhirServerRefused("http-not-allowed")
        if not any(within(base_url, allowed) for allowed in registered):
            raise FhirServerRefused("not-registered")
        parts = urlsplit(base_url)
        host = _host(parts.netloc)
        port = parts.port or _DEFAULT_PORTS[scheme]
        private_allowed = host in self._private_hosts
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await self._resolve(host, port)
        for address in addresses:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                raise FhirServerRefused("unresolvable") from None
            reason = refusal(parsed, private_allowed=private_allowed)
            if reason is not None:
                raise FhirServerRefused(reason)
        return Pin(base_url=base_url, host=host, port=port, addresses=tuple(addresses))

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(self._resolve_timeout):
                addresses = list(await self._resolver(host, port))
        except (OSError, TimeoutError, UnicodeError):
            raise FhirServerRefused("unresolvable") from None
        if not addresses:
            raise FhirServerRefused("unresolvable")
        return addresses


#: The pin of the read in progress; each read runs in its own task, so its own context.
_PIN: Final[contextvars.ContextVar[Pin | None]] = contextvars.ContextVar(
    "labrec_fhir_pin", default=None
)


def pin_connections(pin: Pin) -> None:
    """Let connections made from the current task (and tasks it starts) use ``pin``."""
    _PIN.set(pin)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to the addresses pinned for the requested host and port, in order.

    httpcore passes the URL's host (so Host, SNI and the certificate check keep the name); this
    backend never resolves it again. No pin, or a pin for another host: no connection.
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or pin.host != host.lower().strip("[]") or pin.port != port:
            raise httpcore.ConnectError("connection target was not checked")
        failure: Exception = httpcore.ConnectError("no address")
        for address in pin.addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not FHIR servers")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(
    limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connection pool connects through ``PinnedBackend``.

    httpx does not take a network backend, so the pool it built is replaced by the same pool
    with ours (httpx is pinned; tests/cds/test_fhir_egress.py fails if this stops working).
    ``ssl_context`` defaults to httpx's (certifi roots, hostname checked); tests pass their CA.
    """
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PinnedBackend(),
    )
    return transport
