"""The client's network address: from the socket, or from X-Forwarded-For behind a trusted proxy.

A hosted sandbox limits requests per client address as well as per key. Anyone can send an
X-Forwarded-For header, so it is believed only when the peer itself is a proxy the operator named
(`serve --trusted-proxy`); then the address is the right-most one that is not such a proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from opsmerge_sandbox.pipeline.headers import RequestHeaders

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; ValueError names the bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxy {value!r} is not an IP address or network") from None
    return tuple(out)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(scope: Any, headers: RequestHeaders, trusted: tuple[Network, ...]) -> str:
    """The address a per-client limit counts against."""
    client = scope.get("client")
    peer = str(client[0]) if client else UNKNOWN
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in headers.getall("x-forwarded-for") for h in v.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a forged or garbled entry: count the proxy's own address
    return peer
