"""Where the sandbox may post webhooks: the operator's hosts and networks, loopback by default.

A URL is allowed when its host is a listed name (compared exactly, case-insensitively) or an IP
address inside a listed network. Names are never resolved here: a name the operator did not list
is refused even if it points at loopback, so DNS cannot widen what the operator allowed. Hosted
mode allows nothing unless hosts are listed (`--webhook-allow`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = ("localhost", "127.0.0.0/8", "::1")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class WebhookAllow:
    names: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> WebhookAllow:
        """Hosts and networks; a ValueError names an entry that is neither."""
        names, networks = set(), []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if not all(part.isalnum() or "-" in part for part in text.split(".")):
                    raise ValueError(f"{entry!r} is not a host name or an IP network") from None
                names.add(text)
        return cls(frozenset(names), tuple(networks))

    def refusal(self, url: str, max_length: int) -> str | None:
        """Why the sandbox may not post to `url`, or None when it may."""
        if len(url) > max_length:
            return f"is longer than {max_length} characters"
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018  (a bad port raises here)
        except ValueError:
            return "is not a URL"
        if parts.scheme not in ("http", "https") or not host:
            return "must be an http or https URL with a host"
        if parts.username or parts.password:
            return "must not carry a user name or password"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host in self.names:
                return None
            return f"has the host {host!r}, which this sandbox may not post to ({self.describe()})"
        if any(address in net for net in self.networks):
            return None
        return f"has the address {host}, which this sandbox may not post to ({self.describe()})"

    def describe(self) -> str:
        listed = [*sorted(self.names), *(str(n) for n in self.networks)]
        if not listed:
            return "no webhook host is allowed; start it with --webhook-allow"
        return "allowed: " + ", ".join(listed) + "; see --webhook-allow"
