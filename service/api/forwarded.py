"""The client's address behind trusted reverse proxies (``LABREC_TRUSTED_PROXIES``).

Refusal budgets, the UI sign-in throttle and refusal audit rows count per client address. Behind a
reverse proxy every request comes from the proxy, so every client would share one budget. With
the proxy's address listed in ``LABREC_TRUSTED_PROXIES`` (IPs or CIDRs, comma-separated), the
address is read from ``X-Forwarded-For``: the rightmost hop that is not a trusted proxy, because
hops to its left are whatever the client chose to send. With the setting empty (the default), or
when the direct peer is not a trusted proxy, the header is ignored and the peer is the client.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 10.1.0.0/16"`` → networks; raises ``ValueError`` naming a bad entry."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[Network, ...]
) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_host(connection: ASGIConnection[Any, Any, Any, Any], trusted_proxies: str) -> str | None:
    """The client's address: the peer, or the rightmost untrusted ``X-Forwarded-For`` hop when
    the peer is a trusted proxy. A malformed hop stops the walk at the last trusted proxy."""
    peer = connection.client.host if connection.client else None
    networks = parse_trusted_proxies(trusted_proxies)
    if not networks or peer is None:
        return peer
    current = _ip(peer)
    if current is None or not _trusted(current, networks):
        return peer
    hops = [
        hop
        for value in connection.headers.getall("x-forwarded-for", [])
        for hop in value.split(",")
    ]
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break
        current = address
        if not _trusted(current, networks):
            break
    return str(current)
