"""Which addresses an audio URL may reach, decided from an explicit table rather than the running
Python's `ipaddress.is_global` (which differs between versions and counts NAT64, IPv4-compatible
and site-local addresses as global).

The table is IANA's IPv4 and IPv6 Special-Purpose Address Registries, every entry with its
"Globally Reachable" column (None stands for the registry's N/A). The most specific entry holding
an address decides: a block marked False or N/A is refused. Also refused: multicast, the deprecated
IPv6 site-local block, and IPv6 outside 2000::/3 (the only space allocated for global unicast; the
rest is reserved by the IETF). An address in no entry is ordinary public unicast.

Decisions beyond the registry:
- Anycast services that the registry marks globally reachable (PCP, TURN, DNS-SD SRP, AMT relays,
  AS112) are refused: the nearest instance answers, and that is often inside the operator's own
  network (the PCP server is the network's NAT gateway; RFC 7534 asks networks to run their own
  AS112 nodes). No audio file is served from them.
- An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 address itself to the socket layer, so it is
  judged as that IPv4 address.
- Every other IPv6 form that embeds IPv4 (IPv4-compatible, IPv4-translated, NAT64 well-known and
  local-use prefixes, 6to4, Teredo) is a transition prefix: a translator or relay on the path, maybe
  in the operator's network, turns it into an IPv4 destination this check cannot see. Such an
  address is refused unless the operator allowlists its prefix, and even then every IPv4 address
  it embeds must itself be public or allowlisted: allowlisting 64:ff9b::/96 so that an IPv6-only
  cluster reaches public IPv4 hosts through DNS64 must not open 64:ff9b::169.254.169.254.
- The local-use NAT64 prefix 64:ff9b:1::/48 may be translated with any RFC 6052 prefix length that
  fits in it (RFC 8215), and which one the operator uses is unknown here, so the IPv4 address is
  read with each layout (/48, /56, /64, /96) and every reading must be allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import NamedTuple

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


class Block(NamedTuple):
    network: str
    reachable: bool | None  # the registry's "Globally Reachable"; None is its N/A
    nearest: bool = False  # an anycast service answered by the nearest instance: refused (see above)


# IANA IPv4 Special-Purpose Address Registry, every entry.
IPV4_SPECIAL: tuple[Block, ...] = (
    Block("0.0.0.0/8", False),  # "This network", RFC 791 section 3.2
    Block("0.0.0.0/32", False),  # "This host on this network", RFC 1122 section 3.2.1.3
    Block("10.0.0.0/8", False),  # Private-Use, RFC 1918
    Block("100.64.0.0/10", False),  # Shared Address Space, RFC 6598
    Block("127.0.0.0/8", False),  # Loopback, RFC 1122 section 3.2.1.3
    Block("169.254.0.0/16", False),  # Link Local, RFC 3927
    Block("172.16.0.0/12", False),  # Private-Use, RFC 1918
    Block("192.0.0.0/24", False),  # IETF Protocol Assignments, RFC 6890 section 2.1
    Block("192.0.0.0/29", False),  # IPv4 Service Continuity Prefix, RFC 7335
    Block("192.0.0.8/32", False),  # IPv4 dummy address, RFC 7600
    Block("192.0.0.9/32", True, nearest=True),  # Port Control Protocol Anycast, RFC 7723
    Block("192.0.0.10/32", True, nearest=True),  # Traversal Using Relays around NAT Anycast, RFC 8155
    Block("192.0.0.170/32", False),  # NAT64/DNS64 Discovery, RFC 8880 section 2.2, RFC 7050 section 2.2
    Block("192.0.0.171/32", False),  # NAT64/DNS64 Discovery, RFC 8880 section 2.2, RFC 7050 section 2.2
    Block("192.0.2.0/24", False),  # Documentation (TEST-NET-1), RFC 5737
    Block("192.31.196.0/24", True, nearest=True),  # AS112-v4, RFC 7535
    Block("192.52.193.0/24", True, nearest=True),  # AMT, RFC 7450
    Block("192.88.99.0/24", None),  # Deprecated (6to4 Relay Anycast), RFC 7526
    Block("192.88.99.2/32", False),  # 6a44-relay anycast address, RFC 6751
    Block("192.168.0.0/16", False),  # Private-Use, RFC 1918
    Block("192.175.48.0/24", True, nearest=True),  # Direct Delegation AS112 Service, RFC 7534
    Block("198.18.0.0/15", False),  # Benchmarking, RFC 2544
    Block("198.51.100.0/24", False),  # Documentation (TEST-NET-2), RFC 5737
    Block("203.0.113.0/24", False),  # Documentation (TEST-NET-3), RFC 5737
    Block("240.0.0.0/4", False),  # Reserved, RFC 1112 section 4
    Block("255.255.255.255/32", False),  # Limited Broadcast, RFC 8190, RFC 919 section 7
)

# IANA IPv6 Special-Purpose Address Registry, every entry.
IPV6_SPECIAL: tuple[Block, ...] = (
    Block("::1/128", False),  # Loopback Address, RFC 4291
    Block("::/128", False),  # Unspecified Address, RFC 4291
    Block("::ffff:0:0/96", False),  # IPv4-mapped Address, RFC 4291
    Block("64:ff9b::/96", True),  # IPv4-IPv6 Translation, RFC 6052 (refused below as a transition prefix)
    Block("64:ff9b:1::/48", False),  # IPv4-IPv6 Translation (local use), RFC 8215
    Block("100::/64", False),  # Discard-Only Address Block, RFC 6666
    Block("100:0:0:1::/64", False),  # Dummy IPv6 Prefix, RFC 9780
    Block("2001::/23", False),  # IETF Protocol Assignments, RFC 2928
    Block("2001::/32", None),  # TEREDO, RFC 4380, RFC 8190
    Block("2001:1::1/128", True, nearest=True),  # Port Control Protocol Anycast, RFC 7723
    Block("2001:1::2/128", True, nearest=True),  # Traversal Using Relays around NAT Anycast, RFC 8155
    Block("2001:1::3/128", True, nearest=True),  # DNS-SD Service Registration Protocol Anycast, RFC 9665
    Block("2001:2::/48", False),  # Benchmarking, RFC 5180, RFC Errata 1752
    Block("2001:3::/32", True, nearest=True),  # AMT, RFC 7450
    Block("2001:4:112::/48", True, nearest=True),  # AS112-v6, RFC 7535
    Block("2001:10::/28", None),  # Deprecated (previously ORCHID), RFC 4843
    Block("2001:20::/28", True),  # ORCHIDv2, RFC 7343
    Block("2001:30::/28", True),  # Drone Remote ID Protocol Entity Tags (DETs) Prefix, RFC 9374
    Block("2001:db8::/32", False),  # Documentation, RFC 3849
    Block("2002::/16", None),  # 6to4, RFC 3056
    Block("2620:4f:8000::/48", True, nearest=True),  # Direct Delegation AS112 Service, RFC 7534
    Block("3fff::/20", False),  # Documentation, RFC 9637
    Block("5f00::/16", False),  # Segment Routing (SRv6) SIDs, RFC 9602
    Block("fc00::/7", False),  # Unique-Local, RFC 4193, RFC 8190
    Block("fe80::/10", False),  # Link-Local Unicast, RFC 4291
)

# Refused whatever a registry entry says: they are in other registries.
ALSO_REFUSED: tuple[str, ...] = (
    "224.0.0.0/4",  # IPv4 multicast, RFC 5771
    "fec0::/10",  # IPv6 site-local unicast, deprecated by RFC 3879
    "ff00::/8",  # IPv6 multicast, RFC 4291 section 2.7
)

# The only IPv6 space allocated for global unicast (RFC 4291 section 2.4, IANA IPv6 Address Space).
IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")


def _most_specific_first(blocks: Iterable[Block]) -> list[tuple[Network, Block]]:
    return sorted(((ip_network(b.network), b) for b in blocks), key=lambda row: -row[0].prefixlen)


_SPECIAL = {4: _most_specific_first(IPV4_SPECIAL), 6: _most_specific_first(IPV6_SPECIAL)}
_ALSO_REFUSED = [ip_network(n) for n in ALSO_REFUSED]
_MAPPED = IPv6Network("::ffff:0:0/96")  # IPv4-mapped, RFC 4291 section 2.5.5.2
_NOT_COMPATIBLE = IPv6Network("::/127")  # the unspecified and loopback addresses, not IPv4-compatible ones


def _v4_at(value: int, start: int) -> IPv4Address:
    """The 32 bits at bit `start` (0 is the most significant) of a 128-bit address."""
    return IPv4Address((value >> (96 - start)) & 0xFFFFFFFF)


def _rfc6052(value: int, prefix_len: int) -> IPv4Address:
    """The IPv4 address after a `prefix_len`-bit NAT64 prefix, skipping bits 64-71 (RFC 6052 section 2.2)."""
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))  # a 120-bit value
    start = prefix_len if prefix_len <= 64 else prefix_len - 8  # /64: the u octet comes first
    return IPv4Address((without_u >> (88 - start)) & 0xFFFFFFFF)


def _teredo(value: int) -> tuple[IPv4Address, ...]:
    """The server (bits 32-63) and the client (last 32 bits, inverted) of RFC 4380 section 4."""
    return _v4_at(value, 32), IPv4Address((value & 0xFFFFFFFF) ^ 0xFFFFFFFF)


# IPv6 transition forms that carry IPv4 addresses, and where those are.
_EMBEDDINGS: tuple[tuple[IPv6Network, Callable[[int], tuple[IPv4Address, ...]]], ...] = (
    (IPv6Network("::/96"), lambda v: (_v4_at(v, 96),)),  # IPv4-compatible, deprecated by RFC 4291 section 2.5.5.1
    (IPv6Network("::ffff:0:0:0/96"), lambda v: (_v4_at(v, 96),)),  # IPv4-translated, RFC 2765 section 2.1
    (IPv6Network("64:ff9b::/96"), lambda v: (_rfc6052(v, 96),)),  # NAT64 well-known prefix, RFC 6052 section 2.1
    (IPv6Network("64:ff9b:1::/48"), lambda v: tuple(_rfc6052(v, n) for n in (48, 56, 64, 96))),  # RFC 8215
    (IPv6Network("2002::/16"), lambda v: (_v4_at(v, 16),)),  # 6to4, RFC 3056 section 2
    (IPv6Network("2001::/32"), _teredo),  # Teredo, RFC 4380 section 4
)


def embedded_ipv4(ip: IPv6Address) -> tuple[IPv4Address, ...] | None:
    """The IPv4 addresses a transition form carries; None when `ip` is not one."""
    if ip in _NOT_COMPATIBLE:
        return None
    for network, extract in _EMBEDDINGS:
        if ip in network:
            return extract(int(ip))
    return None


def _registry_allows(ip: IPAddress) -> bool:
    if any(ip in net for net in _ALSO_REFUSED):
        return False
    if isinstance(ip, IPv6Address) and ip not in IPV6_GLOBAL_UNICAST:
        return False
    entry = next((block for net, block in _SPECIAL[ip.version] if ip in net), None)
    return entry is None or (entry.reachable is True and not entry.nearest)


def allowed(ip: IPAddress, allowlist: Iterable[Network] = ()) -> bool:
    """Public, or inside the operator's allowlist; a transition form needs its prefix allowlisted
    and every IPv4 address it carries allowed."""
    allowlist = tuple(allowlist)
    if isinstance(ip, IPv6Address):
        if ip in _MAPPED:  # IPv4 on the wire: only the IPv4 rules and allowlist entries apply
            return allowed(_v4_at(int(ip), 96), allowlist)
        inner = embedded_ipv4(ip)
        if inner is not None:
            return _listed(ip, allowlist) and all(allowed(v4, allowlist) for v4 in inner)
    return _listed(ip, allowlist) or _registry_allows(ip)


def _listed(ip: IPAddress, allowlist: tuple[Network, ...]) -> bool:
    return any(ip in net for net in allowlist)


def is_public(ip: IPAddress) -> bool:
    """Reachable without the operator's allowlist."""
    return allowed(ip, ())
