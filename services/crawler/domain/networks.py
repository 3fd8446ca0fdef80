"""SSRF policy: which resolved addresses the crawler may connect to, and IP-literal host parsing."""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from runtime.errors import ValidationFailed

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK = "loopback"
PRIVATE = "private"
LINK_LOCAL = "link-local"
CLOUD_METADATA = "cloud metadata"
MULTICAST = "multicast"
RESERVED = "reserved"
UNSPECIFIED = "unspecified"
BROADCAST = "broadcast"

# Instance metadata and credential endpoints: AWS IMDS (v4, v6), ECS task credentials,
# EKS Pod Identity (v4, v6), Alibaba Cloud. GCP, Azure and OCI also answer on 169.254.169.254.
CLOUD_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "100.100.100.200",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)


def _nets(reason: str, *cidrs: str) -> list[tuple[IPNetwork, str]]:
    return [(ipaddress.ip_network(c), reason) for c in cidrs]


# First match wins, so narrower special cases precede the ranges that contain them.
_V4_CLASSES: list[tuple[IPNetwork, str]] = [
    *_nets(UNSPECIFIED, "0.0.0.0/32"),
    *_nets(RESERVED, "0.0.0.0/8"),
    *_nets(LOOPBACK, "127.0.0.0/8"),
    *_nets(PRIVATE, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"),
    *_nets(LINK_LOCAL, "169.254.0.0/16"),
    *_nets(MULTICAST, "224.0.0.0/4"),
    *_nets(BROADCAST, "255.255.255.255/32"),
    *_nets(
        RESERVED,
        "240.0.0.0/4",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",  # benchmarking
    ),
]
_V6_CLASSES: list[tuple[IPNetwork, str]] = [
    *_nets(UNSPECIFIED, "::/128"),
    *_nets(LOOPBACK, "::1/128"),
    *_nets(PRIVATE, "fc00::/7", "fec0::/10", "64:ff9b:1::/48"),
    *_nets(LINK_LOCAL, "fe80::/10"),
    *_nets(MULTICAST, "ff00::/8"),
    *_nets(
        RESERVED,
        "::/8",  # includes the deprecated IPv4-compatible ::a.b.c.d
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "2001::/23",  # IETF protocol assignments
        "3fff::/20",  # documentation
    ),
]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRefused(Exception):
    """The crawler must not connect to this address."""

    def __init__(self, host: str, address: str, reason: str, *, ipv4: str | None = None) -> None:
        shown = address or "(none)"
        if ipv4 is not None:
            shown = f"{shown} (IPv4 {ipv4})"
        super().__init__(f"refused to connect to {host!r} at {shown}: {reason}")
        self.host = host
        self.address = address
        self.reason = reason


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, NAT64 (64:ff9b::/96), 6to4, Teredo."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def classify(address: IPAddress) -> str | None:
    """Why `address` is refused by default, or None when it is public."""
    if address in CLOUD_METADATA_ADDRESSES:
        return CLOUD_METADATA
    classes = _V4_CLASSES if address.version == 4 else _V6_CLASSES
    for network, reason in classes:
        if address in network:
            return reason
    if not address.is_global:
        return RESERVED
    return None


def _parse_address(address: str) -> IPAddress | None:
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _unscoped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address


@dataclass(frozen=True)
class NetworkPolicy:
    """Public addresses pass; others only inside an operator-allowed network."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_setting(cls, value: str | None) -> NetworkPolicy:
        """Parse TRELLIS_CRAWLER_ALLOWED_NETWORKS: comma-separated CIDRs, empty for none."""
        networks: list[IPNetwork] = []
        for item in (value or "").split(","):
            cidr = item.strip()
            if not cidr:
                continue
            try:
                networks.append(ipaddress.ip_network(cidr, strict=True))
            except ValueError as error:
                raise ValidationFailed(
                    f"TRELLIS_CRAWLER_ALLOWED_NETWORKS: {cidr!r} is not a valid network ({error})",
                    network=cidr,
                ) from None
        return cls(allowed=tuple(networks))

    def _allows(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.allowed)

    def _allows_exactly(self, address: IPAddress) -> bool:
        return any(
            n.num_addresses == 1 and n.version == address.version and n.network_address == address
            for n in self.allowed
        )

    def check(self, host: str, address: str) -> None:
        """Raise AddressRefused unless `address` (one that `host` resolved to) may be fetched."""
        parsed = _parse_address(address)
        if parsed is None:
            raise AddressRefused(host, address, "not an IP address")
        outer = _unscoped(parsed)
        inner = embedded_ipv4(outer) if isinstance(outer, ipaddress.IPv6Address) else None
        effective = outer if inner is None else inner
        reason = classify(effective)
        if reason is None:
            return
        # Embedded IPv4 is judged by the IPv4 address alone, so a wide IPv6 allowance such as
        # ::/0 does not open ::ffff:127.0.0.1.
        if reason == CLOUD_METADATA:
            if self._allows_exactly(effective):
                return
        elif self._allows(effective):
            return
        raise AddressRefused(
            host, address.strip(), reason, ipv4=None if inner is None else str(inner)
        )

    def check_all(self, host: str, addresses: Sequence[str]) -> None:
        """Every address `host` resolved to must pass: one bad answer refuses the host."""
        if isinstance(addresses, str):
            addresses = [addresses]
        if not addresses:
            raise AddressRefused(host, "", "resolved to no addresses")
        for address in addresses:
            self.check(host, address)


def _ipv4_number(part: str) -> int | None:
    """One part of a WHATWG/inet_aton IPv4 host: decimal, 0x hex or 0-prefixed octal."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        if not digits:
            return 0
        allowed = "0123456789abcdefABCDEF"
    elif len(part) > 1 and part[0] == "0":
        digits, base, allowed = part[1:], 8, "01234567"
    else:
        digits, base, allowed = part, 10, "0123456789"
    if not digits or any(c not in allowed for c in digits):
        return None
    return int(digits, base)


def _ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4 or any(p == "" for p in parts):
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    result = values[-1]
    for i, n in enumerate(values[:-1]):
        result += n << (8 * (3 - i))
    return ipaddress.IPv4Address(result)


def literal_address(host: str) -> str | None:
    """The normalised IP address if URL host `host` is an IP literal, else None.

    Accepts bracketed IPv6 (with an optional %25 zone), and every IPv4 form that browsers and
    inet_aton accept: 2130706433, 0x7f.1, 017700000001, 127.1, a trailing dot, full-width digits.
    """
    text = unquote(host.strip())
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            return None
    # URL hosts are IDNA-mapped before use: full-width digits and dots become ASCII.
    text = unicodedata.normalize("NFKC", text).replace("\u3002", ".").lower()
    if ":" in text:
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    v4 = _ipv4_literal(text)
    return None if v4 is None else str(v4)
