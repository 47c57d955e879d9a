"""Which IP addresses partner webhooks may reach (outbox/addresses.py, a pure rule): every form
that embeds an IPv4 address is judged by that address, with the same rules as plain IPv4."""

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbox.addresses import is_public, not_public_because

LOOPBACK = "a loopback address"
PRIVATE = "a private address"
DOCUMENTATION = "a documentation address"
MULTICAST = "a multicast address"


def case(name, address, reason):
    return pytest.param(address, reason, id=name)


PUBLIC = [
    case("ipv4", "8.8.8.8", None),
    case("ipv6", "2606:4700:4700::1111", None),
    case("ipv4_mapped_public", "::ffff:8.8.8.8", None),
    case("ipv4_compatible_public", "::8.8.8.8", None),
    # What DNS64 answers for a public IPv4 host when our workers sit on an IPv6-only network.
    case("nat64_public", "64:ff9b::808:808", None),
    case("6to4_public", "2002:808:808::1", None),
]

IPV4 = [
    case("ipv4_loopback", "127.0.0.1", LOOPBACK),
    case("ipv4_loopback_range", "127.8.9.10", LOOPBACK),
    case("ipv4_private_10", "10.1.2.3", PRIVATE),
    case("ipv4_private_172", "172.16.0.9", PRIVATE),
    case("ipv4_private_192", "192.168.1.20", PRIVATE),
    case(
        "ipv4_link_local_metadata",
        "169.254.169.254",
        "a link-local address (cloud metadata services)",
    ),
    case("ipv4_cgnat_low", "100.64.0.1", "a carrier-grade NAT address (100.64.0.0/10)"),
    case("ipv4_cgnat_high", "100.127.255.254", "a carrier-grade NAT address (100.64.0.0/10)"),
    case("ipv4_unspecified", "0.0.0.0", "an address of 'this network' (0.0.0.0/8)"),
    case("ipv4_this_network", "0.1.2.3", "an address of 'this network' (0.0.0.0/8)"),
    case("ipv4_documentation_1", "192.0.2.1", DOCUMENTATION),
    case("ipv4_documentation_2", "198.51.100.7", DOCUMENTATION),
    case("ipv4_documentation_3", "203.0.113.9", DOCUMENTATION),
    case("ipv4_benchmarking", "198.18.0.1", "a benchmarking address (198.18.0.0/15)"),
    case("ipv4_benchmarking_end", "198.19.255.254", "a benchmarking address (198.18.0.0/15)"),
    case("ipv4_ietf_protocol", "192.0.0.9", "an IETF protocol address (192.0.0.0/24)"),
    case("ipv4_6to4_relay", "192.88.99.1", "a 6to4 relay anycast address"),
    case("ipv4_multicast", "224.0.0.1", MULTICAST),
    case("ipv4_multicast_ssdp", "239.255.255.250", MULTICAST),
    case("ipv4_reserved", "240.0.0.1", "a reserved address (240.0.0.0/4)"),
    case("ipv4_broadcast", "255.255.255.255", "the broadcast address"),
]

IPV6 = [
    case("ipv6_loopback", "::1", LOOPBACK),
    case("ipv6_unspecified", "::", "the unspecified address"),
    case("ipv6_link_local", "fe80::1", "a link-local address"),
    case("ipv6_link_local_with_zone", "fe80::1%eth0", "a link-local address"),
    case("ipv6_unique_local_fd", "fd00::7", "a unique-local address (fc00::/7)"),
    case("ipv6_unique_local_fc", "fc00::1", "a unique-local address (fc00::/7)"),
    case("ipv6_site_local", "fec0::1", "a site-local address (fec0::/10)"),
    case("ipv6_multicast_link", "ff02::1", MULTICAST),
    case("ipv6_multicast_global", "ff0e::1", MULTICAST),
    case("ipv6_documentation", "2001:db8::1", DOCUMENTATION),
    case("ipv6_documentation_3fff", "3fff::1", DOCUMENTATION),
    case(
        "ipv6_benchmarking",
        "2001:2::1",
        "an IETF protocol address (2001::/23: benchmarking, ORCHID...)",
    ),
    case("ipv6_discard_only", "100::1", "not a global unicast address (outside 2000::/3)"),
    case(
        "ipv6_ipv4_translated", "::ffff:0:7f00:1", "not a global unicast address (outside 2000::/3)"
    ),
]

