"""Address classification against IANA's special-purpose registries, written out here independently
of serve_app/pipeline/addresses.py: every entry's first, middle and last address, every IPv6 form that
embeds IPv4, the operator's allowlist. Nothing here connects anywhere."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from serve_app.errors import UrlNotAllowed
from serve_app.pipeline import addresses
from serve_app.pipeline.addresses import allowed, embedded_ipv4, is_public
from serve_app.pipeline.fetch import UrlPolicy

PUBLIC, REFUSED = True, False

# Every registry entry (IANA IPv4 and IPv6 Special-Purpose Address Registries) and the verdict for
# its first, middle and last address. Refused although "globally reachable": the anycast services
# (the nearest instance answers, maybe inside the operator's network) and the NAT64 prefix.
REGISTRY_V4 = {
    "0.0.0.0/8": REFUSED,
    "0.0.0.0/32": REFUSED,
    "10.0.0.0/8": REFUSED,
    "100.64.0.0/10": REFUSED,
    "127.0.0.0/8": REFUSED,
    "169.254.0.0/16": REFUSED,
    "172.16.0.0/12": REFUSED,
    "192.0.0.0/24": REFUSED,
    "192.0.0.0/29": REFUSED,
    "192.0.0.8/32": REFUSED,
    "192.0.0.9/32": REFUSED,
    "192.0.0.10/32": REFUSED,
    "192.0.0.170/32": REFUSED,
    "192.0.0.171/32": REFUSED,
    "192.0.2.0/24": REFUSED,
    "192.31.196.0/24": REFUSED,
    "192.52.193.0/24": REFUSED,
    "192.88.99.0/24": REFUSED,
    "192.88.99.2/32": REFUSED,
    "192.168.0.0/16": REFUSED,
    "192.175.48.0/24": REFUSED,
    "198.18.0.0/15": REFUSED,
    "198.51.100.0/24": REFUSED,
    "203.0.113.0/24": REFUSED,
    "240.0.0.0/4": REFUSED,
    "255.255.255.255/32": REFUSED,
}
REGISTRY_V6 = {
    "::1/128": REFUSED,
    "::/128": REFUSED,
    "::ffff:0:0/96": (REFUSED, PUBLIC, REFUSED),  # judged as the IPv4 inside: 0.0.0.0, 128.0.0.0, 255.255.255.255
    "64:ff9b::/96": REFUSED,
    "64:ff9b:1::/48": REFUSED,
    "100::/64": REFUSED,
    "100:0:0:1::/64": REFUSED,
    "2001::/23": REFUSED,
    "2001::/32": REFUSED,
    "2001:1::1/128": REFUSED,
    "2001:1::2/128": REFUSED,
    "2001:1::3/128": REFUSED,
    "2001:2::/48": REFUSED,
    "2001:3::/32": REFUSED,
    "2001:4:112::/48": REFUSED,
    "2001:10::/28": REFUSED,
    "2001:20::/28": PUBLIC,
    "2001:30::/28": PUBLIC,
    "2001:db8::/32": REFUSED,
    "2002::/16": REFUSED,
    "2620:4f:8000::/48": REFUSED,
    "3fff::/20": REFUSED,
    "5f00::/16": REFUSED,
    "fc00::/7": REFUSED,
    "fe80::/10": REFUSED,
}
# Outside the registries: multicast, deprecated site-local, IPv6 space not allocated for unicast.
OTHER_REFUSED = ["224.0.0.0/4", "ff00::/8", "fec0::/10", "4000::/3", "e000::/4", "::/8", "1000::/4"]


def _samples(block: str) -> tuple[str, str, str]:
    net = ip_network(block)
    middle = net.network_address + net.num_addresses // 2
    return str(net.network_address), str(middle), str(net.broadcast_address)


def _cases(table: dict[str, bool | tuple[bool, bool, bool]]) -> list[tuple[str, bool]]:
    cases = []
    for block, verdict in table.items():
        verdicts = verdict if isinstance(verdict, tuple) else (verdict,) * 3
        cases += [(f"{block}: {address}", expected) for address, expected in zip(_samples(block), verdicts)]
    return list(dict.fromkeys(cases))  # a one-address block is its own first, middle and last


def test_the_module_table_is_the_registry_written_here() -> None:
    assert [b.network for b in addresses.IPV4_SPECIAL] == list(REGISTRY_V4)
    assert [b.network for b in addresses.IPV6_SPECIAL] == list(REGISTRY_V6)


@pytest.mark.parametrize("case, expected", _cases(REGISTRY_V4) + _cases(REGISTRY_V6))
def test_every_registry_entry_is_judged_at_its_edges_and_middle(case: str, expected: bool) -> None:
    address = ip_address(case.split(": ")[1])
    assert is_public(address) is expected


@pytest.mark.parametrize("case", [c for c, _ in _cases(dict.fromkeys(OTHER_REFUSED, REFUSED))])
def test_multicast_site_local_and_unallocated_ipv6_are_refused(case: str) -> None:
    assert not is_public(ip_address(case.split(": ")[1]))


@pytest.mark.parametrize(
    "address",
    [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.215.14",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.0",
        "192.88.98.255",
        "192.88.100.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001::1",
        "2000::1",
        "2001:200::",
        "2001:db7:ffff::1",
        "2001:db9::1",
        "2001:4860:4860::8888",
        "2620:4f:7fff:ffff::1",
        "2620:4f:8001::1",
        "3ffe:ffff::1",
        "3fff:1000::1",
    ],
)
def test_ordinary_unicast_next_to_the_blocks_is_public(address: str) -> None:
    assert is_public(ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of private, loopback, metadata
        "64:ff9b::808:808",
        "64:ff9b:1::808:808",
        "64:ff9b:1::a00:1",  # even a public IPv4 via a translator
        "::10.0.0.1",
        "::127.0.0.1",
        "::8.8.8.8",  # IPv4-compatible (deprecated)
        "fec0::1",
        "fec0:1:2:3::4",  # site-local (deprecated)
        "192.0.0.1",
        "192.0.0.200",  # IETF protocol assignments
    ],
)
def test_what_ipaddress_is_global_lets_through_is_refused(address: str) -> None:
    assert not is_public(ip_address(address))


# Every IPv6 form that embeds an IPv4 address, built here from its RFC's bit layout.
def _hex32(v4: str) -> str:
    value = int(IPv4Address(v4))
    return f"{value >> 16:x}:{value & 0xFFFF:x}"


def _teredo(server: str, client: str) -> str:
    inverted = int(IPv4Address(client)) ^ 0xFFFFFFFF
    return f"2001:0:{_hex32(server)}:8000:63bf:{inverted >> 16:x}:{inverted & 0xFFFF:x}"


FORMS = {
    "ipv4-mapped": ("::ffff:0:0/96", lambda v4: f"::ffff:{v4}"),
    "ipv4-compatible": ("::/96", lambda v4: f"::{v4}"),
    "ipv4-translated": ("::ffff:0:0:0/96", lambda v4: f"::ffff:0:{v4}"),
    "nat64": ("64:ff9b::/96", lambda v4: f"64:ff9b::{v4}"),
    "nat64-local/96": ("64:ff9b:1::/48", lambda v4: f"64:ff9b:1::{v4}"),
    "6to4": ("2002::/16", lambda v4: f"2002:{_hex32(v4)}::1"),
    "teredo-client": ("2001::/32", lambda v4: _teredo("65.54.227.120", v4)),
    "teredo-server": ("2001::/32", lambda v4: _teredo(v4, "8.8.4.4")),
}
NON_PUBLIC_V4 = ["127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.1.1", "100.64.0.1", "0.1.2.3", "192.0.0.170"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("v4", NON_PUBLIC_V4)
def test_an_embedded_non_public_ipv4_is_refused_even_with_its_prefix_allowlisted(form: str, v4: str) -> None:
    prefix, build = FORMS[form]
    address = ip_address(build(v4))
    assert not is_public(address)
    assert not allowed(address, [ip_network(prefix)])
    if form != "nat64-local/96":  # its /48 reading of these bits is 0.0.0.0 as well
        assert allowed(address, [ip_network(prefix), ip_network(f"{v4}/32")])  # the operator opened both


@pytest.mark.parametrize("form", FORMS)
def test_an_embedded_public_ipv4_needs_the_transition_prefix_allowlisted(form: str) -> None:
    prefix, build = FORMS[form]
    address = ip_address(build("8.8.8.8"))
    if form == "ipv4-mapped":  # the IPv4 address itself to the socket layer
        assert is_public(address)
        return
    assert not is_public(address)
    # A /96 inside the local-use prefix also reads as 0.0.0.0 with the /48 layout: still refused.
    assert allowed(address, [ip_network(prefix)]) is (form != "nat64-local/96")


def test_teredo_and_6to4_embeddings_agree_with_ipaddress() -> None:
    for server, client in [("65.54.227.120", "192.0.2.45"), ("8.8.8.8", "10.0.0.1"), ("127.0.0.1", "1.1.1.1")]:
        address = IPv6Address(_teredo(server, client))
        assert embedded_ipv4(address) == address.teredo == (IPv4Address(server), IPv4Address(client))
    address = IPv6Address(f"2002:{_hex32('10.9.8.7')}::1")
    assert embedded_ipv4(address) == (address.sixtofour,) == (IPv4Address("10.9.8.7"),)


# RFC 6052 section 2.4's examples (192.0.2.33 under each prefix length), moved into 64:ff9b:1::/48.
@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1:c000:2:2100::",  # /48
        "64:ff9b:1:3c0:0:221::",  # /56
        "64:ff9b:1:344:c0:2:2100:0",  # /64
        "64:ff9b:1:344::c000:221",  # /96
    ],
)
def test_local_use_nat64_is_read_with_every_layout(address: str) -> None:
    ip = IPv6Address(address)
    assert IPv4Address("192.0.2.33") in embedded_ipv4(ip)
    assert not allowed(ip, [ip_network("64:ff9b:1::/48")])  # documentation space, whatever the layout


def test_local_use_nat64_passes_only_when_every_reading_is_allowed() -> None:
    ip = IPv6Address("64:ff9b:1:808:8:808:808:808")  # 8.8.8.8 under /48, /56, /64 and /96 alike
    assert set(embedded_ipv4(ip)) == {IPv4Address("8.8.8.8")}
    assert not is_public(ip) and allowed(ip, [ip_network("64:ff9b:1::/48")])


def test_teredo_needs_both_of_its_ipv4_addresses_allowed() -> None:
    teredo = [ip_network("2001::/32")]
    assert allowed(IPv6Address(_teredo("65.54.227.120", "8.8.4.4")), teredo)
    assert not allowed(IPv6Address(_teredo("10.0.0.1", "8.8.4.4")), teredo)
    assert not allowed(IPv6Address(_teredo("65.54.227.120", "10.0.0.1")), teredo)


def test_loopback_and_unspecified_are_not_read_as_ipv4_compatible() -> None:
    assert embedded_ipv4(IPv6Address("::1")) is None and embedded_ipv4(IPv6Address("::")) is None
    assert allowed(IPv6Address("::1"), [ip_network("::1/128")]) and not is_public(IPv6Address("::1"))


def test_allowlisted_networks_open_non_public_addresses() -> None:
    policy = UrlPolicy(["10.20.0.0/16", "127.0.0.1/32", "fd00:1::/32"])
    for address in ["10.20.3.4", "127.0.0.1", "::ffff:10.20.3.4", "fd00:1::5"]:
        assert policy.allows(ip_address(address)), address
    for address in ["10.21.0.1", "127.0.0.2", "64:ff9b::a14:304", "fd00:2::5"]:
        assert not policy.allows(ip_address(address)), address


def test_a_name_resolving_to_nat64_of_metadata_is_refused_with_nat64_allowlisted() -> None:
    policy = UrlPolicy(["64:ff9b::/96"], lambda host, port: ["64:ff9b::a9fe:a9fe"])
    with pytest.raises(UrlNotAllowed):
        policy.resolve("metadata.test", 80)
    public = UrlPolicy(["64:ff9b::/96"], lambda host, port: ["64:ff9b::5db8:d70e"])  # 93.184.215.14
    assert public.resolve("example.test", 80) == "64:ff9b::5db8:d70e"


def test_every_table_entry_parses_and_versions_match() -> None:
    for block in addresses.IPV4_SPECIAL:
        assert isinstance(ipaddress.ip_network(block.network), ipaddress.IPv4Network)
    for block in addresses.IPV6_SPECIAL:
        assert isinstance(ipaddress.ip_network(block.network), ipaddress.IPv6Network)
