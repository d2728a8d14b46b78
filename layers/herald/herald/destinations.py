"""Which network addresses Herald may call on a subscriber's behalf (decision 009).

Only public unicast addresses: never loopback, private, shared (CGNAT), link-local, multicast,
reserved, unspecified or a cloud metadata address. An IPv4-mapped (`::ffff:a.b.c.d`) or NAT64
(`64:ff9b::a.b.c.d`) IPv6 address is judged by the IPv4 address it reaches.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Named for a clearer refusal; each is also caught by the generic rules.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # EC2 / Lambda instance metadata, most clouds
        ipaddress.ip_address("fd00:ec2::254"),  # EC2 instance metadata over IPv6
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata and credentials
    }
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def effective_address(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address; else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64_PREFIX:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_loopback(address: IPAddress) -> bool:
    return effective_address(address).is_loopback


def why_not_public(address: IPAddress) -> str | None:
    """Why Herald may not call `address` (None when it is a public unicast address)."""
    ip = effective_address(address)
    if ip in METADATA_ADDRESSES or address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind, refused in (
        ("an unspecified address", ip.is_unspecified),
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a reserved address", ip.is_reserved),
        ("a private address", ip.is_private),
        ("a non-public address", not ip.is_global),
    ):
        if refused:
            return kind
    return None