EMBEDDED = [
    case(
        "ipv4_mapped_loopback",
        "::ffff:127.0.0.1",
        "an IPv4-mapped IPv6 address embedding 127.0.0.1, a loopback address",
    ),
    case(
        "ipv4_mapped_metadata",
        "::ffff:169.254.169.254",
        "an IPv4-mapped IPv6 address embedding 169.254.169.254, "
        "a link-local address (cloud metadata services)",
    ),
    case(
        "ipv4_mapped_cgnat",
        "::ffff:100.64.0.1",
        "an IPv4-mapped IPv6 address embedding 100.64.0.1, "
        "a carrier-grade NAT address (100.64.0.0/10)",
    ),
    case(
        "ipv4_compatible_loopback",
        "::127.0.0.1",
        "an IPv4-compatible IPv6 address embedding 127.0.0.1, a loopback address",
    ),
    case(
        "ipv4_compatible_private",
        "::10.0.0.1",
        "an IPv4-compatible IPv6 address embedding 10.0.0.1, a private address",
    ),
    case(
        "nat64_loopback",
        "64:ff9b::7f00:1",
        "a NAT64 address embedding 127.0.0.1, a loopback address",
    ),
    case(
        "nat64_metadata",
        "64:ff9b::a9fe:a9fe",
        "a NAT64 address embedding 169.254.169.254, a link-local address (cloud metadata services)",
    ),
    # Local-use NAT64 is refused whatever it embeds: the translator is inside the network
    # that deploys it, and the operator chooses where the IPv4 address sits.
    case(
        "nat64_local_use_public_inside",
        "64:ff9b:1::808:808",
        "a local-use NAT64 address (64:ff9b:1::/48)",
    ),
    case(
        "nat64_local_use_loopback_inside",
        "64:ff9b:1::7f00:1",
        "a local-use NAT64 address (64:ff9b:1::/48)",
    ),
    case(
        "6to4_loopback", "2002:7f00:1::1", "a 6to4 address embedding 127.0.0.1, a loopback address"
    ),
    case(
        "6to4_private",
        "2002:c0a8:101::1",
        "a 6to4 address embedding 192.168.1.1, a private address",
    ),
    case(
        "6to4_broadcast",
        "2002:ffff:ffff::1",
        "a 6to4 address embedding 255.255.255.255, the broadcast address",
    ),
    # Teredo is refused outright, even when both embedded addresses are public (server
    # 65.54.227.120, client 192.0.2.45 bit-inverted; and server 8.8.8.8, client 8.8.4.4).
    case("teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address (2001::/32)"),
    case("teredo_public_inside", "2001:0:808:808:0:0:f7f7:fbfb", "a Teredo address (2001::/32)"),
]


@pytest.mark.parametrize(("address", "reason"), PUBLIC + IPV4 + IPV6 + EMBEDDED)
def test_why_an_address_is_not_public(address, reason):
    assert not_public_because(address) == reason
    assert is_public(address) is (reason is None)


def test_a_host_name_is_not_an_address():
    with pytest.raises(ValueError):
        not_public_because("hooks.partner.example")


def _forms(ip: IPv4Address) -> dict[str, str]:
    """The IPv6 forms that carry an IPv4 address, each written out in full."""
    n = int(ip)
    return {
        "IPv4-mapped": str(IPv6Address((0xFFFF << 32) | n)),
        "IPv4-compatible": str(IPv6Address(n)),
        "NAT64": str(IPv6Address((0x0064FF9B << 96) | n)),
        "6to4": str(IPv6Address((0x2002 << 112) | (n << 80) | 1)),
    }


@given(st.ip_addresses(v=4))
def test_each_embedding_form_is_judged_by_its_ipv4_address(ip):
    verdict = is_public(str(ip))
    for form, address in _forms(ip).items():
        assert is_public(address) is verdict, (form, address)
        if not verdict and int(ip) > 1:  # :: and ::1 have names of their own
            assert not_public_because(address).endswith(
                f" embedding {ip}, " + not_public_because(str(ip))
            )


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1", "198.18.0.1", "0.0.0.0"]
)
def test_each_embedding_form_of_an_internal_address_is_refused(ip):
    assert not is_public(ip)
    assert not any(is_public(address) for address in _forms(IPv4Address(ip)).values())
