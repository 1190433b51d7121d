"""Where outgoing HTTP of automations may go: every address normalised, then checked.

An address is normalised before the check, so the IPv6 spellings of an IPv4 address
(IPv4-mapped ``::ffff:169.254.169.254``, IPv4-compatible ``::169.254.169.254``,
NAT64 ``64:ff9b::a9fe:a9fe``, 6to4 ``2002:a9fe:a9fe::``) are checked as the IPv4
address they reach. Decimal, octal and hex forms (``2130706433``, ``0177.1``) are
turned into addresses by the resolver, and it is the resolver's answers that are
checked, so a name that resolves inside a denied network is refused too. Redirects
are not followed.

By default loopback, private, link-local, carrier-grade NAT, unspecified and cloud
metadata addresses (IPv4 ``169.254.169.254``, AWS IPv6 ``fd00:ec2::254``) are
denied; ``allowed_networks`` opens exceptions (``flowbus dev`` allows loopback and
private networks, where a developer's receivers run).

>>> TargetPolicy(DEFAULT_DENIED, []).denied_by("::ffff:127.0.0.1")
'127.0.0.0/8'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENIED = (
    "0.0.0.0/8", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "169.254.0.0/16", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4", "::/128", "::1/128", "fe80::/10", "fc00::/7", "ff00::/8",
)
DEV_ALLOWED = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
               "fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")


def normalise(text: str) -> Address:
    """The address ``text`` reaches: embedded IPv4 addresses unwrapped, zone ids dropped."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        packed = int(address)
        if address in _NAT64 or (address in _COMPATIBLE and packed > 1):
            return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return address


class TargetPolicy:
    """Denied networks, with allowed exceptions."""

    def __init__(self, denied: Sequence[str], allowed: Sequence[str]) -> None:
        self.denied: list[Network] = [ipaddress.ip_network(n, strict=False) for n in denied]
        self.allowed: list[Network] = [ipaddress.ip_network(n, strict=False) for n in allowed]

    def denied_by(self, text: str) -> str | None:
        """The denied network ``text`` falls in (after normalising), or None when allowed."""
        address = normalise(text)
        if any(address.version == n.version and address in n for n in self.allowed):
            return None
        for network in self.denied:
            if address.version == network.version and address in network:
                return str(network)
        return None
